"""MQTT topic filters: matching, validation, covering, overlap (appliance/topics.py)."""

from __future__ import annotations

import pytest

from appliance.topics import cover_filters, filter_covers, filters_overlap, topic_filter_error, topic_matches

# --- topic matching -------------------------------------------------------------------------

TOPIC_CASES = [
    ("sensors/+/temperature", "sensors/freezer-3/temperature", True),
    ("sensors/+/temperature", "sensors/freezer-3/humidity", False),
    ("sensors/+/temperature", "sensors/a/b/temperature", False),
    ("sensors/#", "sensors", True),
    ("sensors/#", "sensors/a/b/c", True),
    ("sensors/#", "sensorsX/a", False),
    ("#", "anything/at/all", True),
    ("#", "$SYS/broker/uptime", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/broker", True),
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", False),
    ("a/+", "a/", True),
    ("+/+", "a/b", True),
    ("+", "a/b", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), TOPIC_CASES)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "problem"), [
    ("a/#/b", "'#' must be a whole level and the last one"),
    ("a/b#", "'#' must be a whole level and the last one"),
    ("a/x+/b", "'+' must be a whole level"),
    ("", "must be a non-empty topic filter"),
    ("a/b/#", None),
    ("+/+/+", None),
])
def test_topic_filter_validation(topic_filter: str, problem: str | None) -> None:
    assert topic_filter_error(topic_filter) == problem


@pytest.mark.parametrize(("wide", "narrow", "covers"), [
    ("#", "sensors/+/temperature", True),
    ("sensors/#", "sensors/+/temperature", True),
    ("sensors/+/temperature", "sensors/freezer/temperature", True),
    ("sensors/+/temperature", "sensors/#", False),
    ("sensors/freezer/temperature", "sensors/+/temperature", False),
    ("+/+", "a/b/c", False),
    ("+/#", "a", True),
    ("#", "$SYS/#", False),
    ("+/x", "$SYS/x", False),
])
def test_filter_covers(wide: str, narrow: str, covers: bool) -> None:
    assert filter_covers(wide, narrow) is covers


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("#", "smsgw/send", True),
    ("+/send", "smsgw/send", True),
    ("+/+/+", "smsgw/send/+", True),
    ("smsgw/#", "smsgw/send/+", True),
    ("sensors/#", "smsgw/send", False),
    ("+/+", "smsgw/send/+", False),
    ("smsgw/send/x/#", "smsgw/send/+", True),
    ("+/bridge/#", "smsgw/send", False),
    ("#", "$SYS/x", False),
    ("a/b", "a/b", True),
])
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


def test_cover_filters_keeps_only_the_widest() -> None:
    assert cover_filters(["sensors/+/t", "sensors/#", "doors/+", "sensors/#", "$SYS/x"]) == [
        "sensors/#", "doors/+", "$SYS/x"]
    assert cover_filters(["a/+", "#"]) == ["#"]
