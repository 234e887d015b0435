#!/usr/bin/env bash
# Install (or upgrade) smsgw on Raspberry Pi OS Bookworm. Run as root from a checkout:
#
#   sudo deploy/raspberrypi/install.sh                       # asks for port, PIN, MQTT host
#   sudo deploy/raspberrypi/install.sh --non-interactive --port /dev/gsm/sim800-0 --pin 1234
#   sudo deploy/raspberrypi/install.sh --wheels /media/usb/wheels     # offline, from a wheelhouse
#   sudo deploy/raspberrypi/install.sh --operator alice               # alice may use the CLI
#
# Idempotent: running it again upgrades the package and keeps /etc/smsgw/smsgw.toml and the
# database. Options of its own (all others go to `smsgw setup`, which writes the config if missing):
#   --no-apt        do not apt-get install python3-venv, mosquitto, mosquitto-clients (and
#                   python3-lgpio for GPIO where the distribution has it)
#   --no-start      install and enable the service but do not (re)start it
#   --wheels DIR    install smsgw and its dependencies from the wheels in DIR, with no network
#                   (make DIR where there is internet: deploy/raspberrypi/wheelhouse.sh DIR)
#   --operator USER add USER to the smsgw group: may read the config and use the CLI (status,
#                   send, inbox, outbox) without root; repeatable; takes effect at USER's next login
#   --root DIR      stage an image's root file system in DIR (no apt, users, chown, udevadm or
#                   systemctl): a wheelhouse in DIR/opt/smsgw/wheels (pure Python, any CPU) and
#                   the oneshot smsgw-install.service, which on the first boot of the image runs
#                   this script with --firstboot; nothing in DIR refers to DIR
#   --firstboot     what smsgw-install.service runs: users, the venv from /opt/smsgw/wheels,
#                   ownership; no apt, no unit files, no systemctl
#   --no-pip        do not create the venv nor pip install (with --root: no wheelhouse, and
#                   `smsgw setup` runs with --python PY and the checkout on PYTHONPATH)
#   --python PY     interpreter for the venv (default python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # this script's files (an image: /opt/smsgw/deploy)
SRC="$(cd "$HERE/../.." && pwd)"                        # the checkout, installed unless --wheels
ROOT=""
APT=1
START=1
PIP=1
PYTHON=python3
WHEELS=""
FIRSTBOOT=0
OPERATORS=()
SETUP_ARGS=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-apt) APT=0 ;;
        --no-start) START=0 ;;
        --no-pip) PIP=0 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
        --wheels) WHEELS="${2:?--wheels needs a directory}"; shift ;;
        --operator) OPERATORS+=("${2:?--operator needs a user name}"); shift ;;
        --firstboot) FIRSTBOOT=1; APT=0; START=0 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) SETUP_ARGS+=("$1") ;;
    esac
    shift
done

log() { printf 'smsgw install: %s\n' "$*"; }
die() { printf 'smsgw install: %s\n' "$*" >&2; exit 1; }
usage() { printf 'smsgw install: %s\n' "$*" >&2; exit 2; }

PREFIX="$ROOT/opt/smsgw"
CONF_DIR="$ROOT/etc/smsgw"
CONF="$CONF_DIR/smsgw.toml"
STATE_DIR="$ROOT/var/lib/smsgw"
UNIT_DIR="$ROOT/etc/systemd/system"
UDEV_DIR="$ROOT/etc/udev/rules.d"
BIN_DIR="$ROOT/usr/local/bin"
COMPLETION_DIR="$ROOT/usr/share/bash-completion/completions"
SVC_USER=smsgw
GROUP=smsgw   # the service user's group; operators join it
if [[ $FIRSTBOOT -eq 1 && -z "$WHEELS" ]]; then WHEELS=/opt/smsgw/wheels; fi
if [[ -n "$WHEELS" ]]; then
    [[ -d "$WHEELS" ]] || usage "--wheels $WHEELS: no such directory"
    WHEELS="$(cd "$WHEELS" && pwd)"
    compgen -G "$WHEELS/smsgw-*.whl" >/dev/null || usage "--wheels $WHEELS: no smsgw-*.whl in it"
