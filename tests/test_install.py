"""Packaging and deploy/raspberrypi/install.sh, for real: the wheel, the wheelhouse, an image root.

The image test stages a root file system with ``install.sh --root``, moves it elsewhere, and boots
it the way systemd would on a Pi: in a chroot (this machine's /usr bind-mounted read-only, in a
private mount namespace), it runs the ExecStart of the staged smsgw-install.service, then the
installed ``smsgw``. It needs root (chroot, mounts); without root it is skipped and says so.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance import __version__

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "raspberrypi"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``python -m build --wheel`` once per session: the wheel and what the build printed."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("smsgw-*.whl")
    return wheel, result.stdout + result.stderr


@pytest.fixture(scope="session")
def wheelhouse(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and every dependency as wheels: what an offline site gets on a USB stick."""
    house = tmp_path_factory.mktemp("wheels")
    result = subprocess.run(["bash", str(DEPLOY / "wheelhouse.sh"), str(house), "--python", sys.executable],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return house


def test_the_wheel_carries_the_one_version_and_the_license(built):
    wheel, output = built
    assert wheel.name == f"smsgw-{__version__}-py3-none-any.whl"
    assert "SetuptoolsDeprecationWarning" not in output and "License classifiers" not in output
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"smsgw-{__version__}.dist-info/METADATA").decode()
        assert f"\nVersion: {__version__}\n" in metadata
        assert "\nLicense-Expression: MIT\n" in metadata
        assert archive.read(f"smsgw-{__version__}.dist-info/licenses/LICENSE").decode().startswith("MIT License")
        assert "firmware_cfg/sim800.toml" in archive.namelist()


