"""Cooldown and coalescing of alerts: one SMS per rule and topic per window, the alerts inside the
window counted and summed up in one SMS when it ends. Time comes from the caller."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.rules.config import AlertRule

LOG = logging.getLogger(__name__)

STATE_COOLDOWN = "cooldown"


@dataclass
class _Window:
    sent_at: float
    suppressed: int = 0
    last_text: str = ""
    label: str = ""


@dataclass(frozen=True)
class Summary:
    key: tuple[str, str]
    count: int
    last_text: str
    label: str
    window: float


class Cooldown:
    """Per (rule, topic): one SMS per ``cooldown`` seconds; alerts inside the window are counted and
    reported by :meth:`due` when the window ends. Time comes from the caller, so tests inject it."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], _Window] = {}

    def offer(self, rule: str, topic: str, cooldown: float, now: float, text: str,
              label: str) -> tuple[bool, Summary | None]:
        """(True, carried): send now, a new window starts; ``carried`` is a window that ended with
        suppressed alerts nobody reported yet (no timer ran), to fold into this SMS.
        (False, None): counted into the running window."""
        key = (rule, topic)
        if cooldown <= 0:
            return True, None
        window = self.windows.get(key)
        if window is None or now - window.sent_at >= cooldown:
            carried = None
            if window is not None and window.suppressed:
                carried = Summary(key, window.suppressed, window.last_text, window.label, now - window.sent_at)
            self.windows[key] = _Window(sent_at=now)
            return True, carried
        window.suppressed += 1
        window.last_text = text
        window.label = label
        return False, None

    def next_due(self, cooldowns: Mapping[str, float]) -> float | None:
        """When the earliest window with suppressed alerts ends."""
        times = [w.sent_at + cooldowns.get(rule, 0.0) for (rule, _), w in self.windows.items() if w.suppressed]
        return min(times) if times else None

    def due(self, now: float, cooldowns: Mapping[str, float]) -> list[Summary]:
        """Summaries of windows that ended with suppressed alerts; each starts a new window at ``now``
        (the summary is an SMS too). Windows that ended quietly are dropped."""
        summaries: list[Summary] = []
        for key, window in list(self.windows.items()):
            cooldown = cooldowns.get(key[0], 0.0)
            if now - window.sent_at < cooldown:
                continue
            if window.suppressed:
                summaries.append(Summary(key, window.suppressed, window.last_text, window.label,
                                         now - window.sent_at))
                self.windows[key] = _Window(sent_at=now)
            else:
                del self.windows[key]
        return summaries

    def export(self, rule: str) -> dict[str, Any]:
        return {topic: {"sent_at": w.sent_at, "suppressed": w.suppressed, "last_text": w.last_text,
                        "label": w.label}
                for (name, topic), w in self.windows.items() if name == rule}

    def load(self, rule: str, data: Mapping[str, Any]) -> None:
        for topic, value in data.items():
            try:
                self.windows[(rule, topic)] = _Window(float(value["sent_at"]), int(value["suppressed"]),
                                                      str(value["last_text"]), str(value["label"]))
            except (KeyError, TypeError, ValueError):
                LOG.warning("ignoring unreadable cooldown state for %s %s", rule, topic)


def render_summary(rule: AlertRule, summary: Summary) -> str:
    """The coalesced SMS: the last alert's text and how many others it stands for."""
    if summary.count <= 1:
        return summary.last_text
    minutes = max(1, round(summary.window / 60))
    return rule.summary.render({
        "last": summary.last_text, "count": summary.count, "more": summary.count - 1,
        "label": summary.label, "minutes": minutes, "rule": rule.name, "topic": summary.key[1],
    })
