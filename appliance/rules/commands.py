"""Command rules on a received SMS, the pure parts: matching a message to a rule, the PIN check and
the PIN guard (wrong PINs lock a sender out), PINs withheld from what is shown, the STATUS text."""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from appliance.config import ConfigError
from appliance.rules.config import CommandRule
from appliance.store import same_number

if TYPE_CHECKING:
    from appliance.config import Config

STATE_PIN = "pin_failures"


class StateStore(Protocol):
    def state_get(self, namespace: str, key: str, default: Any = None) -> Any: ...
    def state_set(self, namespace: str, key: str, value: Any) -> None: ...


class PinGuard:
    """Counts wrong PINs per sender (in the store, so a restart does not reset them)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    @staticmethod
    def _key(sender: str) -> str:
        digits = "".join(ch for ch in sender if ch.isdigit())
        return digits[-9:] if len(digits) >= 9 else (digits or sender)

    def locked_for(self, sender: str, now: float) -> float:
        """Seconds the sender is still locked out (0: not locked)."""
        record = self.state.state_get(STATE_PIN, self._key(sender)) or {}
        until = float(record.get("locked_until") or 0.0)
        return max(0.0, until - now)

    def failure(self, sender: str, now: float, attempts: int, lockout: float) -> tuple[int, bool]:
        """Record a wrong or missing PIN; (failures so far, whether the sender is now locked out)."""
        key = self._key(sender)
        record = self.state.state_get(STATE_PIN, key) or {}
        first = float(record["first_at"]) if record.get("first_at") is not None else now
        count = int(record.get("count") or 0)
        locked_until = record.get("locked_until")
        lockout_over = locked_until is not None and now >= float(locked_until)
        if now - first > lockout or lockout_over:
            first, count = now, 0
        count += 1
        locked = count >= attempts
        self.state.state_set(STATE_PIN, key, {
            "count": count, "first_at": first, "locked_until": now + lockout if locked else None})
        return count, locked

    def success(self, sender: str) -> None:
        self.state.state_set(STATE_PIN, self._key(sender), None)


# --- command matching (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class CommandMatch:
    rule: CommandRule
    groups: dict[str, str]
    pin_given: str | None  # the first word when it was digits and the rule wants a PIN


def normalise_text(text: str) -> str:
    """Trim and collapse whitespace (SMS typed on phones carry stray spaces and newlines)."""
    return " ".join(text.split())


def match_command(rules: Sequence[CommandRule], text: str) -> CommandMatch | None:
    """The first rule whose pattern matches the whole message (after the PIN, for PIN rules)."""
    text = normalise_text(text)
    first, _, rest = text.partition(" ")
    for rule in rules:
        if rule.pin is not None and first.isdigit() and rest:
            match = rule.pattern.fullmatch(rest)
            if match:
                return CommandMatch(rule, _groups(match), first)
        match = rule.pattern.fullmatch(text)
        if match:
            return CommandMatch(rule, _groups(match), None)
    return None


#: What a PIN given in a command SMS is shown as (``smsgw inbox``, ``B/received``, the HA event).
PIN_WITHHELD = "****"


def withhold_pin(commands: Sequence[CommandRule], text: str) -> str:
    """``text`` as it may be shown or published: when a rule wants a PIN, a message that starts with
    4 to 8 digits and goes on (``4321 PUMP 7 ON``, also a mistyped ``4321 PUMP 7 ONN``) has that
    first word, a PIN right or wrong, replaced by ``****`` (``**** PUMP 7 ON``); others unchanged."""
    if not any(rule.pin is not None for rule in commands):
        return text
    first, _, rest = normalise_text(text).partition(" ")
    if not (rest and first.isdigit() and 4 <= len(first) <= 8):
        return text
    return f"{PIN_WITHHELD} {rest}"


def text_filter(config: Config) -> Callable[[str], str]:
    """``Store.shown_text`` for ``config``: withholds PINs (``withhold_pin``); the identity when the
    rules do not validate (the rules engine reports that)."""
    try:
        commands = config.rules.commands
    except ConfigError:
        commands = ()
    if not any(rule.pin is not None for rule in commands):
        return lambda text: text
    return functools.partial(withhold_pin, commands)


def _groups(match: re.Match[str]) -> dict[str, str]:
    return {name: value for name, value in match.groupdict().items() if value is not None}


def pin_ok(rule: CommandRule, given: str | None) -> bool:
    if rule.pin is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), rule.pin.encode())


def sender_allowed(rule: CommandRule, sender: str) -> bool:
    if rule.senders is None:
        return True
    return any(same_number(sender, allowed) for allowed in rule.senders)


def format_status(status: Mapping[str, Any], stats: Mapping[str, Any] | None = None) -> str:
    """A short STATUS reply from the daemon's status dict and the store's stats."""
    parts: list[str] = []
    state = status.get("state") or status.get("bridge") or "running"
    parts.append(f"smsgw {state}")
    outbox = (stats or {}).get("outbox") or status.get("outbox") or {}
    if isinstance(outbox, dict) and outbox:
        parts.append(f"queue {outbox.get('queued', 0)}, sending {outbox.get('sending', 0)}, "
                     f"failed {outbox.get('failed', 0)}")
    modems = status.get("modems") or {}
    items = modems.items() if isinstance(modems, dict) else (
        (m.get("id", f"modem{i}") if isinstance(m, dict) else str(m), m) for i, m in enumerate(modems))
    for modem_id, modem in items:
        if not isinstance(modem, dict):
            parts.append(f"{modem_id} {modem}")
            continue
        bits = []
        for key, inner in (("state", ()), ("registration", ("state",)), ("operator", ("name", "numeric"))):
            value = modem.get(key)
            if isinstance(value, dict):
                value = next((value[k] for k in inner if value.get(k) is not None), None)
            if value not in (None, ""):
                bits.append(str(value))
        signal = modem.get("signal")
        if isinstance(signal, dict):
            signal = signal.get("dbm")
        if isinstance(signal, int | float) and not isinstance(signal, bool):
            bits.append(f"{signal:g} dBm")
        parts.append(f"{modem_id} " + (" ".join(bits) if bits else "?"))
    return "; ".join(parts)