def test_version_option():
    result = subprocess.run([sys.executable, "-m", "appliance", "--version"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == f"smsgw {__version__}"


@pytest.mark.timeout(300)  # building the wheelhouse downloads every dependency
def test_every_wheel_in_the_wheelhouse_is_pure_python(wheelhouse):
    """An image built on a PC must install on an armv7 or aarch64 Pi."""
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    assert any(n.startswith("smsgw-") for n in names) and any(n.startswith("paho_mqtt-") for n in names)
    assert all(n.endswith("-none-any.whl") for n in names), names


def test_install_refuses_a_wheelhouse_without_smsgw(tmp_path):
    empty = tmp_path / "wheels"
    empty.mkdir()
    result = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--root", str(tmp_path / "img"), "--wheels",
                             str(empty)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "no smsgw-*.whl" in result.stderr


def exec_start(unit: Path) -> str:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return parser["Service"]["ExecStart"]


# what runs inside the chroot: the first boot, then the CLI as the daemon, an operator, an outsider
BOOT = r"""
set -u
R=$1
mount --bind -o ro /usr "$R/usr"
mount --bind "$R/.usr-local" "$R/usr/local"
mount --bind "$R/.completions" "$R/usr/share/bash-completion/completions"  # the rest of /usr stays read-only
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
run() {  # NAME COMMAND...: run in the image, keep rc, stdout, stderr
  local name=$1; shift
  chroot "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/usr/sbin HOME=/tmp LANG=C.UTF-8 "$@" \
    >"$R/results/$name.out" 2>"$R/results/$name.err"
  echo $? >"$R/results/$name.rc"
}
as() { local name=$1 user=$2; shift 2; run "$name" setpriv --reuid="$user" --regid="$user" --init-groups "$@"; }
run firstboot $FIRSTBOOT
run version /usr/local/bin/smsgw --version
run users sh -c 'useradd --no-create-home alice && useradd --no-create-home bob'
run operator /opt/smsgw/deploy/install.sh --no-apt --no-start --wheels /opt/smsgw/wheels --operator alice
as daemon_send smsgw sh -c 'umask 0007; exec smsgw send +4915112345678 "first, as the daemon would"'
as alice_send alice smsgw send +4915112345678 "from an operator"
as alice_status alice smsgw status --json
as alice_inbox alice smsgw inbox
as bob_status bob smsgw status
run bob_config sh -c 'cp /etc/smsgw/smsgw.toml /tmp/bob.toml && chmod 0644 /tmp/bob.toml'
as bob_store bob smsgw inbox --config /tmp/bob.toml
"""


def needs_root_and_mounts() -> None:
    if os.geteuid() != 0:
        pytest.skip("booting the staged image in a chroot needs root (chroot, bind mounts)")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (unshare --mount: {probe.stderr.strip()})")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("the chroot borrows /usr from this machine, which has no /usr/bin/python3")


@pytest.mark.timeout(300)  # building the wheelhouse downloads every dependency
def test_root_tree_works_after_moving_it(tmp_path, wheelhouse):
    needs_root_and_mounts()
    if not Path("/usr/share/bash-completion/completions").is_dir():
        pytest.skip("the chroot borrows /usr from this machine, which has no bash-completion directory")
    staged = tmp_path / "staging" / "rootfs"
    (staged / "etc" / "smsgw").mkdir(parents=True)
    shutil.copy(DEPLOY / "smsgw.toml", staged / "etc" / "smsgw" / "smsgw.toml")  # the image's config
    # without PYTHONPATH: a checkout on it (with its smsgw.egg-info) would make pip find smsgw installed already
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--root", str(staged), "--wheels", str(wheelhouse)],
                            capture_output=True, text=True, timeout=300, env=clean)
    assert result.returncode == 0, result.stdout + result.stderr
    units = staged / "etc/systemd/system"
    for unit in ("smsgw.service", "smsgw-install.service"):  # enabled, as links for the image's own /
        assert (units / "multi-user.target.wants" / unit).readlink() == Path("/etc/systemd/system", unit)
        assert (units / unit).is_file()
    completion = (staged / "usr/share/bash-completion/completions/smsgw").read_text()
    assert "complete -o filenames -o bashdefault -F _smsgw smsgw" in completion
    for file in staged.rglob("*"):  # nothing in the tree may point into the staging directory
        if file.is_symlink():
            assert str(staged) not in str(file.readlink()), file
        elif file.is_file():
            assert str(staged).encode() not in file.read_bytes(), file

    image = tmp_path / "elsewhere"  # moved: what `dd` to an SD card and booting amounts to
    staged.rename(image)
    for directory in ("dev", "proc", "tmp", "results", "var/lib", ".usr-local", ".completions"):
        (image / directory).mkdir(parents=True, exist_ok=True)
    if (image / "usr/local").exists():
        shutil.copytree(image / "usr/local", image / ".usr-local", dirs_exist_ok=True, symlinks=True)
    (image / "usr").mkdir(exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():
            (image / link).symlink_to(os.readlink(f"/{link}"))
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs", "nsswitch.conf"):
        if Path("/etc", name).exists():
            shutil.copy(Path("/etc", name), image / "etc" / name)
    os.chmod(image / "tmp", 0o1777)

    firstboot = exec_start(image / "etc/systemd/system/smsgw-install.service")
    boot = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", BOOT, "boot", str(image)],
                          env={**os.environ, "FIRSTBOOT": firstboot}, capture_output=True, text=True, timeout=300)
    assert boot.returncode == 0, boot.stderr

    def outcome(name: str) -> tuple[int, str, str]:
        results = image / "results"
        return (int((results / f"{name}.rc").read_text()), (results / f"{name}.out").read_text(),
                (results / f"{name}.err").read_text())

    rc, out, err = outcome("firstboot")
    assert rc == 0, out + err
    rc, out, err = outcome("version")
    assert (rc, out.strip()) == (0, f"smsgw {__version__}"), err
    assert (image / "opt/smsgw/bin/smsgw").read_text().startswith("#!/opt/smsgw/bin/python")
    assert "home = /usr/bin" in (image / "opt/smsgw/pyvenv.cfg").read_text()
    assert outcome("users")[0] == 0
    rc, out, err = outcome("operator")
    assert rc == 0, out + err
    assert "alice is in the smsgw group" in out
    for name in ("daemon_send", "alice_send", "alice_status", "alice_inbox"):
        rc, out, err = outcome(name)
        assert rc == 0, (name, out, err)
    rc, _, err = outcome("bob_status")
    assert rc == 2
    assert err.startswith("smsgw status: cannot open /etc/smsgw/smsgw.toml: permission denied;")
    assert "join the smsgw group: sudo usermod -aG smsgw bob" in err
    rc, _, err = outcome("bob_store")
    assert rc == 2
    assert "smsgw inbox: cannot open /var/lib/smsgw/smsgw.db: permission denied;" in err
    assert "sudo usermod -aG smsgw bob" in err
