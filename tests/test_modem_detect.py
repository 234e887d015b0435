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
from drivers.identity import IDENTITY_COMMANDS, ati_values, identity_value, imei_value

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
    assert "REVISION" in table.splitlines()[0]


def test_a_missing_port_is_reported_as_unopenable(tmp_path: Path) -> None:
    found = asyncio.run(detect.detect([str(tmp_path / "nothing")], timeout=0.2))
    assert found[0].status.startswith("cannot open")


def test_cli_detect_json_for_given_ports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["detect", "--no-scan", "--json", "--timeout", "0.2", "--port", str(tmp_path / "none")])
    assert status == 1  # nothing found
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["port"] == str(tmp_path / "none")
    assert set(entry) >= {"port", "usb", "profile", "manufacturer", "model", "revision", "imei", "status"}


# Reply forms of real modems: ModemManager src/tests/test-modem-helpers.c (test_cdma_parse_gsn, devids,
# commit 6b3682ed), vshymanskyy/TinyGSM#444 (SIM7x00), 4IceG/luci-app-modemdata#18 (Fibocom L850-GL),
# EC25 "Revision: EC25EFAR06A06M4G" and SIM800 "Revision:1418B05SIM800L24" (the simulator's flavours).
@pytest.mark.parametrize(("lines", "labels", "value"), [
    (["356936001568843,NL2A62Z0N5"], IDENTITY_COMMANDS["imei"][1], "356936001568843,NL2A62Z0N5"),
    (['+CGSN: "869777028421538"'], IDENTITY_COMMANDS["imei"][1], "869777028421538"),
    (['+GSN: "869777028421538"'], IDENTITY_COMMANDS["imei"][1], "869777028421538"),
    (['"626936926396996"'], IDENTITY_COMMANDS["imei"][1], "626936926396996"),
    (["Revision: EC25EFAR06A06M4G"], IDENTITY_COMMANDS["revision"][1], "EC25EFAR06A06M4G"),
    (["Revision:1418B05SIM800L24"], IDENTITY_COMMANDS["revision"][1], "1418B05SIM800L24"),
    (['+CGMR: "18500.5001.00.05.27.16"'], IDENTITY_COMMANDS["revision"][1], "18500.5001.00.05.27.16"),
    (["+CGMR: LE20B04SIM7600M22"], IDENTITY_COMMANDS["revision"][1], "LE20B04SIM7600M22"),
    (['"R564_G_12.00.47P"'], IDENTITY_COMMANDS["revision"][1], "R564_G_12.00.47P"),
    (['+CGMM: "L850 LTE Module","L850"'], IDENTITY_COMMANDS["model"][1], "L850 LTE Module"),
    ([" WAVECOM MODEM"], IDENTITY_COMMANDS["manufacturer"][1], "WAVECOM MODEM"),
    (["", "huawei"], IDENTITY_COMMANDS["manufacturer"][1], "huawei"),
    ([], IDENTITY_COMMANDS["manufacturer"][1], ""),
])
def test_identity_values_lose_their_labels_and_quotes(lines: list[str], labels: tuple[str, ...], value: str) -> None:
    assert identity_value(lines, labels) == value


@pytest.mark.parametrize(("text", "imei"), [
    ("356936001568843,NL2A62Z0N5", "356936001568843"),  # IMEI + serial number
    ("354237065082227", "354237065082227"),
    ("0x6744775", ""),           # an ESN (CDMA)
    ("12de4fa6", ""),            # Huawei EC121's ESN
    ("359324xxxxxx", ""),        # masked by the reporter
    ("", ""),
])
def test_the_imei_is_the_leading_digits_without_a_serial_suffix(text: str, imei: str) -> None:
    assert imei_value(text) == imei


async def test_identity_falls_back_to_the_v25ter_commands_and_detect_reports_the_revision() -> None:
    """+CGMI then +GMI, +CGMM then +GMM: the order of ModemManager's src/mm-broadband-modem.c tables; the
    "+GMI: LG Electronics Inc." form is the LG LX265's in its test-modem-helpers.c devids."""
    async with pty_responder() as responder:
        responder.on("AT", OK)
        responder.on("ATE0", OK)
        responder.on("AT+CGMI", b"\r\nERROR\r\n")
        responder.on("AT+GMI", b"\r\n+GMI: LG Electronics Inc.\r\n" + OK)
        responder.on("AT+CGMM", b"\r\n+CME ERROR: 4\r\n")
        responder.on("AT+GMM", b"\r\nERROR\r\n")
        responder.on("AT+CGMR", b"\r\n+CGMR: 25.30.226\r\n" + OK)
        responder.on("AT+CGSN", b'\r\n+CGSN: "356936001568843"\r\n' + OK)
        [found] = await detect.detect([responder.path], timeout=0.5)
    assert (found.manufacturer, found.model, found.revision, found.imei) == ("LG Electronics Inc.", "", "25.30.226",
                                                                         "356936001568843")
    assert found.status == "ok" and found.profile == "generic"


def test_ati_labelled_lines_fill_the_identity() -> None:
    """vshymanskyy/TinyGSM#739 (A7670SA) and ModemManager's devids (Huawei E1550) ATI answers."""
    assert ati_values(["Manufacturer: INCORPORATED", "Model: A7670SA-FASE", "Revision: A7670M7_V1.11.1",
                       "IMEI: 869731054051594", "+GCAP: +CGSM,+FCLASS,+DS"]) == {
        "manufacturer": "INCORPORATED", "model": "A7670SA-FASE", "revision": "A7670M7_V1.11.1",
        "imei": "869731054051594"}
    assert ati_values(["Manufacturer: +GMI: LG Electronics Inc.", "Revision: +GMR: LX265V05, 50571"]) == {
        "manufacturer": "LG Electronics Inc.", "revision": "LX265V05, 50571"}
    assert ati_values(["SIMCOM_Ltd", "SIMCOM_SIM300C"]) == {}  # unlabelled: nothing is guessed


@pytest.mark.parametrize("profile_name", ["generic", "sim800", "sim7600", "ec25", "e3372"])
async def test_inspect_port_reads_sim_state_attempts_and_iccid_without_entering_a_pin(
        tmp_path: Path, profile_name: str) -> None:
    from drivers.modem import inspect_port
    from drivers.simulator import Simulator

    async with Simulator(tmp_path / "sim", profile=profile_name, pin="1234", control=False) as sim:
        found = await inspect_port(sim.ports[0], timeout=1.0)
        modem = sim.modems[0]
        assert found.sim is not None
        assert (found.sim.state, found.sim.pin_attempts) == ("SIM PIN", 3)
        assert str(found.sim) == "PIN required, 3 attempts left"
        assert (found.identity.imei, found.identity.iccid) == (modem.imei, modem.iccid)
        expected_profile = "generic" if profile_name == "generic" else profile_name
        assert found.profile == expected_profile
        assert modem.pin_entries == 0 and modem.pin_attempts == 3
        modem.fault("pin-required")  # still locked; now a wrong PIN elsewhere costs one
        modem.pin_attempts = 2
        again = await inspect_port(sim.ports[0], timeout=1.0)
        assert again.sim is not None and again.sim.pin_attempts == 2 and modem.pin_entries == 0
        assert again.sim.pin_lock is None  # asked only of a READY SIM
        modem.pin_locked = False  # unlocked (by a PIN entered elsewhere): its PIN lock stays on
        unlocked = await inspect_port(sim.ports[0], timeout=1.0)
        assert unlocked.sim is not None and (unlocked.sim.state, unlocked.sim.pin_lock) == ("READY", True)
