"""Received SMS: each PDU committed before the SIM slot is deleted, duplicates from a re-read
slot ignored, multipart messages reassembled (or flushed partial), the inbox the rules engine
handles."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from appliance.deferred_log import get_logger
from appliance.store_base import StoreBase
from appliance.store_types import REASSEMBLY_TIMEOUT, UNDECODABLE, ReceivedMessage, iso

if TYPE_CHECKING:
    from drivers.pdu import SmsDeliver

LOG = get_logger("appliance.store")

class InboundTables(StoreBase):
    # --- inbound ----------------------------------------------------------------------------

    def add_incoming_part(
        self,
        modem_id: str,
        pdu: str,
        deliver: SmsDeliver | None,
        error: str | None,
        received_at: float,
        slot: int | None = None,
    ) -> int:
        """Commit one received PDU; returns its row id (the existing one for a duplicate).

        Only after this returns may the caller delete the SIM slot. ``slot`` is the SIM storage index
        the PDU was read from (None for ``+CMT``, delivered without a slot). A duplicate is the same
        part read again from the same slot of the same modem (the sweep after a crash between this
        commit and ``AT+CMGD``): same modem, slot and PDU, or same modem, slot, sender, SMSC
        timestamp, concatenation reference/total/sequence and text. Identical SMS received by two
        modems, or stored in two slots of one SIM, are distinct parts. When the part completes its
        message, the message is written to the inbox and a ``received`` event is added in the same
        transaction. A PDU that did not decode is kept and published with its error, never dropped.
        """
        import hashlib  # here: `smsgw status` and `send` read the store without it (OpenSSL)

        pdu_key = pdu.strip().upper()
        sender = text = encoding = sent_at = None
        ref = total = seq = None
        legacy_key = None
        if deliver is not None:
            sender = deliver.number
            text = deliver.text
            encoding = deliver.encoding
            sent_at = deliver.timestamp.isoformat() if deliver.timestamp is not None else None
            if deliver.concat is not None and deliver.concat.total > 1:
                ref, total, seq = deliver.concat.reference, deliver.concat.total, deliver.concat.sequence
            content: list[Any] = [sender, sent_at, ref, total, seq, text]
            # the key of schema 1-2 (no modem, no slot): matches parts stored before the upgrade
            legacy_key = hashlib.sha1(json.dumps(content).encode()).hexdigest()
        else:
            content = [pdu_key]
        dedup_key = hashlib.sha1(json.dumps(["v3", modem_id, slot, *content]).encode()).hexdigest()
        with self._tx() as conn:
            existing = conn.execute(
                "SELECT id FROM inbox_part WHERE dedup_key = ? UNION ALL "
                "SELECT id FROM inbox_part WHERE modem = ? AND pdu = ? AND slot IS NULL "
                "AND dedup_key IS NULL LIMIT 1",
                (dedup_key, modem_id, pdu_key),
            ).fetchone()
            if existing is None and legacy_key is not None:
                existing = conn.execute(
                    "SELECT id FROM inbox_part WHERE dedup_key = ? AND modem = ? AND slot IS NULL",
                    (legacy_key, modem_id),
                ).fetchone()
            if existing is not None:
                LOG.info("duplicate incoming part on %s slot %s ignored (part %d)", modem_id, slot,
                         existing["id"])
                return int(existing["id"])
            cur = conn.execute(
                "INSERT INTO inbox_part (modem, pdu, sender, text, encoding, sent_at, concat_reference, "
                "concat_total, concat_sequence, received_at, error, dedup_key, slot) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (modem_id, pdu_key if deliver is not None else pdu.strip(), sender, text, encoding, sent_at,
                 ref, total, seq, received_at, error if deliver is None else None, dedup_key, slot),
            )
            part_id = int(cur.lastrowid or 0)
            if deliver is None:
                self._assemble(conn, [part_id], partial=False, missing=[], now=received_at,
                               error=error or "undecodable PDU")
            elif total is None:
                self._assemble(conn, [part_id], partial=False, missing=[], now=received_at)
            else:
                group = conn.execute(
                    "SELECT id, concat_sequence FROM inbox_part WHERE inbox_id IS NULL AND sender = ? "
                    "AND concat_reference = ? AND concat_total = ? AND modem = ? ORDER BY concat_sequence, id",
                    (sender, ref, total, modem_id),
                ).fetchall()
                sequences = {row["concat_sequence"] for row in group}
                if all(n in sequences for n in range(1, total + 1)):
                    first: dict[int, int] = {}
                    for row in group:
                        first.setdefault(row["concat_sequence"], row["id"])
                    self._assemble(conn, [first[n] for n in range(1, total + 1)], partial=False,
                                   missing=[], now=received_at)
            return part_id

    def _assemble(self, conn: sqlite3.Connection, part_ids: list[int], *, partial: bool, missing: list[int],
                  now: float, error: str | None = None) -> int:
        placeholders = ", ".join("?" for _ in part_ids)
        rows = {row["id"]: row for row in conn.execute(
            f"SELECT * FROM inbox_part WHERE id IN ({placeholders})", part_ids).fetchall()}
        ordered = [rows[i] for i in part_ids]
        first = ordered[0]
        text = "".join(row["text"] or "" for row in ordered)
        sent_at = next((row["sent_at"] for row in ordered if row["concat_sequence"] in (None, 1)),
                       first["sent_at"])
        received_at = max(row["received_at"] for row in ordered)
        total = first["concat_total"] or 1
        cur = conn.execute(
            "INSERT INTO inbox (sender, text, sent_at, received_at, modem, parts, error, partial, missing) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (first["sender"], text, sent_at, received_at, first["modem"], total, error, int(partial),
             json.dumps(missing) if missing else None),
        )
        inbox_id = int(cur.lastrowid or 0)
        conn.execute(f"UPDATE inbox_part SET inbox_id = ? WHERE id IN ({placeholders})", (inbox_id, *part_ids))
        payload: dict[str, Any] = {
            "id": inbox_id,
            "from": first["sender"],
            "text": self.shown_text(text) if text is not None else None,
            "sent_at": sent_at,
            "received_at": iso(received_at),
            "modem": first["modem"],
            "parts": total,
        }
        if partial:
            payload["partial"] = True
            payload["missing"] = missing
        if error:
            payload["state"] = UNDECODABLE
            payload["error"] = error
            payload["pdu"] = first["pdu"]  # the raw reply as the modem sent it
        self._add_event(conn, "received", payload, now)
        return inbox_id

    def flush_partial(self, now: float | None = None, timeout: float = REASSEMBLY_TIMEOUT) -> list[int]:
        """Deliver incomplete multipart messages whose first part arrived ``timeout`` seconds ago.

        The text is the parts received, in order, flagged ``"partial": true`` with the missing
        sequence numbers. A part arriving later starts a new group (and is flushed on its own).
        Returns the new inbox ids. The daemon calls this periodically.
        """
        now = self._now(now)
        groups = self._conn.execute(
            "SELECT modem, sender, concat_reference, concat_total, MIN(received_at) AS first_at "
            "FROM inbox_part WHERE inbox_id IS NULL AND concat_total IS NOT NULL "
            "GROUP BY modem, sender, concat_reference, concat_total HAVING MIN(received_at) <= ?",
            (now - timeout,),
        ).fetchall()
        if not groups:
            return []
        created: list[int] = []
        with self._tx() as conn:
            for group in groups:
                rows = conn.execute(
                    "SELECT id, concat_sequence FROM inbox_part WHERE inbox_id IS NULL AND sender IS ? "
                    "AND concat_reference = ? AND concat_total = ? AND modem = ? ORDER BY concat_sequence, id",
                    (group["sender"], group["concat_reference"], group["concat_total"], group["modem"]),
                ).fetchall()
                first: dict[int, int] = {}
                for row in rows:
                    first.setdefault(row["concat_sequence"], row["id"])
                total = group["concat_total"]
                missing = [n for n in range(1, total + 1) if n not in first]
                ids = [first[n] for n in sorted(first)]
                inbox_id = self._assemble(conn, ids, partial=True, missing=missing, now=now)
                # duplicates of a sequence inside the group belong to the same message
                extra = [row["id"] for row in rows if row["id"] not in ids]
                if extra:
                    conn.execute(
                        f"UPDATE inbox_part SET inbox_id = ? WHERE id IN ({', '.join('?' for _ in extra)})",
                        (inbox_id, *extra),
                    )
                created.append(inbox_id)
        return created

    def pending_parts(self) -> list[dict[str, Any]]:
        """Incoming parts still waiting for the rest of their message."""
        rows = self._conn.execute(
            "SELECT id, modem, sender, concat_reference, concat_total, concat_sequence, received_at "
            "FROM inbox_part WHERE inbox_id IS NULL ORDER BY id"
        ).fetchall()
        return [dict(row) for row in rows]

    def _received(self, row: sqlite3.Row) -> ReceivedMessage:
        return ReceivedMessage(
            id=row["id"], sender=row["sender"], text=row["text"] or "", sent_at=row["sent_at"],
            received_at=row["received_at"], modem=row["modem"], parts=row["parts"],
            partial=bool(row["partial"]), error=row["error"],
        )

    def received_unhandled(self, limit: int = 100) -> list[ReceivedMessage]:
        rows = self._conn.execute(
            "SELECT * FROM inbox WHERE handled_at IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [self._received(row) for row in rows]

    def received_handled(self, message_id: int, now: float | None = None) -> None:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE inbox SET handled_at = ? WHERE id = ? AND handled_at IS NULL", (now, message_id))
