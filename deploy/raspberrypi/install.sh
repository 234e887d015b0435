#!/usr/bin/env bash
# Install (or upgrade) smsgw on Raspberry Pi OS Bookworm. Run as root from a checkout:
#
#   sudo deploy/raspberrypi/install.sh                       # asks for port, PIN, MQTT host
#   sudo deploy/raspberrypi/install.sh --non-interactive --port /dev/gsm/sim800-0 --pin 1234
#
# Idempotent: running it again upgrades the package and keeps /etc/smsgw/smsgw.toml and the
# database. Options of its own (all others go to `smsgw setup`, which writes the config if missing):
#   --no-apt        do not apt-get install python3-venv, mosquitto, mosquitto-clients (and
#                   python3-lgpio for GPIO where the distribution has it)
#   --no-start      install and enable the service but do not (re)start it
#   --root DIR      stage into DIR instead of / (no apt, users, chown, udevadm or systemctl);
#                   for image building and tests
#   --no-pip        do not create the venv nor pip install (with --root: run `smsgw setup`
#                   with --python PY and the checkout on PYTHONPATH instead)
#   --python PY     interpreter for the venv (default python3)
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$SRC/deploy/raspberrypi"
ROOT=""
APT=1
START=1
PIP=1
PYTHON=python3
SETUP_ARGS=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-apt) APT=0 ;;
        --no-start) START=0 ;;
        --no-pip) PIP=0 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) SETUP_ARGS+=("$1") ;;
    esac
    shift
done

log() { printf 'smsgw install: %s\n' "$*"; }
die() { printf 'smsgw install: %s\n' "$*" >&2; exit 1; }

PREFIX="$ROOT/opt/smsgw"
CONF_DIR="$ROOT/etc/smsgw"
CONF="$CONF_DIR/smsgw.toml"
STATE_DIR="$ROOT/var/lib/smsgw"
UNIT_DIR="$ROOT/etc/systemd/system"
UDEV_DIR="$ROOT/etc/udev/rules.d"
BIN_DIR="$ROOT/usr/local/bin"
SVC_USER=smsgw

if [[ -z "$ROOT" ]]; then
    [[ $(id -u) -eq 0 ]] || die "run as root (sudo $0)"
else
    APT=0
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    PREFIX="$ROOT/opt/smsgw"; CONF_DIR="$ROOT/etc/smsgw"; CONF="$CONF_DIR/smsgw.toml"
    STATE_DIR="$ROOT/var/lib/smsgw"; UNIT_DIR="$ROOT/etc/systemd/system"
    UDEV_DIR="$ROOT/etc/udev/rules.d"; BIN_DIR="$ROOT/usr/local/bin"
fi

# 1. packages
if [[ $APT -eq 1 ]]; then
    apt-get update -q
    wanted=(python3-venv mosquitto mosquitto-clients)
    # gpiozero's pin factory on Bookworm (Pi 5 too); the venv sees it through system site packages
    if apt-cache show python3-lgpio >/dev/null 2>&1; then
        wanted+=(python3-lgpio)
    fi
    missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
fi

# 2. the service user: serial ports (dialout) and GPIO (gpio, where the group exists)
if [[ -z "$ROOT" ]]; then
    if ! id -u "$SVC_USER" >/dev/null 2>&1; then
        log "creating system user $SVC_USER"
        useradd --system --user-group --home-dir /var/lib/smsgw --no-create-home \
            --shell /usr/sbin/nologin --comment "smsgw SMS gateway" "$SVC_USER"
    fi
    for group in dialout gpio; do
        if getent group "$group" >/dev/null; then
            usermod -a -G "$group" "$SVC_USER"
        fi
    done
fi

# 3. the program: a venv in /opt/smsgw with the project installed
if [[ $PIP -eq 1 ]]; then
    if [[ ! -x "$PREFIX/bin/python" ]]; then
        log "creating the venv $PREFIX"
        "$PYTHON" -m venv --system-site-packages "$PREFIX"
    fi
    log "installing smsgw from $SRC into $PREFIX"
    "$PREFIX/bin/pip" install --quiet --upgrade pip
    "$PREFIX/bin/pip" install --quiet --upgrade "$SRC"
    mkdir -p "$BIN_DIR"
    ln -sfn /opt/smsgw/bin/smsgw "$BIN_DIR/smsgw"
    SMSGW=("$PREFIX/bin/smsgw")
else
    SMSGW=(env "PYTHONPATH=$SRC" "$PYTHON" -m appliance)
fi

# 4. directories and the configuration (written by the wizard only if missing)
install -d -m 0755 "$CONF_DIR"
install -d -m 0750 "$STATE_DIR"
if [[ ! -e "$CONF" ]]; then
    log "writing $CONF with smsgw setup"
    # the service starts below, once its unit is installed; a staged tree has no modem to check
    WIZARD=(--no-start)
    [[ -z "$ROOT" ]] || WIZARD+=(--no-checks)
    "${SMSGW[@]}" setup --config "$CONF" --store /var/lib/smsgw/smsgw.db "${WIZARD[@]}" "${SETUP_ARGS[@]}"
else
    log "keeping $CONF"
fi
if [[ -z "$ROOT" ]]; then
    chown "$SVC_USER:$SVC_USER" "$STATE_DIR"
    chown "root:$SVC_USER" "$CONF"
fi
chmod 0640 "$CONF"
if [[ -z "$ROOT" ]]; then
    "${SMSGW[@]}" config check "$CONF" || die "fix $CONF, then run $0 again"
fi

# 5. udev rules generated from the modem profiles (/dev/gsm/<profile>-<serial>-at) and the systemd unit
install -d -m 0755 "$UDEV_DIR" "$UNIT_DIR"
RULES="$UDEV_DIR/99-smsgw-gsm.rules"
if [[ -e "$RULES" ]] && ! head -n 1 "$RULES" | grep -q 'Generated by .smsgw udev-rules.'; then
    mv "$RULES" "$RULES.bak"
    log "moved the hand-edited $RULES to $RULES.bak (put local rules in another file)"
fi
"${SMSGW[@]}" udev-rules --output "$RULES" || die "cannot write $RULES"
log "installed $RULES (generated from the modem profiles)"
install -m 0644 "$HERE/smsgw.service" "$UNIT_DIR/smsgw.service"

if [[ -z "$ROOT" ]]; then
    if command -v udevadm >/dev/null; then
        udevadm control --reload || true
        udevadm trigger --subsystem-match=tty || true
    fi
    systemctl daemon-reload
    systemctl enable mosquitto.service >/dev/null 2>&1 || true
    systemctl enable smsgw.service
    if [[ $START -eq 1 ]]; then
        systemctl restart smsgw.service
        log "smsgw is running: systemctl status smsgw; journalctl -u smsgw -f; smsgw status"
    else
        log "installed; start it with: systemctl start smsgw"
    fi
else
    log "staged into $ROOT"
fi
