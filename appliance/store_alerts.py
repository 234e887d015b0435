"""The store's escalating alerts (table ``alert``, schema 12; run by :mod:`appliance.escalation`).

Every change of an alert commits, in one transaction, the row, the SMS it causes, its audit row and
its events: ``alert/<id>`` (retained while the alert is active; when it closes, its last state
without retain and then an empty retained payload) and ``alert_rule/<rule>`` (retained: how many of
the rule's alerts are active, and the latest). A step is done at most once and never lost: its SMS
and the step count commit together, and a step runs only if the row still is at that step.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from appliance.frozen import frozen
from appliance.store_cli import QueueStore
from appliance.store_outbound import OutboundQueue
from appliance.store_types import EnqueueResult, OutboundRequest, RetentionStep, iso

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

    #: (kind, detail) of the audit row a change writes in its transaction (the alert's id is added).
    AuditEntry = tuple[str, dict[str, Any]]

#: States of an escalating alert: open (going up its on-call chain), acknowledged (by a chain
#: member), resolved (the sensor said it is fine), expired (the chain ran out without an
#: acknowledgement).
ALERT_OPEN, ALERT_ACKNOWLEDGED, ALERT_RESOLVED, ALERT_EXPIRED = "open", "acknowledged", "resolved", "expired"
ALERT_STATES = (ALERT_OPEN, ALERT_ACKNOWLEDGED, ALERT_RESOLVED, ALERT_EXPIRED)


@frozen
class Alert:
    """One row of the ``alert`` table (see ``ALERT_STATES``)."""

    id: int
    rule: str
    key: str  # the values of the rule's topic wildcards, JSON: which sensor
    topic: str
    text: str
    state: str
    step: int  # chain steps done
    steps: int  # chain steps in all (chain length x repeat)
    next_at: float | None  # the next step (or the expiry) is due; None once closed or acknowledged
    alerted: tuple[str, ...]  # numbers sent the alert, in order
    triggers: int
    acknowledged_by: str | None
    acknowledged_name: str | None
    resolved_by: str | None
    created_at: float
    updated_at: float
    closed_at: float | None  # None while active: further triggers of its key are counted into it

    @property
    def active(self) -> bool:
        return self.closed_at is None

    def as_dict(self) -> dict[str, Any]:
        """The published form (``B/alert/<id>``, ``smsgw status --json``); times in ISO 8601."""
        return {
            "id": self.id, "rule": self.rule, "state": self.state, "active": self.active,
            "topic": self.topic, "text": self.text, "step": self.step, "steps": self.steps,
            "alerted": list(self.alerted), "triggers": self.triggers,
            "acknowledged_by": self.acknowledged_by, "acknowledged_name": self.acknowledged_name,
            "resolved_by": self.resolved_by, "created_at": iso(self.created_at),
            "next_at": iso(self.next_at), "closed_at": iso(self.closed_at),
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Alert:
        return cls(
            id=row["id"], rule=row["rule"], key=row["key"], topic=row["topic"], text=row["text"],
            state=row["state"], step=row["step"], steps=row["steps"], next_at=row["next_at"],
            alerted=tuple(json.loads(row["alerted"] or "[]")), triggers=row["triggers"],
            acknowledged_by=row["acknowledged_by"], acknowledged_name=row["acknowledged_name"],
            resolved_by=row["resolved_by"], created_at=row["created_at"], updated_at=row["updated_at"],
            closed_at=row["closed_at"],
        )


def _audit_of(audit: AuditEntry | None, alert_id: int) -> AuditEntry | None:
    return None if audit is None else (audit[0], {"alert": alert_id, **audit[1]})


class AlertTables(OutboundQueue):
    """The ``alert_*`` methods of :class:`appliance.store.Store`; an alert's SMS are queued with
    ``OutboundQueue._queue_in`` in the transaction of its change."""

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _alert_row(conn: sqlite3.Connection, alert_id: int) -> Alert | None:
        row = conn.execute("SELECT * FROM alert WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else Alert.from_row(row)

    def alert(self, alert_id: int) -> Alert | None:
        return self._alert_row(self._conn, alert_id)

    def alerts(self, *, active: bool | None = None, rule: str | None = None, states: Sequence[str] = (),
               limit: int = 100) -> list[Alert]:
        """Alerts, newest first; ``active``: only those (not) closed; ``states``: only these."""
        where, args = [], []
        if active is not None:
            where.append("closed_at IS NULL" if active else "closed_at IS NOT NULL")
        if rule is not None:
            where.append("rule = ?")
            args.append(rule)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(states)
        sql = "SELECT * FROM alert" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC LIMIT ?"
        return [Alert.from_row(row) for row in self._conn.execute(sql, (*args, limit)).fetchall()]

    def alert_counts(self) -> dict[str, int]:
        """Alerts per state, and ``active``."""
        counts = dict.fromkeys(ALERT_STATES, 0)
        for row in self._conn.execute("SELECT state, COUNT(*) FROM alert GROUP BY state"):
            counts[row[0]] = row[1]
        counts["active"] = self._conn.execute("SELECT COUNT(*) FROM alert WHERE closed_at IS NULL").fetchone()[0]
        return counts

    def alerts_due(self, now: float | None = None, limit: int = 100) -> list[Alert]:
        """Open alerts whose next step (or expiry) is due, earliest first."""
        now = self._now(now)
        rows = self._conn.execute("SELECT * FROM alert WHERE next_at IS NOT NULL AND next_at <= ? "
                                  "ORDER BY next_at, id LIMIT ?", (now, limit)).fetchall()
        return [Alert.from_row(row) for row in rows]

    def alert_next_due(self) -> float | None:
        row = self._conn.execute("SELECT MIN(next_at) FROM alert WHERE next_at IS NOT NULL").fetchone()
        return None if row[0] is None else float(row[0])

    # --- events -----------------------------------------------------------------------------

    @staticmethod
    def _alert_rule_state(conn: sqlite3.Connection, rule: str) -> dict[str, Any]:
        active = conn.execute("SELECT COUNT(*) FROM alert WHERE rule = ? AND closed_at IS NULL",
                              (rule,)).fetchone()[0]
        latest = conn.execute("SELECT * FROM alert WHERE rule = ? ORDER BY id DESC LIMIT 1", (rule,)).fetchone()
        return {"rule": rule, "active": active, "latest": None if latest is None else Alert.from_row(latest).as_dict()}

    def _alert_events(self, conn: sqlite3.Connection, alert_id: int, now: float) -> Alert:
        alert = self._alert_row(conn, alert_id)
        assert alert is not None
        if alert.active:
            self._add_event(conn, f"alert/{alert.id}", alert.as_dict(), now, retain=True)
        else:
            self._add_event(conn, f"alert/{alert.id}", alert.as_dict(), now)
            self._add_event(conn, f"alert/{alert.id}", None, now, retain=True)
        self._add_event(conn, f"alert_rule/{alert.rule}", self._alert_rule_state(conn, alert.rule), now,
                        retain=True)
        return alert

    def alert_rule_publish(self, rule: str, now: float | None = None) -> None:
        """Queue the retained ``alert_rule/<rule>`` state (at start: it reflects the store)."""
        now = self._now(now)
        with self._tx() as conn:
            self._add_event(conn, f"alert_rule/{rule}", self._alert_rule_state(conn, rule), now, retain=True)

    # --- changes ----------------------------------------------------------------------------

    def alert_open(self, rule: str, key: str, topic: str, text: str, steps: int, now: float | None = None, *,
                   audit: AuditEntry | None = None) -> tuple[Alert, bool]:
        """Open an alert of ``rule`` for ``key``, its first step due now; (alert, True). If one is
        active for that key already, count the trigger into it instead: (that alert, False).

        Here and in the other ``alert_*`` changes, ``audit`` (kind, detail) is written in the same
        transaction, when the change happens; the alert's id is added to the detail."""
        now = self._now(now)
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM alert WHERE rule = ? AND key = ? AND closed_at IS NULL "
                               "ORDER BY id LIMIT 1", (rule, key)).fetchone()
            if row is not None:
                conn.execute("UPDATE alert SET triggers = triggers + 1, updated_at = ? WHERE id = ?",
                             (now, row["id"]))
                alert = self._alert_row(conn, row["id"])
                assert alert is not None
                return alert, False
            cur = conn.execute(
                "INSERT INTO alert (rule, key, topic, text, state, step, steps, next_at, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)", (rule, key, topic, text, ALERT_OPEN, steps, now, now, now))
            alert_id = int(cur.lastrowid or 0)
            self._audit_row(conn, _audit_of(audit, alert_id), now)
            return self._alert_events(conn, alert_id, now), True

    def alert_step(self, alert_id: int, step: int, requests: Sequence[OutboundRequest], next_at: float,
                   now: float | None = None, *, audit: AuditEntry | None = None) -> list[EnqueueResult] | None:
        """Chain step ``step`` of an open alert: queue ``requests`` (its recipients), count the step
        done and the recipients alerted, the next step due at ``next_at``; all in one transaction.
        None (nothing written) if the alert is no longer open at that step."""
        self._check_requests(requests)
        now = self._now(now)
        with self._tx() as conn:
            alert = self._alert_row(conn, alert_id)
            if alert is None or alert.state != ALERT_OPEN or alert.step != step:
                return None
            results = self._queue_in(conn, requests, now)
            alerted = list(alert.alerted) + [r.to for r in requests if r.to not in alert.alerted]
            conn.execute("UPDATE alert SET step = ?, next_at = ?, alerted = ?, updated_at = ? WHERE id = ?",
                         (step + 1, next_at, json.dumps(alerted), now, alert_id))
            self._audit_row(conn, _audit_of(audit, alert_id), now)
            self._alert_events(conn, alert_id, now)
            return results

    def alert_expire(self, alert_id: int, step: int, now: float | None = None, *,
                     audit: AuditEntry | None = None) -> Alert | None:
        """The chain of an open alert ran out (``step`` is its step count): expired and closed."""
        now = self._now(now)
        with self._tx() as conn:
            alert = self._alert_row(conn, alert_id)
            if alert is None or alert.state != ALERT_OPEN or alert.step != step:
                return None
            conn.execute("UPDATE alert SET state = ?, next_at = NULL, closed_at = ?, updated_at = ? WHERE id = ?",
                         (ALERT_EXPIRED, now, now, alert_id))
            self._audit_row(conn, _audit_of(audit, alert_id), now)
            return self._alert_events(conn, alert_id, now)

    def alert_acknowledge(self, alert_id: int, by: str, name: str, requests: Sequence[OutboundRequest], *,
                          close: bool, handled: int | None = None, now: float | None = None,
                          audit: AuditEntry | None = None) -> Alert | None:
        """A chain member acknowledged an open (or expired) alert: the chain stops; ``requests`` (the
        others told, the confirmation) are queued; with ``close`` (no resolve will come) the alert
        closes. ``handled``: the received message to mark handled in the same transaction. None
        (nothing written but ``handled``) if the alert is acknowledged or resolved already."""
        self._check_requests(requests)
        now = self._now(now)
        with self._tx() as conn:
            if handled is not None:
                conn.execute("UPDATE inbox SET handled_at = ? WHERE id = ? AND handled_at IS NULL", (now, handled))
            alert = self._alert_row(conn, alert_id)
            if alert is None or alert.state not in (ALERT_OPEN, ALERT_EXPIRED):
                return None
            self._queue_in(conn, requests, now)
            closed_at = alert.closed_at if alert.closed_at is not None else (now if close else None)
            conn.execute("UPDATE alert SET state = ?, next_at = NULL, acknowledged_by = ?, acknowledged_name = ?, "
                         "closed_at = ?, updated_at = ? WHERE id = ?",
                         (ALERT_ACKNOWLEDGED, by, name, closed_at, now, alert_id))
            self._audit_row(conn, _audit_of(audit, alert_id), now)
            return self._alert_events(conn, alert_id, now)

    def alert_resolve(self, alert_id: int, by: str, requests: Sequence[OutboundRequest],
                      now: float | None = None, *, audit: AuditEntry | None = None) -> Alert | None:
        """An active alert resolved (``by``: the topic that said so): closed, ``requests`` (everyone
        alerted is told) queued. None if it is closed already."""
        self._check_requests(requests)
        now = self._now(now)
        with self._tx() as conn:
            alert = self._alert_row(conn, alert_id)
            if alert is None or not alert.active:
                return None
            self._queue_in(conn, requests, now)
            conn.execute("UPDATE alert SET state = ?, next_at = NULL, resolved_by = ?, closed_at = ?, "
                         "updated_at = ? WHERE id = ?", (ALERT_RESOLVED, by, now, now, alert_id))
            self._audit_row(conn, _audit_of(audit, alert_id), now)
            return self._alert_events(conn, alert_id, now)

    # --- retention --------------------------------------------------------------------------

    def _retention_steps(self, cutoff: float, batch: int) -> list[RetentionStep]:
        """Closed alerts older than ``cutoff`` (by ``closed_at``); an active one is never deleted."""
        def step(conn: sqlite3.Connection) -> dict[str, int]:
            cur = conn.execute("DELETE FROM alert WHERE id IN (SELECT id FROM alert WHERE closed_at IS NOT NULL "
                               "AND closed_at < ? LIMIT ?)", (cutoff, batch))
            return {"alerts": cur.rowcount}

        return [*super()._retention_steps(cutoff, batch), ("alerts", step)]


class StatusStore(AlertTables, QueueStore):
    """``store_cli.QueueStore`` and the escalating alerts: what ``smsgw status`` reads
    (``appliance.store.Store`` extends it)."""
