"""Replays the corpus of real PDUs and +CMGR/+CDS replies (tests/data/pdus/corpus.json: gammu's
tests/at-sms*, smslib-v3's testPdus.txt, oFono's unit/test-sms.c, public issue threads; each entry
names its source) through smsgw's parser and codec.

A reply gammu decodes is decoded here too, matching every value its source asserts; a reply gammu's
own tests expect to fail (tests/at-sms-failing) is reported with a reason, never an exception, so
the daemon commits it as undecodable and frees its slot.
"""

from __future__ import annotations

from typing import Any

import corpus
import pytest

ENTRIES = corpus.load()


def _id(entry: dict[str, Any]) -> str:
    source = entry["source"]
    return f"{source['repo']}:{source.get('path') or source.get('issue')}:{entry.get('note') or ''}"[:90]


def _expected_to_fail(entry: dict[str, Any]) -> bool:
    return "at-sms-failing" in str(entry["source"].get("path", ""))


def test_the_corpus_is_large_and_every_entry_names_its_source() -> None:
    assert len(ENTRIES) >= 50
    assert all(entry["source"].get("repo") and (entry["source"].get("path") or entry["source"].get("issue"))
               for entry in ENTRIES)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if not _expected_to_fail(e)], ids=_id)
def test_real_replies_decode_and_match_what_their_source_asserts(entry: dict[str, Any]) -> None:
    passed, detail = corpus.ours(entry)
    assert passed, detail


@pytest.mark.parametrize("entry", [e for e in ENTRIES if _expected_to_fail(e)], ids=_id)
def test_replies_gammu_refuses_come_back_as_a_reason_not_an_exception(entry: dict[str, Any]) -> None:
    passed, detail = corpus.ours(entry)
    assert not passed and detail
