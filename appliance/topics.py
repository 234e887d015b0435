"""MQTT topic filters: validity, matching (``+`` one level, ``#`` the rest), covering and overlap
of two filters, and what may fill a placeholder in a topic. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable


def topic_filter_error(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT subscription filter, or None."""
    if not isinstance(topic_filter, str) or topic_filter == "":
        return "must be a non-empty topic filter"
    if "\0" in topic_filter:
        return "must not contain a NUL character"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (``+`` one level, ``#`` the rest).

    As in MQTT, wildcards at the first level do not match topics starting with ``$``.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic matching ``narrow`` also matches ``wide``."""
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    for index, level in enumerate(wide_levels):
        if level == "#":
            return not (index == 0 and narrow_levels[0].startswith("$"))
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#":
            return False
        if level == "+":
            if index == 0 and other.startswith("$"):
                return False
            continue
        if level != other:
            return False
    return len(wide_levels) == len(narrow_levels)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both subscription filters."""
    a_levels, b_levels = a.split("/"), b.split("/")
    for index in range(max(len(a_levels), len(b_levels))):
        x = a_levels[index] if index < len(a_levels) else None
        y = b_levels[index] if index < len(b_levels) else None
        if x == "#" or y == "#":
            other = y if x == "#" else x
            return not (index == 0 and other is not None and other.startswith("$"))
        if x is None or y is None:
            return False
        if x == "+" or y == "+":
            if index == 0 and (x if y == "+" else y).startswith("$"):
                return False
            continue
        if x != y:
            return False
    return True


def cover_filters(filters: Iterable[str]) -> list[str]:
    """The filters not covered by another one: subscribing to these receives every message once
    per client (overlapping subscriptions make a broker deliver one copy per subscription)."""
    unique = list(dict.fromkeys(filters))
    return [f for f in unique if not any(g != f and filter_covers(g, f) for g in unique)]


def is_publish_topic(topic: str) -> bool:
    """Whether ``topic`` may be published to: not empty, no wildcard, no NUL."""
    return bool(topic) and not any(ch in topic for ch in "+#\0")


#: Characters a placeholder value that lands in an MQTT topic may not hold: a level separator or a
#: wildcard would let the sender of an SMS choose the topic (``SET ../../smsgw/send 1``).
TOPIC_VALUE_FORBIDDEN = "/+#\0"


def bad_topic_value(value: str) -> str | None:
    """Why ``value`` may not fill a placeholder in a topic (None if it may)."""
    if value in ("", ".", ".."):
        return "is empty" if value == "" else f"is {value!r}"
    for char in TOPIC_VALUE_FORBIDDEN:
        if char in value:
            return "contains NUL" if char == "\0" else f"contains {char!r}"
    return None
