"""Modem profiles: every shipped profile loads, matching by identity and USB id, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.profiles import (
    TIMEOUT_KEYS,
    Profile,
    ProfileError,
    load_profile,
    load_profile_file,
    match_identity,
    match_usb,
    profile_names,
)

CONTRACT = ["e3372", "ec25", "generic", "sim7600", "sim800"]
SHIPPED = sorted([
    *CONTRACT, "ec21", "eg91", "eg95", "bg96", "bg95", "sim7000", "sim7070", "a7670", "e173", "e1750", "e3131",
    "ms2131", "zte_mf", "sierra_mc7xxx", "le910", "ublox", "fibocom_l8xx",
])


def test_the_contract_profiles_and_the_real_modem_profiles_are_shipped() -> None:
    assert profile_names() == SHIPPED


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "generic"])
def test_every_vendor_profile_names_its_public_sources_and_can_be_detected(name: str) -> None:
    profile = load_profile(name)
    header = Path(profile.source).read_text().split("\ndescription", 1)[0]
    assert "Sources:" in header or "Source:" in header
    assert profile.model_patterns, "a profile must be reachable from +CGMM at least"


def test_each_usb_function_belongs_to_one_profile_only() -> None:
    owners: dict[tuple[int, int, int | None], str] = {}
    for name in SHIPPED:
        for usb in load_profile(name).usb_ids:
            key = (usb.vid, usb.pid, usb.interface)
            assert key not in owners, f"{usb} is in {owners[key]} and {name}"
            owners[key] = name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_profile_loads_with_all_timeouts_and_store_first_cnmi(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, Profile)
    assert profile.name == name
    assert profile.description
    assert set(profile.timeouts) == set(TIMEOUT_KEYS)
    assert all(value > 0 for value in profile.timeouts.values())
    # store-first: mode 2, mt 1 (+CMTI), so nothing is lost if we are not listening
    assert re.fullmatch(r"AT\+CNMI=2,1,0,[12],0", profile.cnmi)
    assert len(profile.storage) == 3
    for pattern in profile.ignore_urcs:
        # an ignored URC must never swallow a reply we ask for
        for reply in ("+CPIN: READY", "+CFUN: 1", "+CSQ: 20,99", "+CMGS: 4", "+CUSD: 0,\"x\",15", "OK"):
            assert not re.search(pattern, reply), (name, pattern, reply)


@pytest.mark.parametrize(
    ("manufacturer", "model", "expected"),
    [
        ("SIMCOM_Ltd", "SIMCOM_SIM800L", "sim800"),
        ("SIMCOM_Ltd", "SIM800 R14.18", "sim800"),
        ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "sim7600"),
        ("SIMCOM INCORPORATED", "SIM7600G-H", "sim7600"),
        ("Quectel", "EC25", "ec25"),
        ("Quectel", "EG25", "ec25"),
        ("huawei", "E3372", "e3372"),
        ("Huawei Technologies Co.,Ltd.", "E3372h-153", "e3372"),
        ("Quectel", "EC21", "ec21"),
        ("Quectel", "EG25", "ec25"),
        ("Quectel", "EG91", "eg91"),
        ("Quectel", "EG95", "eg95"),
        ("Quectel", "BG96", "bg96"),
        ("Quectel", "BG95-M3", "bg95"),
        ("Quectel", "EM05", "generic"),          # known vendor, unknown model
        ("SIMCOM INCORPORATED", "SIMCOM_SIM7000E", "sim7000"),
        ("SIMCOM INCORPORATED", "SIM7080G", "sim7070"),
        ("SIMCOM INCORPORATED", "SIMCOM_SIM7070G", "sim7070"),
        ("SIMCOM INCORPORATED", "A7670SA-FASE", "a7670"),   # TinyGSM#739
        ("SIMCOM INCORPORATED", "A7670G-LLSE", "a7670"),    # LilyGo-Modem-Series#195
        ("SIMCOM INCORPORATED", "SIMCOM_A7600E-H", "sim7600"),
        ("SIMCOM INCORPORATED", "A7600E-H", "sim7600"),
        ("huawei", "E173", "e173"),
        ("huawei", "E1750", "e1750"),           # gammu#94
        ("huawei", "E3131", "e3131"),
        ("huawei", "MS2131", "ms2131"),
        ("ZTE INCORPORATED", "MF626", "zte_mf"),
        ("ZTE INCORPORATED", "MF110", "zte_mf"),
        ("ZTE INCORPORATED", "MF190", "zte_mf"),
        ("ZTE INCORPORATED", "MF627", "zte_mf"),  # ModemManager test-modem-helpers.c devids
        ("Sierra Wireless, Incorporated", "MC7455", "sierra_mc7xxx"),
        ("Sierra Wireless, Incorporated", "MC7304", "sierra_mc7xxx"),
        ("Telit", "LE910C1-EUX", "le910"),
        ("u-blox", "LARA-R211", "ublox"),
        ("u-blox", "SARA-U201", "ublox"),
        ("Fibocom", "L850 LTE Module", "fibocom_l8xx"),  # luci-app-modemdata#18
        ("WAVECOM MODEM", "MULTIBAND 900E 1800", "generic"),
        ("", "", "generic"),
        ("", "E1750", "e1750"),                 # +CGMI answered nothing: the model alone decides (gammu#94)
        ("ZTE INCORPORATED", "E1750", "generic"),  # a named manufacturer must still match
    ],
)
def test_match_identity_picks_the_profile_from_cgmi_and_cgmm(manufacturer: str, model: str, expected: str) -> None:
    assert match_identity(manufacturer, model).name == expected


@pytest.mark.parametrize(
    ("vid", "pid", "interface", "expected"),
    [
        (0x1E0E, 0x9001, 2, "sim7600"),
        (0x1E0E, 0x9001, 0, None),      # the QCDM port of a SIM7600 is not the AT port
        (0x1E0E, 0x9001, None, "sim7600"),
        (0x2C7C, 0x0125, 2, "ec25"),
        (0x2C7C, 0x0125, 1, None),      # the NMEA port
        (0x12D1, 0x1506, 0, "e3372"),
        (0x12D1, 0x1001, 2, "e3372"),
        (0x2C7C, 0x0121, 2, "ec21"),
        (0x2C7C, 0x0191, 2, "eg91"),
        (0x2C7C, 0x0195, 2, "eg95"),
        (0x2C7C, 0x0296, 2, "bg96"),
        (0x2C7C, 0x0296, 0, None),      # BG96 QCDM
        (0x1E0E, 0x9205, 2, "sim7070"),
        (0x1E0E, 0x9206, 2, "sim7070"),
        (0x19D2, 0x0031, 3, "zte_mf"),
        (0x19D2, 0x0031, 1, None),      # the secondary AT port is not the one smsgw opens
        (0x1199, 0x9071, 3, "sierra_mc7xxx"),
        (0x1199, 0x9071, 0, None),      # Sierra QCDM
        (0x1199, 0x68C0, 3, "sierra_mc7xxx"),
        (0x1BC7, 0x1201, 4, "le910"),
        (0x1BC7, 0x1031, 1, "le910"),
        (0x1546, 0x110A, 0, "ublox"),
        (0x1546, 0x1102, 0, "ublox"),
        (0x2CB7, 0x0007, 2, "fibocom_l8xx"),
        (0x2CB7, 0x0007, 4, None),      # Fibocom debug port
        (0x10C4, 0xEA60, 0, None),      # a CP210x bridge says nothing about the modem behind it
        (0x1A86, 0x7523, 0, None),      # CH340
    ],
)
def test_match_usb_finds_the_at_port_by_vid_pid_and_interface(
    vid: int, pid: int, interface: int | None, expected: str | None
) -> None:
    profile = match_usb(vid, pid, interface)
    assert (profile.name if profile else None) == expected


def test_power_key_timing_is_given_for_the_modules_that_have_a_pwrkey() -> None:
    assert load_profile("sim800").power_key is not None
    assert load_profile("sim800").power_key.on_pulse >= 1.0  # type: ignore[union-attr]
    assert load_profile("sim7600").power_key.on_pulse >= 0.1  # type: ignore[union-attr]
    assert load_profile("ec25").power_key.on_pulse >= 0.5  # type: ignore[union-attr]
    assert load_profile("e3372").power_key is None  # a USB stick has no PWRKEY


def test_with_timeouts_overrides_only_the_named_timeouts() -> None:
    base = load_profile("generic")
    short = base.with_timeouts(command=0.2, ussd=0.5)
    assert short.timeout("command") == 0.2
    assert short.timeout("ussd") == 0.5
    assert short.timeout("send") == base.timeout("send")
    with pytest.raises(KeyError, match="bogus"):
        base.with_timeouts(bogus=1.0)
    with pytest.raises(ValueError, match="positive"):
        base.with_timeouts(command=0)


def _write(tmp_path: Path, text: str, name: str = "bad") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


VALID = """
description = "test"
[timeouts]
command = 1
send = 1
cmgl = 1
sync = 1
boot = 1
ussd = 1
"""


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("description = 'x'\n[timeouts]\ncommand = 1\n", "timeouts.send", "missing"),
        (VALID.replace("command = 1", "command = 'soon'"), "timeouts.command", "number of seconds"),
        (VALID + "[at]\ncnmi = 'AT+CNMI=banana'\n", "at.cnmi", "AT+CNMI"),
        (VALID + "[at]\nstorage = ['SIM']\n", "at.storage", "memory names"),
        (VALID + "[at]\nechoo = true\n", "at.echoo", "unknown key"),
        (VALID + "[at]\nignore_urcs = ['^(unclosed']\n", "at.ignore_urcs", "bad regular expression"),
        (VALID + "[at]\nstorage_full_urcs = ['^(unclosed']\n", "at.storage_full_urcs", "bad regular expression"),
        (VALID + "[calls]\nhang_up = 'CHUP'\n", "calls.hang_up", "must start with AT"),
        (VALID + "[calls]\ninit_commands = ['CLIP=1']\n", "calls.init_commands", "must start with AT"),
        (VALID + "[calls]\nhangup = 'ATH'\n", "calls.hangup", "unknown key"),
        (VALID + "[detection]\nusb = [{ vid = '1e0e', pid = 9001 }]\n", "detection.usb[0].pid", "four hex digits"),
        (VALID + "[detection]\nusb = [{ vid = '1e0e', pid = '9001', interface = -1 }]\n",
         "detection.usb[0].interface", "non-negative"),
        (VALID + "[at]\ninit_commands = ['CMGF=0']\n", "at.init_commands", "start with AT"),
        ("vendor_class = 'Huawei!'\n" + VALID, "vendor_class", "lower-case"),
        (VALID + "[power_key]\non_pulse = 1\n", "power_key.off_pulse", "missing"),
        ("description = 'x'\n[timeouts\n", None, "not valid TOML"),
    ],
)
def test_a_bad_profile_file_raises_an_error_naming_file_and_key(
    tmp_path: Path, text: str, key: str | None, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)
    assert info.value.key == key
    if key:
        assert key in str(info.value)
    assert reason in str(info.value)


def test_load_profile_with_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="known: a7670, bg95, .*, generic, .*, zte_mf"):
        load_profile("nokia3310")


def test_a_profile_directory_can_be_given_and_is_validated(tmp_path: Path) -> None:
    _write(tmp_path, VALID, name="generic")
    _write(tmp_path, VALID + "[detection]\nmodel_patterns = ['^MY1']\nmanufacturer_patterns = ['ACME']\n", name="acme")
    assert profile_names(tmp_path) == ["acme", "generic"]
    assert match_identity("ACME Corp", "MY100", directory=tmp_path).name == "acme"
    assert match_identity("ACME Corp", "OTHER", directory=tmp_path).name == "generic"
