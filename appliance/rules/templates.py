"""Text templates of alert and command rules.

Templates are not ``str.format``: only ``{name}``, ``{name.field}``, ``{name[index]}``, an optional
``|upper`` / ``|lower`` / ``|title`` filter and a format spec (``{temperature:.1f}``) are understood, so
a payload can never reach Python attributes. A value that is missing renders as ``?``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.payload import PayloadError, load_json
from appliance.topics import bad_topic_value
from drivers.pdu import count_parts

#: What a template renders for a value that is not there.
MISSING = "?"


class TemplateError(ValueError):
    """A template that does not parse; the message names the position."""


_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_PLACEHOLDER = re.compile(
    rf"(?P<root>{_NAME})(?P<path>(?:\.{_NAME}|\.\d+|\[-?\d+\])*)"
    r"(?:\|(?P<filter>upper|lower|title))?(?::(?P<spec>[^{}]*))?"
)
_ACCESSOR = re.compile(rf"\.(?P<attr>{_NAME}|\d+)|\[(?P<index>-?\d+)\]")
_FILTERS: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower, "title": str.title}


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}`` of a template: root name, path of fields and indexes, filter, format spec."""

    root: str
    path: tuple[str | int, ...]
    filter: str | None
    spec: str | None
    source: str


class Topic:
    """A topic in a template context: ``{topic}`` is the whole topic, ``{topic[1]}`` a level."""

    __slots__ = ("levels", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.levels = text.split("/")

    def __str__(self) -> str:
        return self.text


class Payload:
    """A message payload in a template context: ``{payload}`` is the text, ``{payload.x}`` a JSON field."""

    __slots__ = ("data", "text")

    def __init__(self, raw: bytes | str) -> None:
        self.text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            self.data: Any = load_json(self.text)
        except PayloadError:
            self.data = None

    def fields(self) -> dict[str, Any]:
        return dict(self.data) if isinstance(self.data, dict) else {}

    def __str__(self) -> str:
        return self.text


def _placeholder(inner: str, position: int) -> Placeholder:
    """The placeholder written ``{inner}`` at ``position`` of a template."""
    match = _PLACEHOLDER.fullmatch(inner)
    if match is None:
        raise TemplateError(
            f"{{{inner}}} at position {position} is not a placeholder (use {{name}}, {{name.field}}, "
            "{name[0]}, {name|upper}, {name:.1f})"
        )
    path: list[str | int] = []
    for acc in _ACCESSOR.finditer(match["path"] or ""):
        if acc["index"] is not None:
            path.append(int(acc["index"]))
        else:
            attr = acc["attr"]
            path.append(int(attr) if attr.isdigit() else attr)
    return Placeholder(match["root"], tuple(path), match["filter"], match["spec"], inner)


class Template:
    """A parsed text template (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pieces: list[str | Placeholder] = []
        i, literal = 0, []
        while i < len(text):
            ch = text[i]
            if ch == "{" and text.startswith("{{", i):
                literal.append("{")
                i += 2
            elif ch == "}" and text.startswith("}}", i):
                literal.append("}")
                i += 2
            elif ch == "}":
                raise TemplateError(f"single '}}' at position {i} (write '}}}}' for a literal brace)")
            elif ch == "{":
                end = text.find("}", i)
                if end < 0:
                    raise TemplateError(f"'{{' at position {i} is never closed")
                if literal:
                    self.pieces.append("".join(literal))
                    literal = []
                self.pieces.append(_placeholder(text[i + 1:end], i))
                i = end + 1
            else:
                literal.append(ch)
                i += 1
        if literal:
            self.pieces.append("".join(literal))

    @property
    def names(self) -> set[str]:
        """The root names the template uses."""
        return {piece.root for piece in self.pieces if isinstance(piece, Placeholder)}

    def render(self, context: Mapping[str, Any]) -> str:
        return self.render_checked(context)[0]

    def check_topic_values(self, context: Mapping[str, Any]) -> str | None:
        """For a topic template: what is wrong with the first placeholder whose value may not fill a
        topic level (see :func:`bad_topic_value`), e.g. ``"{device} contains '/'"``; None if all may."""
        for piece in self.pieces:
            if isinstance(piece, Placeholder):
                found, value = _resolve(context, piece)
                if not found:
                    continue
                text = _format(value, piece.spec)
                if piece.filter:
                    text = _FILTERS[piece.filter](text)
                problem = bad_topic_value(text)
                if problem is not None:
                    return f"{{{piece.source}}} {problem}"
        return None

    def render_checked(self, context: Mapping[str, Any]) -> tuple[str, list[str]]:
        """The text and the placeholders that had no value (rendered as ``?``)."""
        out: list[str] = []
        missing: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            found, value = _resolve(context, piece)
            if not found:
                missing.append(piece.source)
                out.append(MISSING)
                continue
            text = _format(value, piece.spec)
            if piece.filter:
                text = _FILTERS[piece.filter](text)
            out.append(text)
        return "".join(out), missing

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _resolve(context: Mapping[str, Any], piece: Placeholder) -> tuple[bool, Any]:
    if piece.root not in context:
        return False, None
    value = context[piece.root]
    for step in piece.path:
        if isinstance(value, Topic):
            value = value.levels
        elif isinstance(value, Payload):
            value = value.data
        if isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return False, None
    if value is None and piece.path:
        return True, None
    return True, value


def _format(value: Any, spec: str | None) -> str:
    if isinstance(value, Topic | Payload):
        value = str(value)
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            pass
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def alert_context(topic: str, payload: bytes | str, rule: str = "") -> dict[str, Any]:
    """The names an alert text can use: payload fields, ``topic``, ``payload``, ``rule``."""
    body = Payload(payload)
    context: dict[str, Any] = body.fields()
    context.update(topic=Topic(topic), payload=body, rule=rule)
    return context

#: The names a ``[[schedules]]`` text can use (:func:`schedule_context`).
SCHEDULE_NAMES = frozenset({
    "rule", "date", "time", "queued", "sending", "failed", "sent_24h", "failed_24h", "received_24h",
    "inbox_unhandled",
})


def schedule_context(rule: str, moment: datetime, stats: Mapping[str, Any], activity: Mapping[str, int]
                     ) -> dict[str, Any]:
    """The names a schedule text can use: ``rule``, ``date`` and ``time`` of the occurrence (local),
    the queue depths now (``queued``, ``sending``, ``failed``: ``Store.stats()``), ``inbox_unhandled``,
    and the last 24 hours (``sent_24h``, ``failed_24h``, ``received_24h``: ``Store.activity_since``)."""
    outbox = stats.get("outbox", {})
    return {
        "rule": rule, "date": moment.strftime("%Y-%m-%d"), "time": moment.strftime("%H:%M"),
        "queued": int(outbox.get("queued", 0)), "sending": int(outbox.get("sending", 0)),
        "failed": int(outbox.get("failed", 0)), "inbox_unhandled": int(stats.get("inbox_unhandled", 0)),
        "sent_24h": int(activity.get("sent", 0)), "failed_24h": int(activity.get("failed", 0)),
        "received_24h": int(activity.get("received", 0)),
    }


def split_template_levels(template: Template) -> list[list[str | Placeholder]]:
    """The pieces of ``template`` per topic level (split at the ``/`` of its literal text)."""
    levels: list[list[str | Placeholder]] = [[]]
    for piece in template.pieces:
        if isinstance(piece, str):
            parts = piece.split("/")
            levels[-1].append(parts[0])
            for part in parts[1:]:
                levels.append([part])
        else:
            levels[-1].append(piece)
    return [[p for p in level if p != ""] for level in levels]


def fit_text(text: str, max_parts: int, suffix: str = "") -> str:
    """Cut ``text`` (with an ellipsis) so that it and ``suffix``, which is never cut, fit in
    ``max_parts`` SMS parts."""
    if count_parts(text + suffix) <= max_parts:
        return text + suffix
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_parts(text[:mid] + "…" + suffix) <= max_parts:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "…" + suffix
