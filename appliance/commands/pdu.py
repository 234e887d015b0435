"""`smsgw pdu decode|encode`: the SMS PDU codec on the command line, JSON out.

``smsgw pdu decode [--no-smsc] HEX...`` (``-`` reads one PDU per line from stdin) prints one JSON
object per PDU per line; a malformed PDU prints ``{"error": ..., "input": ...}`` instead and the exit
status is 1. ``smsgw pdu encode --to NUMBER TEXT`` prints the SMS-SUBMIT parts as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from drivers.pdu import PduError, decode, encode_submit, to_json

NAME = "pdu"
HELP = "decode SMS PDUs to JSON, or encode a text into SMS-SUBMIT PDUs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pdu_command", metavar="ACTION")
    dec = sub.add_parser(
        "decode",
        help="decode PDUs (hex) to JSON, one object per line",
        description="decode PDUs (hex) to JSON, one object per line",
    )
    dec.add_argument(
        "pdus",
        metavar="HEX",
        nargs="+",
        help="PDU in hex, starting with the SMSC field; '-' reads one PDU per line from stdin",
    )
    dec.add_argument(
        "--no-smsc", action="store_true", help="the PDUs start with the first TPDU octet (no SMSC field)"
    )
    enc = sub.add_parser(
        "encode",
        help="encode a text as SMS-SUBMIT PDUs (JSON)",
        description="encode a text as SMS-SUBMIT PDUs (JSON)",
    )
    enc.add_argument("text", metavar="TEXT", help="message text")
    enc.add_argument(
        "--to",
        required=True,
        metavar="NUMBER",
        help="destination: +4917... (international), digits, or alphanumeric",
    )
    enc.add_argument("--smsc", metavar="NUMBER", help="SMSC number (default: the SIM's)")
    enc.add_argument("--report", action="store_true", help="request a delivery report")
    enc.add_argument("--reference", type=int, default=0, metavar="N", help="TP-MR, 0..255 (default 0)")
    enc.add_argument(
        "--validity",
        type=int,
        metavar="SECONDS",
        help="relative validity period in seconds (rounded up to the next TP-VP step)",
    )
    enc.add_argument(
        "--concat-reference",
        type=int,
        metavar="N",
        help="reference shared by the parts of a long message (default: random)",
    )
    enc.add_argument("--concat-16bit", action="store_true", help="16-bit concatenation reference")
    enc.add_argument("--language", metavar="CODE",
                     help="national language (ISO 639-1: tr, es, pt, bn, gu, hi, kn, ml, or, pa, ta, te, ur) whose "
                          "3GPP TS 23.038 shift tables may be used: the fewest parts, else UCS-2")


def _inputs(pdus: list[str]) -> Iterator[str]:
    for item in pdus:
        if item == "-":
            for line in sys.stdin:
                line = line.strip()
                if line:
                    yield line
        else:
            yield item


def _decode(args: argparse.Namespace) -> int:
    failed = False
    for text in _inputs(args.pdus):
        try:
            obj = to_json(decode(text, with_smsc=not args.no_smsc))
        except PduError as exc:
            failed = True
            obj = {"error": str(exc), "input": text}
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    return 1 if failed else 0


#: The longest relative validity period TP-VP can carry: 63 weeks.
MAX_RELATIVE_VALIDITY = 63 * 7 * 86400


def _encode(args: argparse.Namespace) -> int:
    if args.validity is not None and not 0 < args.validity <= MAX_RELATIVE_VALIDITY:
        print(f"smsgw pdu encode: --validity must be 1 to {MAX_RELATIVE_VALIDITY} seconds (63 weeks, the longest "
              f"relative TP-VP), not {args.validity}", file=sys.stderr)
        return 2
    try:
        parts = encode_submit(
            args.to,
            args.text,
            smsc=args.smsc,
            report=args.report,
            reference=args.reference,
            validity=args.validity,
            concat_reference=args.concat_reference,
            concat_16bit=args.concat_16bit,
            language=args.language,
        )
    except PduError as exc:
        print(f"smsgw pdu encode: {exc}", file=sys.stderr)
        return 2
    first = decode(parts[0].pdu)
    encoding = first.encoding  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "encoding": encoding,
                "national_language": to_json(first).get("national_language"),
                "parts": [{"pdu": part.pdu, "tpdu_length": part.tpdu_length} for part in parts],
            },
            ensure_ascii=False,
        )
    )
    return 0


def main(args: argparse.Namespace) -> int:
    if args.pdu_command == "decode":
        return _decode(args)
    if args.pdu_command == "encode":
        return _encode(args)
    print("smsgw pdu: say 'decode' or 'encode' (see smsgw pdu --help)", file=sys.stderr)
    return 2
