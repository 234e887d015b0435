"""PDU codec throughput: ours (drivers.pdu) vs python-gsmmodem-new, same inputs, one run.

    .venv/bin/python bench/codec.py [--rounds 7] [--messages 400]

Prints messages per second (median of the rounds) for decoding and encoding, side by side, and the
ratio ours/theirs. Inputs are BMP texts (python-gsmmodem raises on anything else): short and long
GSM 7-bit texts with extension characters, and UCS-2 texts; single and multi-part. Decoding uses
the same hex PDUs for both (SMS-SUBMIT from python-gsmmodem's encoder and SMS-DELIVER from ours).
Their encoder is timed without turning its bytearrays into hex, which favours them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gsmmodem import pdu as theirs  # noqa: E402

from drivers import pdu as ours  # noqa: E402

TARGET_DECODE = 3.0
TARGET_ENCODE = 2.0

WORDS_GSM = "hello world alarm door opened temperature 21.5 {sensor} [ok] €5 garage battery low".split()
WORDS_UCS2 = "Привет мир тревога дверь открыта температура датчик батарея".split()


def make_texts(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        words = WORDS_UCS2 if i % 4 == 3 else WORDS_GSM
        length = rng.choice([20, 60, 140, 160, 300, 450])
        text = ""
        while len(text) < length:
            text += rng.choice(words) + " "
        texts.append(text[:length])
    return texts


def make_numbers(count: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [f"+49{rng.randrange(10**9, 10**10)}" for _ in range(count)]


def rate(func: Callable[[], int], rounds: int) -> float:
    """Median messages per second over ``rounds`` runs of ``func`` (which returns the count)."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = func()
        rates.append(done / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args(argv)

    texts = make_texts(args.messages)
    numbers = make_numbers(args.messages)
    stamp = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))

    pdus: list[str] = []
    for number, text in zip(numbers, texts, strict=True):
        if len(pdus) % 2:
            pdus += [str(p) for p in theirs.encodeSmsSubmitPdu(number, text, requestStatusReport=False)]
        else:
            pdus += ours.encode_deliver(number, text, timestamp=stamp, concat_reference=7)

    # both sides must read the same texts from the same PDUs
    for hex_pdu in pdus:
        mine, other = ours.decode(hex_pdu), theirs.decodeSmsPdu(hex_pdu)
        assert mine.text == other["text"], (hex_pdu, mine.text, other["text"])  # type: ignore[union-attr]

    def decode_ours() -> int:
        decode = ours.decode
        for hex_pdu in pdus:
            decode(hex_pdu)
        return len(pdus)

    def decode_theirs() -> int:
        decode = theirs.decodeSmsPdu
        for hex_pdu in pdus:
            decode(hex_pdu)
        return len(pdus)

    def encode_ours() -> int:
        encode = ours.encode_submit
        for number, text in zip(numbers, texts, strict=True):
            encode(number, text, concat_reference=7)
        return len(texts)

    def encode_theirs() -> int:
        encode = theirs.encodeSmsSubmitPdu
        for number, text in zip(numbers, texts, strict=True):
            encode(number, text, requestStatusReport=False)
        return len(texts)

    results = []
    for name, mine, other, target in (
        ("decode (PDUs/s)", decode_ours, decode_theirs, TARGET_DECODE),
        ("encode (texts/s)", encode_ours, encode_theirs, TARGET_ENCODE),
    ):
        ours_rate, theirs_rate = rate(mine, args.rounds), rate(other, args.rounds)
        results.append((name, ours_rate, theirs_rate, ours_rate / theirs_rate, target))

    parts = len(pdus)
    print(f"inputs: {len(texts)} BMP texts -> {parts} PDUs; median of {args.rounds} rounds")
    print(f"{'':18} {'smsgw':>12} {'gsmmodem':>12} {'ratio':>7} {'target':>7}")
    ok = True
    for name, ours_rate, theirs_rate, ratio, target in results:
        met = ratio >= target
        ok &= met
        print(
            f"{name:18} {ours_rate:12,.0f} {theirs_rate:12,.0f} {ratio:6.1f}x {target:5.1f}x {'ok' if met else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
