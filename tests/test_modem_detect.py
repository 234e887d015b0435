"""`smsgw detect`: sysfs USB ids, port scanning, probing that never hangs, table and JSON output."""

from __future__ import annotations

import asyncio
import json
import os
import tty
from pathlib import Path

import pytest
from engine_fixtures import pty_responder

from appliance.cli import main as cli_main
from appliance.commands import detect

OK = b"\r\nOK\r\n"


def fake_sysfs(root: Path, tty_name: str, vid: str, pid: str, interface: str) -> Path:
    device = root / "devices" / "usb1" / "1-1"
    function = device / "1-1:1.2"
    node = function / tty_name
    node.mkdir(parents=True)
    (device / "idVendor").write_text(vid + "\n")
    (device / "idProduct").write_text(pid + "\n")
    (function / "bInterfaceNumber").write_text(interface + "\n")
    tty_class = root / "class" / "tty" / tty_name
    tty_class.mkdir(parents=True)
    (tty_class / "device").symlink_to(node)
    return root / "class" / "tty"


def test_usb_info_reads_vid_pid_and_interface_from_sysfs(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, "ttyUSB2", "2c7c", "0125", "02")
    info = detect.usb_info("/dev/ttyUSB2", sysfs)
    assert info is not None
    assert (info.vid, info.pid, info.interface) == (0x2C7C, 0x0125, 2)
    assert str(info) == "2c7c:0125 if#2"
    assert detect.usb_info("/dev/ttyAMA0", sysfs) is None  # a UART has no USB parent


def test_candidate_ports_keep_given_ports_first_and_list_each_device_once(tmp_path: Path) -> None:
    target = tmp_path / "modem0"
    target.write_text("")
    alias = tmp_path / "alias"
    alias.symlink_to(target)
    assert detect.candidate_ports([str(target), str(alias)], scan=False) == [str(target)]


async def test_a_silent_port_is_reported_without_hanging() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        [found] = await detect.detect([os.ttyname(slave)], timeout=0.2, deadline=2.0)
        assert loop.time() - started < 2.5
        assert found.status.startswith("no answer")
        assert found.profile is None
    finally:
        os.close(master)
        os.close(slave)


async def test_a_modem_is_identified_by_cgmi_cgmm_and_cgsn() -> None:
    async with pty_responder() as responder:
        responder.on("AT", OK)
        responder.on("ATE0", OK)
        responder.on("AT+CGMI", b"\r\nQuectel\r\n" + OK)
        responder.on("AT+CGMM", b"\r\nEC25\r\n" + OK)
        responder.on("AT+CGSN", b"\r\n867000000000001\r\n" + OK)
        [found] = await detect.detect([responder.path], timeout=0.5)
    assert (found.profile, found.manufacturer, found.model, found.imei) == ("ec25", "Quectel", "EC25", "867000000000001")
    assert found.status == "ok"
    table = detect.format_table([found])
    assert "ec25" in table and "867000000000001" in table and table.startswith("PORT")


def test_a_missing_port_is_reported_as_unopenable(tmp_path: Path) -> None:
    found = asyncio.run(detect.detect([str(tmp_path / "nothing")], timeout=0.2))
    assert found[0].status.startswith("cannot open")


def test_cli_detect_json_for_given_ports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["detect", "--no-scan", "--json", "--timeout", "0.2", "--port", str(tmp_path / "none")])
    assert status == 1  # nothing found
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["port"] == str(tmp_path / "none")
    assert set(entry) >= {"port", "usb", "profile", "manufacturer", "model", "imei", "status"}