fi
for user in "${OPERATORS[@]}"; do
    [[ -n "$ROOT" ]] && usage "--operator cannot be used with --root (the image has no such users yet)"
    id -u "$user" >/dev/null 2>&1 || usage "--operator $user: no such user"
done

if [[ -z "$ROOT" ]]; then
    [[ $(id -u) -eq 0 ]] || usage "run as root (sudo $0)"
else
    APT=0
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    PREFIX="$ROOT/opt/smsgw"; CONF_DIR="$ROOT/etc/smsgw"; CONF="$CONF_DIR/smsgw.toml"
    STATE_DIR="$ROOT/var/lib/smsgw"; UNIT_DIR="$ROOT/etc/systemd/system"
    UDEV_DIR="$ROOT/etc/udev/rules.d"; BIN_DIR="$ROOT/usr/local/bin"
    COMPLETION_DIR="$ROOT/usr/share/bash-completion/completions"
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

# 2. the service user: serial ports (dialout) and GPIO (gpio, where the group exists); the
#    operators: members of its group
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
    for user in "${OPERATORS[@]}"; do
        usermod -a -G "$GROUP" "$user"
        log "$user is in the $GROUP group: smsgw status, send, inbox work for $user after the next login"
    done
fi

# 3. the program: a venv in /opt/smsgw with the project installed; with --root, a wheelhouse and
#    this script's directory for the first boot, and a throwaway venv that runs `smsgw setup` now
STAGE_VENV=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { if [[ -n "$STAGE_VENV" ]]; then rm -rf "$STAGE_VENV"; fi; }
trap cleanup EXIT
pip_install() {  # VENV: install or upgrade smsgw in VENV, from the wheelhouse or the checkout
    if [[ -n "$WHEELS" ]]; then
        "$1/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS" --upgrade smsgw
    else
        "$1/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
        "$1/bin/pip" install --quiet --disable-pip-version-check --upgrade "$SRC"
    fi
}
if [[ $PIP -eq 1 && -n "$ROOT" ]]; then
    install -d -m 0755 "$PREFIX/wheels" "$PREFIX/deploy"
    if [[ -n "$WHEELS" ]]; then
        cp "$WHEELS"/*.whl "$PREFIX/wheels/"
    else
        log "building the wheelhouse $PREFIX/wheels from $SRC"
        bash "$HERE/wheelhouse.sh" "$PREFIX/wheels" --python "$PYTHON"
    fi
    # the image may run another CPU than this machine: only pure-Python wheels install anywhere
    for wheel in "$PREFIX/wheels"/*.whl; do
        [[ "$wheel" == *-none-any.whl ]] || die "$(basename "$wheel") is not pure Python; it would not install on every Pi"
    done
    cp -R "$HERE"/. "$PREFIX/deploy/"   # this script and its files, for the first boot
    WHEELS="$PREFIX/wheels"
    STAGE_VENV="$(mktemp -d "${TMPDIR:-/tmp}/smsgw-stage.XXXXXX")"
    "$PYTHON" -m venv "$STAGE_VENV"
    pip_install "$STAGE_VENV"
    SMSGW=("$STAGE_VENV/bin/smsgw")
elif [[ $PIP -eq 1 ]]; then
    if [[ ! -x "$PREFIX/bin/python" ]]; then
        log "creating the venv $PREFIX"
        "$PYTHON" -m venv --system-site-packages "$PREFIX"
    fi
    log "installing smsgw from ${WHEELS:-$SRC} into $PREFIX"
    pip_install "$PREFIX"
    mkdir -p "$BIN_DIR"
    ln -sfn /opt/smsgw/bin/smsgw "$BIN_DIR/smsgw"
    SMSGW=("$PREFIX/bin/smsgw")
else
    SMSGW=(env "PYTHONPATH=$SRC" "$PYTHON" -m appliance)
fi
log "$("${SMSGW[@]}" --version)"

# 4. directories and the configuration (written by the wizard only if missing)
install -d -m 0755 "$CONF_DIR"
install -d -m 0770 "$STATE_DIR"   # the smsgw group (the daemon and the operators) writes the store
if [[ ! -e "$CONF" && $FIRSTBOOT -eq 1 ]]; then
    log "no $CONF: write it with smsgw setup, then: systemctl start smsgw"
elif [[ ! -e "$CONF" ]]; then
    log "writing $CONF with smsgw setup"
    # the service starts below, once its unit is installed; a staged tree has no modem to check
    WIZARD=(--no-start)
    [[ -z "$ROOT" ]] || WIZARD+=(--no-checks)
    "${SMSGW[@]}" setup --config "$CONF" --store /var/lib/smsgw/smsgw.db "${WIZARD[@]}" "${SETUP_ARGS[@]}"
else
    log "keeping $CONF"
fi
if [[ -z "$ROOT" ]]; then
    chown "$SVC_USER:$GROUP" "$STATE_DIR"
    chmod 0770 "$STATE_DIR"
    # a store made by an older version (UMask=0027): the operators write it too
    for file in "$STATE_DIR"/smsgw.db "$STATE_DIR"/smsgw.db-wal "$STATE_DIR"/smsgw.db-shm "$STATE_DIR"/pin-rejections.json; do
        if [[ -e "$file" ]]; then chgrp "$GROUP" "$file"; chmod g+rw "$file"; fi
    done
fi
if [[ -e "$CONF" ]]; then
    if [[ -z "$ROOT" ]]; then chown "root:$GROUP" "$CONF"; fi
    chmod 0640 "$CONF"
    if [[ -z "$ROOT" ]]; then
        "${SMSGW[@]}" config check "$CONF" || die "fix $CONF, then run $0 again"
    fi
fi
if [[ $FIRSTBOOT -eq 1 ]]; then
    log "installed from $WHEELS; smsgw.service starts next"
    exit 0
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
# bash completion (TAB after smsgw), made from the installed command line
install -d -m 0755 "$COMPLETION_DIR"
"${SMSGW[@]}" completion bash >"$COMPLETION_DIR/smsgw"
chmod 0644 "$COMPLETION_DIR/smsgw"

if [[ -z "$ROOT" ]]; then
    if command -v udevadm >/dev/null; then
        udevadm control --reload || true
        udevadm trigger --subsystem-match=tty || true
    fi
    booted=0
    [[ -d /run/systemd/system ]] && booted=1   # systemd is PID 1 (not a chroot or a container)
    if [[ $booted -eq 1 ]]; then systemctl daemon-reload; fi
    systemctl enable mosquitto.service >/dev/null 2>&1 || true
    systemctl enable smsgw.service   # without a running systemd it only makes the links
    if [[ $booted -eq 0 ]]; then
        log "systemd is not running here: smsgw.service starts on the next boot"
    elif [[ $START -eq 1 ]]; then
        systemctl restart smsgw.service
        log "smsgw is running: systemctl status smsgw; journalctl -u smsgw -f; smsgw status"
    else
        log "installed; start it with: systemctl start smsgw"
    fi
else
    # enabled as `systemctl enable` would, without a running systemd: links in multi-user.target.wants
    install -m 0644 "$HERE/smsgw-install.service" "$UNIT_DIR/smsgw-install.service"
    install -d -m 0755 "$UNIT_DIR/multi-user.target.wants"
    for unit in smsgw-install.service smsgw.service; do
        ln -sfn "/etc/systemd/system/$unit" "$UNIT_DIR/multi-user.target.wants/$unit"
    done
    log "staged into $ROOT: on its first boot smsgw-install.service installs /opt/smsgw from the wheelhouse"
fi
