"""The self-alert conditions: from :class:`~appliance.self_alerts.facts.Facts` to :class:`Finding`\\ s.

Each condition that holds gives one finding, keyed by the condition and, for a modem's trouble, the
modem (``modem_down:sim0``). A finding carries the time its condition began when the facts say it
(the oldest queued message was accepted at; nothing was sent since), else the monitor counts from
when it first saw it; the alert is due once the condition has held for ``threshold`` seconds (0:
at once). ``watched`` lists every key a check looked at, so a key that is watched and not found is
a recovery; a key that is not watched is kept while it may be watched again (a modem away, whose
SIM storage is not read), and forgotten when its modem is no longer configured or its condition is
turned off.

Each finding names the modems its alert must not go through (``avoid``): the modem that is down,
whose SIM storage is full or whose balance is low; for a stalled queue, the modems whose last send
failed, unless that would leave no modem at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.self_alerts.config import SelfAlertsConfig
from appliance.self_alerts.facts import Facts
from appliance.self_alerts.view import duration

#: The kinds of condition, in the order they are checked and listed.
KINDS = ("modem_down", "no_send", "queue_age", "broker_down", "disk_free", "sim_full", "balance_low")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    key: str
    kind: str
    subject: str | None  # the modem, for a modem's trouble
    threshold: float  # seconds the condition must hold before the alert
    detail: str  # what the alert says, after the gateway's name; "{held}": how long the condition held
    since: float | None = None  # when the condition began, if the facts say it
    not_before: float | None = None  # it began no earlier than this (the last part sent)
    avoid: tuple[str, ...] = ()


@dataclass
class Findings:
    found: dict[str, Finding] = field(default_factory=dict)
    watched: set[str] = field(default_factory=set)

    def watch(self, key: str) -> None:
        self.watched.add(key)

    def add(self, finding: Finding) -> None:
        self.watched.add(finding.key)
        self.found[finding.key] = finding


def key_of(kind: str, subject: str | None = None) -> str:
    return kind if subject is None else f"{kind}:{subject}"


def evaluate(config: SelfAlertsConfig, facts: Facts, now: float) -> Findings:
    """Every condition of ``config`` on ``facts`` (see the module docstring)."""
    findings = Findings()
    _modems(config, facts, findings)
    _queue(config, facts, findings)
    _broker(config, facts, findings)
    _disk(config, facts, findings)
    _sim_full(config, facts, findings)
    _balance(config, facts, findings)
    return findings


def _modems(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if config.modem_down is None:
        return
    for modem_id, modem in sorted(facts.modems.items()):
        key = key_of("modem_down", modem_id)
        findings.watch(key)
        if not modem.healthy:
            healthy = sum(1 for m in facts.modems.values() if m.healthy)
            why = f"{modem.state}" + (f": {modem.error}" if modem.error else "")
            findings.add(Finding(key, "modem_down", modem_id, config.modem_down,
                                 f"modem {modem_id} down for {{held}} ({why}); {healthy} of {len(facts.modems)} "
                                 "modem(s) healthy",
                                 avoid=(modem_id,)))


def _stalled_avoid(facts: Facts) -> tuple[str, ...]:
    failing = tuple(sorted(facts.send_errors))
    return failing if set(facts.modems) - set(failing) else ()


def _queue(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if config.no_send is not None:
        findings.watch("no_send")
        if facts.queued > 0:
            last = facts.last_sent_at
            error = next(iter(facts.send_errors.values()), None) if facts.send_errors else None
            findings.add(Finding(
                "no_send", "no_send", None, config.no_send,
                f"nothing sent for {{held}} with {facts.queued} message(s) waiting"
                + (f" (last error: {error})" if error else ""),
                not_before=last, avoid=_stalled_avoid(facts)))
    if config.queue_age is not None:
        findings.watch("queue_age")
        if facts.oldest_queued_at is not None:
            findings.add(Finding(
                "queue_age", "queue_age", None, config.queue_age,
                f"the oldest queued message has waited {{held}} ({facts.queued} waiting)",
                since=facts.oldest_queued_at, avoid=_stalled_avoid(facts)))


def _broker(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if config.broker_down is None or facts.broker is None:
        return
    findings.watch("broker_down")
    if not facts.broker_connected:
        findings.add(Finding("broker_down", "broker_down", None, config.broker_down,
                             f"MQTT broker {facts.broker} not connected for {{held}}"
                             + (f" ({facts.broker_error})" if facts.broker_error else "")))


def _disk(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if config.disk_free_mb is None or facts.disk_free is None:
        return
    findings.watch("disk_free")
    if facts.disk_free < config.disk_free_mb * MIB:
        findings.add(Finding("disk_free", "disk_free", None, 0.0,
                             f"{facts.disk_free / MIB:.0f} MiB free on the disk of the store {facts.disk_path} "
                             f"(alert below {config.disk_free_mb} MiB)"))


def _sim_full(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if not config.sim_full:
        return
    for modem_id, modem in sorted(facts.modems.items()):
        if not modem.healthy:
            continue  # its storage is read again once it is back: neither full nor cleared until then
        key = key_of("sim_full", modem_id)
        findings.watch(key)
        reading = facts.storage_full.get(modem_id)
        if reading is not None:
            findings.add(Finding(key, "sim_full", modem_id, 0.0,
                                 f"SIM storage of modem {modem_id} full ({reading.get('used', '?')}/"
                                 f"{reading.get('total', '?')}); new SMS cannot arrive", avoid=(modem_id,)))


def _balance(config: SelfAlertsConfig, facts: Facts, findings: Findings) -> None:
    if not config.balance_low:
        return
    for modem_id in sorted(facts.modems):
        record = facts.balances.get(modem_id)
        if record is None or record.get("low") is None:
            continue
        key = key_of("balance_low", modem_id)
        findings.watch(key)
        if record.get("below_low"):
            unit = f" {record['unit']}" if record.get("unit") else ""
            findings.add(Finding(key, "balance_low", modem_id, 0.0,
                                 f"balance of modem {modem_id} is {record.get('balance')}{unit}, below "
                                 f"{record.get('low')}{unit}", avoid=(modem_id,)))


RECOVERED = {
    "modem_down": "modem {subject} back in service after {duration}",
    "no_send": "sending again after {duration}",
    "queue_age": "the queue caught up after {duration}",
    "broker_down": "MQTT broker connected again after {duration}",
    "disk_free": "disk space of the store back above the alert level after {duration}",
    "sim_full": "SIM storage of modem {subject} has room again after {duration}",
    "balance_low": "balance of modem {subject} back above its low mark after {duration}",
}


def recovered_text(kind: str, subject: str | None, seconds: float) -> str:
    return RECOVERED.get(kind, kind + " cleared after {duration}").format(subject=subject, duration=duration(seconds))

