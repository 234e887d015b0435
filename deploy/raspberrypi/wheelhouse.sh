#!/usr/bin/env bash
# Build a wheelhouse for an offline install: smsgw and every dependency as pure-Python wheels, so
# that a directory made on a PC installs on any Pi (armv7 or aarch64) with `install.sh --wheels DIR`.
#
#   deploy/raspberrypi/wheelhouse.sh DIR [--python PY]
#
# `pip wheel` alone would take the build machine's compiled wheels (aiohttp, multidict, yarl,
# frozenlist, propcache have C speed-ups for x86_64); their pure-Python wheels work everywhere, a
# little slower. An online install on the Pi itself gets the compiled aarch64 wheels.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
PYTHON=python3
DIR=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) printf 'smsgw wheelhouse: unknown option %s\n' "$1" >&2; exit 2 ;;
        *) DIR="$1" ;;
    esac
    shift
done
[[ -n "$DIR" ]] || { printf 'usage: wheelhouse.sh DIR [--python PY]\n' >&2; exit 2; }
mkdir -p "$DIR"
PIP=("$PYTHON" -m pip --disable-pip-version-check)
"${PIP[@]}" wheel --quiet --no-deps --wheel-dir "$DIR" "$SRC"
version="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
"${PIP[@]}" download --quiet --only-binary=:all: --platform any --implementation py --abi none \
    --python-version "$version" --dest "$DIR" "$DIR"/smsgw-*.whl
for wheel in "$DIR"/*.whl; do
    [[ "$wheel" == *-none-any.whl ]] || { printf 'smsgw wheelhouse: %s is not pure Python\n' "$wheel" >&2; exit 1; }
done
