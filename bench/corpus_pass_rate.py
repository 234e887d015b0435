"""Pass rate of smsgw's decoder and of python-gsmmodem-new's on the corpus of real PDUs and replies
(tests/data/pdus/corpus.json). Prints one line per decoder and the entries either one missed.

    python bench/corpus_pass_rate.py

An entry passes when the decoder returns a message and matches every value its source asserts.
"Expected to fail" entries are gammu's tests/at-sms-failing (gammu's own test asserts it refuses them):
smsgw commits those as undecodable instead of refusing them forever.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import corpus  # noqa: E402


def main() -> None:
    entries = corpus.load()
    kinds = Counter(entry["kind"] for entry in entries)
    print(f"corpus: {len(entries)} entries: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    failing = [e for e in entries if "at-sms-failing" in str(e["source"].get("path", ""))]
    valid = [e for e in entries if e not in failing]
    with_pdu = [e for e in entries if corpus.pdu_of(e) is not None]
    valid_pdu = [e for e in valid if corpus.pdu_of(e) is not None]
    for name, read in (("smsgw", corpus.ours), ("python-gsmmodem-new", corpus.theirs)):
        def rate(group: list[dict], read=read) -> str:
            results = [read(e) for e in group]
            passed = sum(1 for r in results if r is not None and r[0])
            counted = sum(1 for r in results if r is not None)
            return f"{passed}/{counted} ({100 * passed / counted:.0f}%)" if counted else "n/a"
        print(f"{name:20s} all with a PDU: {rate(with_pdu):>12s}   valid with a PDU: {rate(valid_pdu):>12s}"
              f"   valid incl. text mode: {rate(valid):>12s}   expected to fail: {rate(failing)} decoded")
    print("missed by python-gsmmodem-new among valid entries:")
    for entry in valid_pdu:
        result = corpus.theirs(entry)
        if result is not None and not result[0]:
            print(f"  {entry['source'].get('path') or entry['source']}: {result[1][:90]}")


if __name__ == "__main__":
    main()
