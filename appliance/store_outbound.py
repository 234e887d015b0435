"""The outbound queue: enqueue, claim, parts and their TP-MRs, retries, state changes, the
sending counts rate limits read, and delivery reports (the life of a message in appliance/store.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as encode_json_ascii

from appliance.deferred_log import get_logger
from appliance.store_optout import OptOutList
from appliance.store_types import (
    AVOID_NAMESPACE,
    DELIVERED,
    EXPIRED,
    FAILED,
    MULTIPART_WAIT,
    NOT_AVOIDED_SQL,
    NOT_PINNED_ELSEWHERE_SQL,
    PART_DELIVERED,
    PART_FAILED,
    PART_PENDING,
    PART_SENT,
    PINNED_ELSEWHERE_SQL,
    PRIORITIES,
    QUEUED,
    REPORT_WINDOW,
    SENDING,
    SENT,
    ClaimedMessage,
    EnqueueResult,
    InvalidRequest,
    OutboundRequest,
    Part,
    ReportMatch,
    iso,
    message_dict,
    same_number,
)
from drivers.gsm7_languages import KNOWN_LANGUAGES, LANGUAGE_IDS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

    from drivers.pdu import SmsStatusReport, SubmitPart

LOG = get_logger("appliance.store")


def _count_parts(text: str, language: str | None) -> int:
    """``drivers.text_parts.count_parts``, imported on first use: `smsgw status` reads the store
    without counting parts."""
    from drivers.text_parts import count_parts

    return count_parts(text, language=language)


class OutboundQueue(OptOutList):
    def _message_event(self, conn: sqlite3.Connection, message_id: int, now: float) -> None:
        topic = f"message/{message_id}"
        if not self._wants_event(topic):
            return
        row = conn.execute(
            "SELECT m.id, m.recipient, m.text, m.state, m.modem, m.last_error, m.language, "
            "(SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            "FROM message m WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        payload: dict[str, Any] = {
            "id": row["id"],
            "to": row["recipient"],
            "state": row["state"],
            "parts": row["parts"] or _count_parts(row["text"], row["language"]),
            "modem": row["modem"],
        }
        if row["last_error"] and row["state"] in (QUEUED, FAILED, EXPIRED):
            payload["error"] = row["last_error"]
        payload["at"] = iso(now)
        self._add_event(conn, topic, payload, now)

    def _set_state(self, conn: sqlite3.Connection, message_id: int, state: str, now: float,
                   **columns: Any) -> None:
        columns["state"] = state
        columns["updated_at"] = now
        if state != QUEUED:  # a queued row is ready (0) or held (1): the caller says which
            columns["held"] = 2 if state == SENDING else None  # see _v14
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE message SET {assignments} WHERE id = ?", (*columns.values(), message_id))
        self._message_event(conn, message_id, now)

    # --- outbound ---------------------------------------------------------------------------

    @staticmethod
    def _validate(index: int, request: OutboundRequest) -> None:
        where = f"request {index}" + (f" (id {request.client_key!r})" if request.client_key else "")
        if not isinstance(request.to, str) or not request.to.strip():
            raise InvalidRequest(f"{where}: recipient is empty")
        if not isinstance(request.text, str) or request.text == "":
            raise InvalidRequest(f"{where}: text is empty")
        if request.priority not in PRIORITIES:
            raise InvalidRequest(
                f"{where}: priority {request.priority!r} is not one of {', '.join(PRIORITIES)}"
            )
        if request.valid_until is not None and not isinstance(request.valid_until, int | float):
            raise InvalidRequest(f"{where}: valid_until must be a number of seconds since the epoch")
        if request.language is not None and (not isinstance(request.language, str)
                                             or request.language not in LANGUAGE_IDS):
            raise InvalidRequest(f"{where}: language {request.language!r} is not one of "
                                 f"{KNOWN_LANGUAGES}")
        if request.message_class is not None and (isinstance(request.message_class, bool)
                                                  or request.message_class not in (0, 1, 2, 3)):
            raise InvalidRequest(f"{where}: message class {request.message_class!r} is not 0, 1, 2 or 3")
        if request.send_at is not None and (isinstance(request.send_at, bool)
                                            or not isinstance(request.send_at, int | float)):
            raise InvalidRequest(f"{where}: send_at must be a number of seconds since the epoch")

    def enqueue(self, requests: Sequence[OutboundRequest], now: float | None = None) -> list[EnqueueResult]:
        """Queue every request in one transaction (one fsync for the batch).

        A request whose (client_key, recipient) is already known returns the existing message with
        ``duplicate=True``. Every request is validated before anything is written: one bad request
        refuses the whole batch with ``InvalidRequest``.
        """
        self._check_requests(requests)
        self.check_optout(requests)
        now = self._now(now)
        if not requests:
            return []
        with self._tx() as conn:
            return self._queue_in(conn, requests, now)

    def _check_requests(self, requests: Sequence[OutboundRequest]) -> None:
        """InvalidRequest for the first request the store refuses (see ``enqueue``)."""
        for index, request in enumerate(requests):
            self._validate(index, request)

    def _queue_in(self, conn: sqlite3.Connection, requests: Sequence[OutboundRequest],
                  now: float) -> list[EnqueueResult]:
        """Queue checked requests inside the caller's transaction (``enqueue``, an alert's step)."""
        results: list[EnqueueResult] = []
        at = iso(now)
        for request in requests:
            # a repeated (client_key, recipient) hits the unique index message_idempotency and
            # inserts nothing; NULL keys never conflict
            cur = conn.execute(
                "INSERT INTO message (client_key, source, recipient, text, priority, created_at, "
                "valid_until, report, state, attempts, next_attempt_at, updated_at, language, "
                "message_class, send_at, held) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (client_key, recipient) DO NOTHING",
                (
                    request.client_key, request.source or "", request.to, request.text,
                    PRIORITIES[request.priority], now, request.valid_until, int(request.report),
                    # a held message is due at send_at: claim and next_due_at read next_attempt_at
                    QUEUED, max(now, request.send_at) if request.send_at is not None else now, now,
                    request.language, request.message_class, request.send_at,
                    int(request.send_at is not None and request.send_at > now),  # held until send_at
                ),
            )
            if cur.rowcount == 0 and request.client_key is not None:
                existing = self._queued_with_key(conn, request.client_key, request.to)
                assert existing is not None  # the row the insert conflicted with
                results.append(existing)
                continue
            message_id = int(cur.lastrowid or 0)
            if request.avoid_modems:
                conn.executemany(
                    "INSERT OR IGNORE INTO state (namespace, key, value) VALUES (?, ?, ?)",
                    [(AVOID_NAMESPACE, f"{message_id}/{modem}", json.dumps({"message": message_id, "modem": modem}))
                     for modem in dict.fromkeys(request.avoid_modems)])
            # the queued event from what was just written (as _message_event would read it back)
            parts = _count_parts(request.text, request.language)
            event = {"id": message_id, "to": request.to, "state": QUEUED, "parts": parts, "modem": None, "at": at}
            # its JSON text as dump_json writes it, for an ASCII recipient (a normalised number) without the encoder
            body = (f'{{"id":{message_id},"to":{encode_json_ascii(request.to)},"state":"{QUEUED}","parts":{parts},'
                    f'"modem":null,"at":"{at}"}}' if request.to.isascii() else None)
            self._add_event(conn, f"message/{message_id}", event, now, body=body)
            self._tx_enqueued += 1
            results.append(EnqueueResult(message_id, QUEUED, False))
        return results

    @staticmethod
    def _queued_with_key(conn: sqlite3.Connection, client_key: str, recipient: str) -> EnqueueResult | None:
        row = conn.execute("SELECT id, state FROM message WHERE client_key = ? AND recipient = ?",
                           (client_key, recipient)).fetchone()
        return None if row is None else EnqueueResult(row["id"], row["state"], True)

    def queued_with_key(self, client_key: str, recipient: str) -> EnqueueResult | None:
        """The message already queued for ``recipient`` with idempotency key ``client_key`` (as
        ``enqueue`` would answer it: ``duplicate=True``), or None."""
        return self._queued_with_key(self._conn, client_key, recipient)

    def expire_due(self, now: float | None = None) -> list[int]:
        """Move queued messages whose validity has passed to ``expired``; their ids."""
        now = self._now(now)
        rows = self._conn.execute(
            # index message_expiring: queued or sending, of which only the queued ones expire here
            "SELECT id FROM message WHERE held IS NOT NULL AND valid_until <= ? AND held != 2",
            (now,),
        ).fetchall()
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        with self._tx() as conn:
            for message_id in ids:
                self._set_state(conn, message_id, EXPIRED, now, last_error="validity period passed",
                                lease_until=None)
        return ids

    def resume_interrupted(self, now: float | None = None) -> list[int]:
        """At start: requeue every message left ``sending`` by a previous process; their ids.

        Call this only from the one dispatcher that owns the file (the daemon), before it claims.
        Parts that already have a TP-MR stay sent.
        """
        now = self._now(now)
        ids = [row["id"] for row in self._conn.execute(
            "SELECT id FROM message WHERE held = 2").fetchall()]  # index message_leased
        if ids:
            with self._tx() as conn:
                for message_id in ids:
                    self._set_state(conn, message_id, QUEUED, now, lease_until=None, next_attempt_at=now, held=0,
                                    last_error="sending was interrupted; resumed")
            LOG.info("resumed %d interrupted message(s): %s", len(ids), ids)
        return ids

    def claim(
        self,
        modem_id: str,
        *,
        lease: float,
        now: float | None = None,
        exclude_recipients: Sequence[str] = (),
        multipart_wait: float = MULTIPART_WAIT,
        encode: Callable[[ClaimedMessage], Sequence[SubmitPart]] | None = None,
    ) -> ClaimedMessage | None:
        """Take the next due message (high before normal before low, FIFO within a priority).

        Due means ``queued`` with ``next_attempt_at <= now``, or ``sending`` with its lease run out.
        A message with parts already sent through another modem is due for ``modem_id`` only
        ``multipart_wait`` seconds after its last sent part: all parts of a multipart SMS leave
        through one modem (a handset joins parts by sender), and the claimer must then send the
        whole message again (``restart_parts``). A message queued with ``modem_id`` in its
        ``avoid_modems`` is left to the other modems.
        The claim sets ``sending``, the modem, ``lease_until = now + lease`` and counts an attempt.
        With ``encode``, a message without parts gets the parts ``encode`` returns for it in the same
        transaction (as ``set_parts`` would), so a send commits twice: here, and its TP-MR
        (``part_sent``); when ``encode`` returns nothing the message is claimed without parts.

        The claim's commit is not fsync'ed (``_tx(fsync=False)``), so a send waits for one fsync, its
        TP-MR's, which syncs the claim with it. After a kill (SIGKILL, a crash) the claim is in the
        file; a power cut before the TP-MR's commit may take the claim back, and the message is then
        queued as it was and sent again, as a ``sending`` one would be (``resume_interrupted``): the
        one duplicate window is the same, from the PDU to the TP-MR's fsync (only the attempt the
        power cut interrupted goes uncounted).
        """
        now = self._now(now)
        exclude = list(exclude_recipients)
        placeholders = ", ".join("?" for _ in exclude)
        not_in = f"AND recipient NOT IN ({placeholders})" if exclude else ""
        with self._tx(fsync=False) as conn:
            # held rows that became due join the ready ones (index message_held, in due order: only
            # those); the literal 0 and 1 let SQLite use the partial indexes
            conn.execute("UPDATE message INDEXED BY message_held SET held = 0 WHERE held = 1 AND next_attempt_at <= ?",
                         (now,))
            # one query per state, each walking an index in claim order (message_queued where held = 0:
            # priority, id of the ready queued rows; message_leased: the sending ones) and stopping at the
            # first due row: an OR of both would scan and sort every due row. The held rows are in
            # neither walk.
            # Parts already sent through another modem: the rest waits for that modem, up to
            # multipart_wait after its last part (then the whole message goes again from here).
            candidates = [conn.execute(
                f"SELECT * FROM message {state} AND {due} {not_in} AND {NOT_PINNED_ELSEWHERE_SQL} "
                f"AND {NOT_AVOIDED_SQL} ORDER BY priority, id LIMIT 1",
                (now, *exclude, modem_id, now - multipart_wait, modem_id),
            ).fetchone() for state, due in (
                ("INDEXED BY message_queued WHERE held = 0",
                 "(next_attempt_at IS NULL OR next_attempt_at <= ?)"),
                ("INDEXED BY message_leased WHERE held = 2", "lease_until < ?"))]
            found = [c for c in candidates if c is not None]
            if not found:
                return None
            row = min(found, key=lambda c: (c["priority"], c["id"]))
            lease_until = now + lease
            self._set_state(conn, row["id"], SENDING, now, modem=modem_id, lease_until=lease_until,
                            attempts=row["attempts"] + 1)
            # positional, every field in order: the records' fast path (appliance.frozen)
            fields = (row["id"], row["recipient"], row["text"], row["priority"], bool(row["report"]),
                      row["valid_until"], row["attempts"] + 1, modem_id, lease_until)
            tail = (row["language"], row["message_class"])
            parts = self._parts(conn, row["id"])
            if not parts and encode is not None:
                submit = encode(ClaimedMessage(*fields, parts, *tail))
                if submit:
                    self._insert_parts(conn, row["id"], submit)
                    # as _parts would read them back: pending, no modem, TP-MR or times yet
                    parts = [Part(row["id"], part.sequence, part.total, part.pdu, part.tpdu_length, None, None,
                                  PART_PENDING, None, None, None) for part in submit]
        return ClaimedMessage(*fields, parts, *tail)

    def next_due_at(self, exclude_recipients: Sequence[str] = (), modem_id: str | None = None,
                    multipart_wait: float = MULTIPART_WAIT) -> float | None:
        """The earliest time a queued message becomes due (for ``modem_id``: a message with parts
        sent through another modem is due ``multipart_wait`` after its last part), or a lease runs
        out (None: nothing)."""
        exclude = list(exclude_recipients)
        not_in = f"AND recipient NOT IN ({', '.join('?' for _ in exclude)})" if exclude else ""
        # a ready row (index message_queued where held = 0) is due now: its next_attempt_at has passed
        # (NULL, from schema 1, means now); else the first held one (index message_held, in due order)
        queued = None
        for rows, order in (("INDEXED BY message_queued WHERE held = 0", "priority, id"),
                            ("INDEXED BY message_held WHERE held = 1", "next_attempt_at")):
            queued = self._conn.execute(
                f"SELECT COALESCE(next_attempt_at, 0) FROM message {rows} {not_in} "
                f"AND NOT {PINNED_ELSEWHERE_SQL} AND {NOT_AVOIDED_SQL} ORDER BY {order} LIMIT 1",
                (*exclude, modem_id or "", modem_id or ""),
            ).fetchone()
            if queued is not None:
                break
        # messages whose first parts left through another modem: due for this one after multipart_wait
        pinned = self._conn.execute(
            "SELECT MIN(MAX(COALESCE(next_attempt_at, 0), (SELECT MAX(p.sent_at) FROM part p "
            f"WHERE p.message_id = message.id AND p.message_reference IS NOT NULL) + ?)) "
            # only a message of several parts with unsent ones can be held: walk those (partial index
            # part_unsent), never the whole queue (CROSS JOIN keeps them the outer loop)
            "FROM (SELECT DISTINCT message_id FROM part INDEXED BY part_unsent "
            "WHERE message_reference IS NULL AND total > 1) AS unsent "
            "CROSS JOIN message ON message.id = unsent.message_id "
            f"WHERE state = ? {not_in} AND {PINNED_ELSEWHERE_SQL} AND {NOT_AVOIDED_SQL}",
            (multipart_wait, QUEUED, *exclude, modem_id or "", modem_id or ""),
        ).fetchone()
        lease = self._conn.execute(
            "SELECT MIN(lease_until) FROM message WHERE held = 2").fetchone()  # index message_leased
        times = [float(t) for t in (queued[0] if queued else None, pinned[0], lease[0]) if t is not None]
        return min(times) if times else None

    @staticmethod
    def _parts(conn: sqlite3.Connection, message_id: int) -> list[Part]:
        rows = conn.execute(
            "SELECT * FROM part WHERE message_id = ? ORDER BY sequence", (message_id,)
        ).fetchall()
        return [Part(**dict(row)) for row in rows]

    def parts(self, message_id: int) -> list[Part]:
        return self._parts(self._conn, message_id)

    def set_parts(self, message_id: int, parts: Sequence[SubmitPart]) -> list[Part]:
        """Store the encoded parts of a message (once, at its first claim); returns the stored parts.

        When parts already exist they are kept as they are (a retry reuses them).
        """
        with self._tx() as conn:
            existing = self._parts(conn, message_id)
            if existing:
                return existing
            self._insert_parts(conn, message_id, parts)
            return self._parts(conn, message_id)

    @staticmethod
    def _insert_parts(conn: sqlite3.Connection, message_id: int, parts: Sequence[SubmitPart]) -> None:
        conn.executemany(
            "INSERT INTO part (message_id, sequence, total, pdu, tpdu_length, state) VALUES (?, ?, ?, ?, ?, ?)",
            [(message_id, part.sequence, part.total, part.pdu, part.tpdu_length, PART_PENDING) for part in parts])

    def restart_parts(self, message_id: int, parts: Sequence[SubmitPart], modem_id: str, reason: str,
                      now: float | None = None) -> list[Part]:
        """Replace the parts of a message whose first parts left through a modem that stayed unusable:
        the whole message goes again, from part 1, with the new encoding (a new concatenation reference).
        An audit row ``multipart_restart`` records it."""
        now = self._now(now)
        with self._tx() as conn:
            old = self._parts(conn, message_id)
            conn.execute("DELETE FROM part WHERE message_id = ?", (message_id,))
            self._insert_parts(conn, message_id, parts)
            sent = [(p.sequence, p.modem, p.message_reference) for p in old if p.message_reference is not None]
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)", (now, "multipart_restart", json.dumps(
                {"message": message_id, "modem": modem_id, "reason": reason, "sent_before": sent})))
            return self._parts(conn, message_id)

    def renew_lease(self, message_id: int, lease: float, now: float | None = None) -> float:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE message SET lease_until = ? WHERE id = ? AND state = ?",
                         (now + lease, message_id, SENDING))
        return now + lease

    def part_sent(
        self, message_id: int, sequence: int, modem_id: str, message_reference: int, now: float | None = None,
        *, durable: bool = True,
    ) -> str:
        """Commit a part's TP-MR after its +CMGS (the dispatcher: before that modem's next PDU); the
        message's state afterwards.

        When it was the last unsent part the message becomes ``sent``. With ``durable=False`` the
        commit is not fsync'ed (the dispatcher hands it to ``WalSync``, which syncs it in a thread).
        """
        now = self._now(now)
        with self._tx(fsync=durable) as conn:
            conn.execute(
                "UPDATE part SET modem = ?, message_reference = ?, state = ?, sent_at = ? "
                "WHERE message_id = ? AND sequence = ?",
                (modem_id, message_reference, PART_SENT, now, message_id, sequence),
            )
            unsent = conn.execute(
                "SELECT COUNT(*) FROM part WHERE message_id = ? AND message_reference IS NULL", (message_id,)
            ).fetchone()[0]
            if unsent:
                conn.execute("UPDATE message SET modem = ?, updated_at = ? WHERE id = ?",
                             (modem_id, now, message_id))
                return SENDING
            self._set_state(conn, message_id, SENT, now, modem=modem_id, lease_until=None, last_error=None)
            return SENT

    def requeue(self, message_id: int, error: str, next_attempt_at: float, now: float | None = None) -> None:
        """A transient failure: back to ``queued``, due again at ``next_attempt_at``."""
        now = self._now(now)
        with self._tx() as conn:
            self._set_state(conn, message_id, QUEUED, now, last_error=error, next_attempt_at=next_attempt_at,
                            lease_until=None, held=int(next_attempt_at > now))

    def release(self, message_id: int, now: float | None = None, *, error: str | None = None) -> None:
        """Give a claimed message back without counting the attempt (dispatcher stopping, or the
        modem's SIM not ready: not the message's fault); ``error`` is kept as its last error."""
        now = self._now(now)
        extra = {} if error is None else {"last_error": error}
        with self._tx() as conn:
            conn.execute("UPDATE message SET attempts = MAX(attempts - 1, 0) WHERE id = ?", (message_id,))
            self._set_state(conn, message_id, QUEUED, now, next_attempt_at=now, lease_until=None, held=0, **extra)

    def fail(self, message_id: int, error: str, now: float | None = None) -> None:
        """A permanent failure: ``failed`` with the reason."""
        now = self._now(now)
        with self._tx() as conn:
            self._set_state(conn, message_id, FAILED, now, last_error=error, lease_until=None)

    def message(self, message_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM message WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        result = message_dict(row)
        result["parts_detail"] = [part.__dict__ for part in self.parts(message_id)]
        return result


    # --- sending statistics for rate limits -------------------------------------------------

    def modem_sent_count(self, modem_id: str, since: float) -> int:
        """Parts sent through ``modem_id`` since ``since`` (daily caps count parts: each is one SMS)."""
        return int(self._conn.execute(
            "SELECT COUNT(*) FROM part WHERE modem = ? AND message_reference IS NOT NULL AND sent_at >= ?",
            (modem_id, since)
        ).fetchone()[0])

    def modem_sent_times(self, modem_id: str, since: float) -> list[float]:
        rows = self._conn.execute(
            "SELECT sent_at FROM part WHERE modem = ? AND message_reference IS NOT NULL AND sent_at >= ? "
            "ORDER BY sent_at", (modem_id, since)
        ).fetchall()
        return [float(row[0]) for row in rows]

    def recipient_last_sent(self, since: float) -> dict[str, float]:
        """Recipient -> time of the last part sent to them, for parts sent since ``since``."""
        rows = self._conn.execute(
            "SELECT m.recipient, MAX(p.sent_at) FROM part p JOIN message m ON m.id = p.message_id "
            "WHERE p.sent_at >= ? GROUP BY m.recipient", (since,)
        ).fetchall()
        return {row[0]: float(row[1]) for row in rows}

    # --- delivery reports -------------------------------------------------------------------

    def delivery_report(
        self,
        modem_id: str,
        message_reference: int,
        recipient: str | None,
        status: int,
        now: float | None = None,
        window: float = REPORT_WINDOW,
    ) -> ReportMatch | None:
        """Apply a status report (TP-ST ``status``) to the part it belongs to; None when none matches.

        The part is the most recent one sent through ``modem_id`` with this TP-MR within ``window``
        seconds whose recipient is the report's. TP-ST 0-31: delivered; 32-63: the SC is still
        trying (no change); 64-127 (and reserved values above): failed. A message is delivered when
        all its parts are, failed as soon as one part failed.
        """
        now = self._now(now)
        rows = self._conn.execute(
            "SELECT p.message_id, p.sequence, p.state AS part_state, m.recipient, m.state "
            "FROM part p JOIN message m ON m.id = p.message_id "
            "WHERE p.modem = ? AND p.message_reference = ? AND p.sent_at >= ? "
            "ORDER BY p.sent_at DESC, p.message_id DESC",
            (modem_id, message_reference, now - window),
        ).fetchall()
        match = next((row for row in rows if recipient is None or same_number(row["recipient"], recipient)),
                     None)
        if match is None:
            LOG.info("status report from %s for TP-MR %d to %s matches no recent part",
                     modem_id, message_reference, recipient)
            return None
        message_id, sequence = match["message_id"], match["sequence"]
        if 32 <= status <= 63:
            return ReportMatch(message_id, sequence, match["part_state"], match["state"])
        part_state = PART_DELIVERED if status <= 31 else PART_FAILED
        with self._tx() as conn:
            conn.execute(
                "UPDATE part SET state = ?, status = ?, delivered_at = ? WHERE message_id = ? AND sequence = ?",
                (part_state, status, now if part_state == PART_DELIVERED else None, message_id, sequence),
            )
            state = match["state"]
            if state in (SENT, SENDING, DELIVERED):
                if part_state == PART_FAILED and state != FAILED:
                    self._set_state(conn, message_id, FAILED, now,
                                    last_error=f"delivery failed: part {sequence} status {status}")
                    state = FAILED
                elif part_state == PART_DELIVERED and state == SENT:
                    undelivered = conn.execute(
                        "SELECT COUNT(*) FROM part WHERE message_id = ? AND state != ?",
                        (message_id, PART_DELIVERED),
                    ).fetchone()[0]
                    if not undelivered:
                        self._set_state(conn, message_id, DELIVERED, now)
                        state = DELIVERED
        return ReportMatch(message_id, sequence, part_state, state)

    def apply_status_report(self, modem_id: str, report: SmsStatusReport, received_at: float | None = None,
                            window: float = REPORT_WINDOW) -> ReportMatch | None:
        """``delivery_report`` for a decoded SMS-STATUS-REPORT (its TP-MR, recipient and TP-ST)."""
        return self.delivery_report(modem_id, report.reference, report.number, report.status,
                                    received_at, window)
