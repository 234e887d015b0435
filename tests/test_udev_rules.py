"""The generated udev rules: one rule per profile USB function, valid udev syntax, written atomically.

Debian 12's udev (252) has no ``udevadm verify`` (systemd 254 added it), so the syntax is checked
here by a parser of the rules format of udev(7): comma-separated ``KEY[{attr}] OP "value"`` pairs,
match operators ``==``/``!=`` and assignment operators ``=``/``+=``/``-=``/``:=``; every GOTO's
LABEL exists. When ``udevadm verify`` is installed, it checks the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import ROOT, daemon_env

from appliance.udev_rules import render
from drivers.profiles import load_all

_PAIR = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*')
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "ATTRS", "ENV"}
ASSIGN_KEYS = {"ENV", "SYMLINK", "GROUP", "MODE", "GOTO", "LABEL"}


def parse_rules(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    """Each rule line as its (key, attr, op, value) pairs; raises AssertionError on a syntax error."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not used"
        pairs: list[tuple[str, str | None, str, str]] = []
        for chunk in _split(line):
            match = _PAIR.fullmatch(chunk)
            assert match, f"line {number}: not KEY OP \"value\": {chunk!r}"
            key, attr, op, value = match["key"], match["attr"], match["op"], match["value"]
            if op in ("==", "!="):
                assert key in MATCH_KEYS, f"line {number}: {key} is not a match key"
            else:
                assert key in ASSIGN_KEYS, f"line {number}: {key} cannot be assigned"
            assert (attr is not None) == (key in ("ENV", "ATTRS")), f"line {number}: {key}{{{attr}}}"
            pairs.append((key, attr, op, value))
        rules.append(pairs)
    labels = {v for rule in rules for k, _, _, v in rule if k == "LABEL"}
    gotos = {v for rule in rules for k, _, _, v in rule if k == "GOTO"}
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"
    return rules


def _split(line: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    assert not quoted, f"unbalanced quotes: {line!r}"
    return [*parts, current]


def test_every_usb_function_of_every_profile_has_its_ignore_and_its_gsm_symlinks() -> None:
    rules = parse_rules(render())
    functions = [(p.name, usb) for p in load_all() for usb in p.usb_ids]
    assert len(functions) >= 20
    for name, usb in functions:
        wanted = {("ENV", "ID_VENDOR_ID", "==", f"{usb.vid:04x}"), ("ENV", "ID_MODEL_ID", "==", f"{usb.pid:04x}")}
        if usb.interface is not None:
            wanted.add(("ENV", "ID_USB_INTERFACE_NUM", "==", f"{usb.interface:02x}"))
        links = [r for r in rules if wanted <= set(r)]
        targets = sorted(v for r in links for k, _, op, v in r if k == "SYMLINK")
        assert targets == sorted([f"gsm/{name}-$env{{ID_SERIAL_SHORT}}-at", f"gsm/{name}-at"]), (name, str(usb))
        for rule in links:
            assert ("GROUP", None, "=", "dialout") in rule and ("MODE", None, "=", "0660") in rule
        ignore = [r for r in rules if {("ATTRS", "idVendor", "==", f"{usb.vid:04x}"),
                                       ("ATTRS", "idProduct", "==", f"{usb.pid:04x}")} <= set(r)]
        assert ignore and all(("ENV", "ID_MM_DEVICE_IGNORE", "=", "1") in r for r in ignore), (name, str(usb))


def test_profiles_without_a_usb_id_get_no_rule_and_the_file_ends_at_its_label() -> None:
    text = render()
    active = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "gsm/sim800" not in active  # a UART modem: only the commented example
    assert text.rstrip().endswith('LABEL="smsgw_gsm_end"')
    assert parse_rules(text)[0] == [("ACTION", None, "==", "remove"), ("GOTO", None, "=", "smsgw_gsm_end")]


@pytest.mark.parametrize("line", ['ENV{X}=="1" SYMLINK+="a"', 'ENV{X}=="1", SYMLINK+="a', 'GOTO="nowhere"',
                                  'FOO=="1"', 'ENV=="1"'])
def test_the_parser_refuses_bad_rules(line: str) -> None:
    with pytest.raises(AssertionError):
        parse_rules(line)


def test_cli_writes_the_rules_file(tmp_path: Path) -> None:
    output = tmp_path / "99-smsgw-gsm.rules"
    done = subprocess.run([sys.executable, "-m", "appliance", "udev-rules", "--output", str(output)],
                          capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == render()
    assert output.stat().st_mode & 0o777 == 0o644
    printed = subprocess.run([sys.executable, "-m", "appliance", "udev-rules"], capture_output=True, text=True,
                             env=daemon_env(), cwd=ROOT, timeout=30)
    assert printed.stdout == render()
    failed = subprocess.run([sys.executable, "-m", "appliance", "udev-rules", "--output", str(tmp_path / "no/x")],
                            capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30)
    assert failed.returncode == 2 and "cannot write" in failed.stderr


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed")
def test_udevadm_verify_accepts_the_generated_file(tmp_path: Path) -> None:
    path = tmp_path / "99-smsgw-gsm.rules"
    path.write_text(render())
    help_text = subprocess.run(["udevadm", "--help"], capture_output=True, text=True).stdout
    if "verify" not in help_text:
        pytest.skip("this udevadm has no verify (systemd < 254)")
    done = subprocess.run(["udevadm", "verify", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
