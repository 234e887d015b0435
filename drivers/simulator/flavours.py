"""What each profile's simulated modem says: identity strings, boot URCs, reply variants.

The identity strings are the ones the real modems give, so ``auto`` detection (the profile's
+CGMI/+CGMM patterns) picks the matching profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Flavour:
    manufacturer: str
    model: str
    revision: str
    #: Lines sent after power-up / reset / replug.
    boot_urcs: tuple[str, ...] = ()
    #: First SIM storage index (Huawei counts from 0).
    first_index: int = 1
    #: ``+CMGL: 1,0,"",24`` instead of ``+CMGL: 1,0,,24`` (same for +CMGR).
    alpha_quoted: bool = False
    #: Unsolicited line when an incoming SMS finds the storage full.
    full_urc: str = '+CIEV: "SMSFULL",1'
    #: Answers +CEREG (LTE); 2G modems answer ERROR.
    lte: bool = True
    #: ICCID command (name as typed, upper case, with its ? when it is a read form) -> reply line.
    iccid: dict[str, str] = field(default_factory=lambda: {"+CCID": "+CCID: {iccid}"})
    #: Vendor URCs interleaved with replies until the client turns them off (Huawei ^CURC=0).
    chatter: tuple[str, ...] = ()
    #: USSD strings as GSM 7-bit packed hex (Huawei).
    ussd_packed: bool = False
    #: ``+CPIN: READY`` / ``+CPIN: SIM PIN`` URCs when the SIM state changes (SIMCom, Quectel do;
    #: an unasked line between two commands breaks gammu-smsd's PIN dialogue).
    cpin_urcs: bool = False
    #: The +CMGR header in PDU mode, one of CMGR_HEADERS (``smsgw simulate fault … cmgr-header:NAME``
    #: switches it at run time, to try the variants real modems send).
    cmgr_header: str = "standard"
    #: Huawei's +CREG/+CGREG/+CEREG: a space after each comma and LAC/CI without quotes
    #: (``+CREG: 2, 1, 1A2B, 01C3D4E5``).
    spaced_registration: bool = False
    #: Access technology in +COPS / +CREG (0 GSM, 2 UTRAN, 7 E-UTRAN).
    act: int = 7
    #: The command that tells the PIN attempts left (name as typed, upper case) and its reply line;
    #: {pin} is the PIN attempts left, {code} the +CPIN state. Answered with the SIM locked.
    pin_counter: tuple[str, str] = ("+CPINR", "+CPINR: SIM PIN,{pin},3")
    #: Whether calls ring (LTE data sticks such as the E3372 have no voice service).
    voice: bool = True
    #: The +CLIP line after each RING ({number}, {type} 145/129/128, {validity} 0 or 1 withheld): the
    #: form ModemManager's src/mm-modem-helpers.c and python-gsmmodem's test/fakemodems.py show
    #: (``+CLIP: "+393351391306",145,,,,0``) unless the flavour says otherwise.
    clip_format: str = '+CLIP: "{number}",{type},,,,{validity}'
    #: What the modem says when the caller gives up before the call is answered.
    call_end_urc: str = "NO CARRIER"


#: +CMGR headers in PDU mode as real modems send them: ``+CMGR: 0,,24``, ``+CMGR: ,,27`` (no <stat>),
#: ``+CMGR: 0,23`` (no <alpha> field), ``+CMGR: 24`` (the length alone).
CMGR_HEADERS: dict[str, str] = {
    "standard": "{stat},{alpha},{length}",
    "no-stat": ",{alpha},{length}",
    "no-alpha": "{stat},{length}",
    "length-only": "{length}",
}

FLAVOURS: dict[str, Flavour] = {
    "generic": Flavour(
        manufacturer="smsgw",
        model="Simulated GSM modem",
        revision="smsgw-sim 1.0",
    ),
    "sim800": Flavour(
        cpin_urcs=True,
        manufacturer="SIMCOM_Ltd",
        model="SIMCOM_SIM800L",
        revision="Revision:1418B05SIM800L24",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        alpha_quoted=True,
        lte=False,
        iccid={"+CCID": "{iccid}"},
        act=0,
        pin_counter=("+SPIC", "+SPIC: {pin},10,3,10"),
        # a SIM800L's caller ID (vshymanskyy/TinyGSM issue 721): +CLIP: "+…",145,"",0,"",0
        clip_format='+CLIP: "{number}",{type},"",0,"",{validity}',
    ),
    "sim7600": Flavour(
        cpin_urcs=True,
        manufacturer="SIMCOM INCORPORATED",
        model="SIMCOM_SIM7600E-H",
        revision="+CGMR: LE20B04SIM7600M22",
        boot_urcs=("RDY", "+CPIN: READY", "SMS DONE", "PB DONE"),
        iccid={"+CICCID": "+ICCID: {iccid}", "+CCID": "+CCID: {iccid}"},
        pin_counter=("+SPIC", "+SPIC: {pin},10,3,10"),
        clip_format='+CLIP: "{number}",{type},"",0,"",{validity}',
    ),
    "ec25": Flavour(
        cpin_urcs=True,
        manufacturer="Quectel",
        model="EC25",
        revision="Revision: EC25EFAR06A06M4G",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
        full_urc='+QIND: "smsfull","SM"',
        iccid={"+QCCID": "+QCCID: {iccid}", "+CCID": "+CCID: {iccid}"},
        pin_counter=("+QPINC", '+QPINC: "SC",{pin},10'),
        clip_format='+CLIP: "{number}",{type},"",0,"",{validity}',
    ),
    "e3372": Flavour(
        manufacturer="huawei",
        model="E3372",
        revision="22.328.62.00.143",
        boot_urcs=("^SIMST: 1", "^SRVST: 2", "^MODE: 5,4"),
        first_index=0,
        full_urc='^SMMEMFULL: "SM"',
        iccid={"^ICCID?": "^ICCID: {iccid}"},
        chatter=("^RSSI: 23", "^MODE: 5,4", "^SRVST: 2", "^HCSQ: \"LTE\",55,40,120,30"),
        spaced_registration=True,
        ussd_packed=True,
        pin_counter=("^CPIN", "^CPIN: {code},{pin},10,{pin},3,10"),
        voice=False,
    ),
}


def flavour_for(profile_name: str, vendor_class: str) -> Flavour:
    if profile_name in FLAVOURS:
        return FLAVOURS[profile_name]
    if vendor_class == "huawei":
        return FLAVOURS["e3372"]
    return FLAVOURS["generic"]
