"""The set-up scripts: the demo installs runtime packages only; without root or sudo they say what to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PEERS = {"gammu", "gammu-smsd", "smstools"}


def packages(*args: str) -> list[str]:
    result = subprocess.run(["bash", str(REPO / ".ci/setup"), *args, "--list"], capture_output=True,
                            text=True, timeout=30, check=True)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def test_demo_setup_installs_runtime_packages_only():
    assert "--runtime" in (REPO / ".ci/demo").read_text().split("bash .ci/setup", 1)[1].splitlines()[0]
    runtime = packages("--runtime")
    assert {"mosquitto", "python3-venv"} <= set(runtime)
    assert not PEERS & set(runtime) and "socat" not in runtime


def test_test_setup_installs_the_peers():
    assert PEERS | {"socat", "openssl", "mosquitto", "chromium"} <= set(packages())


def test_ci_run_calls_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.split("```sh", 1)[1].split("```", 1)[0].splitlines()
                if line.strip()]
    assert commands == ["bash .ci/demo", "bash .ci/test"]
    assert "exec bash .ci/test" in (REPO / ".ci/run").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root")
def test_without_root_and_sudo_it_prints_what_to_run():
    """As an unprivileged user with no sudo on PATH nothing is installed: exit 2 and the commands for root."""
    with tempfile.TemporaryDirectory() as tmp:  # pytest's tmp_path is private to root
        os.chmod(tmp, 0o755)
        run_unprivileged(Path(tmp) / "bin")


def run_unprivileged(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for tool in ("bash", "id", "env", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         str(bin_dir / "env"), f"PATH={bin_dir}", "bash", str(REPO / ".ci/apt-install"), "--peer",
         "smstools", "gammu-smsd"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "sudo: command not found" not in result.stderr
    assert "apt-get update && apt-get install -y --no-install-recommends smstools gammu-smsd" in result.stderr
    assert "systemctl disable --now smstools gammu-smsd" in result.stderr
