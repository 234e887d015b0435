"""Enable and start the ``smsgw`` systemd unit, or say what to run where there is no systemd."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

UNIT = "smsgw.service"
#: Exists while systemd is PID 1 (what sd_booted(3) checks).
SYSTEMD_RUNTIME = Path("/run/systemd/system")


def start(config: Path, *, unit: str = UNIT) -> tuple[bool, str]:
    """(ok, what happened or what to run). Restarts a unit already running, so it reads the new file."""
    by_hand = f"smsgw run --config {config}"
    systemctl = shutil.which("systemctl")
    if systemctl is None or not SYSTEMD_RUNTIME.is_dir():
        return True, (f"systemd is not running here: start the daemon with `{by_hand}` (on the appliance, "
                      f"`systemctl enable --now {unit}` does it at every boot)")
    if os.geteuid() != 0:
        return True, f"not root: run `sudo systemctl enable {unit} && sudo systemctl restart {unit}`"
    for argv in ([systemctl, "enable", unit], [systemctl, "restart", unit]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            problem = (result.stderr or result.stdout).strip().splitlines()
            return False, (f"`{' '.join(argv[-2:])}` failed: {problem[-1] if problem else result.returncode}; "
                           f"see `journalctl -u {unit}`, or start it by hand: `{by_hand}`")
    return True, f"{unit} enabled and started (`systemctl status {unit}`, `journalctl -u {unit} -f`)"
