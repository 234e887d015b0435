"""``B/send`` and ``B/send/<number>``: MQTT send requests through the send intake, and their answers.

A batch of requests the bridge handed over together is read (payload → JSON → ``SendRequest``),
checked and committed by the intake (``appliance.intake``) in one transaction, then each is
acknowledged (manual PUBACK) and answered in arrival order: only after it was committed, or, for a
bad request, after the refusal was audited (``mqtt_request_rejected``) and counted. A request the
store could not take (disk full, locked, I/O) is kept without PUBACK and tried again COMMIT_RETRY
seconds later (or with the next batch). Answers go to ``B/bridge/response/send`` with the request's
``transaction``, and to an MQTT 5 response topic with its correlation data; in a fleet they carry
``"node"``.

A component of the MQTT bridge (``appliance.mqtt``): it registers its topics before the bridge
connects, so no request a persistent session kept is delivered before it can be handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.intake import (
    Accepted,
    Intake,
    IntakeError,
    OverDailyCap,
    Prepared,
    SendRequest,
    StoreUnavailable,
)
from appliance.payload import PayloadError, decode_text, excerpt, load_json

if TYPE_CHECKING:
    from appliance.mqtt import Incoming, MqttBridge

LOG = logging.getLogger("appliance.mqtt")

#: Seconds before a request batch whose commit failed is tried again.
COMMIT_RETRY = 1.0
#: Audit kind of a refused request.
AUDIT_REJECTED = "mqtt_request_rejected"
#: Audit kind of a request refused by its source's daily cap (also audited as AUDIT_REJECTED).
AUDIT_CAPPED = "cap_exceeded"


def unexpected(exc: BaseException) -> str:
    """The error response for a request that raised something no check foresaw."""
    return f"the request could not be handled ({type(exc).__name__}: {str(exc)[:200]})"


class _Refused(Exception):
    """A send request refused while reading it, with the ``transaction`` it carried (if any)."""

    def __init__(self, reason: str, transaction: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transaction = transaction


@dataclass
class _Entry:
    """One request of a batch on its way: its checked request, its refusal or its accepted messages."""

    item: Incoming
    prepared: Prepared | None = None
    error: str | None = None
    transaction: object = None  # the request's "transaction", any JSON value, answered as it came
    accepted: list[Accepted] | None = None


def _transaction_of(payload: bytes | bytearray) -> object:
    """The ``transaction`` of a JSON request, if it has one (for the answer to a refused request)."""
    try:
        request = load_json(payload, text_only=False)
    except PayloadError:
        return None
    return request.get("transaction") if isinstance(request, dict) else None


def _source(item: Incoming) -> str:
    """``mqtt``, or ``mqtt:<client>`` with an MQTT 5 user property ``source``."""
    for name, value in item.user_properties:
        if name == "source" and value:
            return f"mqtt:{value}"
    return "mqtt"


class SendRequests:
    """Handles the bridge's request topics (see the module docstring)."""

    def __init__(self, bridge: MqttBridge, intake: Intake) -> None:
        self.bridge = bridge
        self.intake = intake
        self.store = intake.store
        self.counters = {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
        self._kept: list[Incoming] = []  # not committed (the store failed): tried again first
        self._retry_handle: asyncio.TimerHandle | None = None
        self._registered = False

    @property
    def topics(self) -> tuple[str, str]:
        """``B/send`` and the prefix of ``B/send/<number>``."""
        send_topic = self.bridge.topic("send")
        return send_topic, send_topic + "/"

    async def start(self) -> None:
        if not self._registered:
            self.bridge.subscribe_requests([self.bridge.topic("send"), self.bridge.topic("send/+")], self.handle)
            self._registered = True

    async def stop(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._kept = []  # unacknowledged: the broker delivers them again

    def handle(self, batch: Sequence[Incoming]) -> None:
        """Check, commit and answer the requests of ``batch`` (and those kept from before, first)."""
        items, self._kept = self._kept + list(batch), []
        if not items or not self.bridge.running:
            return  # stopped: unacknowledged, the broker delivers them again
        try:
            self._process(items)
        except Exception:
            # _process handles each message on its own; should it fail all the same, no message of the
            # batch may be left unanswered (the broker would redeliver it into the same failure).
            LOG.exception("handling %d MQTT message(s) failed", len(items))
            for item in items:
                if not item.acked and not item.retrying:
                    self._fail_safe(item, "the request could not be handled (internal error)")

    def _read_request(self, item: Incoming) -> tuple[Prepared, object]:
        """The request one ``B/send`` message asks for, checked, and its ``transaction``; _Refused."""
        send_topic, send_prefix = self.topics
        msg = item.message
        transaction: object = None
        try:
            if msg.retain:
                # Sent again on every reconnect if kept: refused, and cleared from the broker.
                transaction = _transaction_of(msg.payload) if msg.topic == send_topic else None
                self.bridge.publish(msg.topic, b"", qos=1, retain=True)
                raise _Refused("retained send requests are refused (publish without retain)", transaction)
            text = decode_text(msg.payload)
            if msg.topic == send_topic:
                payload = load_json(text, text_only=False)  # the intake checks each string
                if isinstance(payload, dict):
                    transaction = payload.get("transaction")
                return self.intake.prepare_json(payload, source=_source(item)), transaction
            request = SendRequest(to=(msg.topic[len(send_prefix):],), text=text, source=_source(item))
            return self.intake.prepare(request), transaction
        except PayloadError as exc:
            raise _Refused(exc.reason, transaction) from exc
        except IntakeError as exc:
            raise _Refused(str(exc), transaction) from exc
        except _Refused:
            raise
        except Exception as exc:
            LOG.exception("reading the MQTT request on %s failed", msg.topic)
            raise _Refused(unexpected(exc), transaction) from exc

    def _process(self, batch: list[Incoming]) -> None:
        """Check, commit the good requests in one transaction, then ack and answer in arrival order.

        Each message is handled on its own: whatever one request raises, it is refused (audit, PUBACK,
        error response) and the others of the batch go on.
        """
        entries: list[_Entry] = []
        for item in batch:
            item.retrying = False
            try:
                if not item.counted:
                    self.counters["received"] += 1
                    item.counted = True
                msg = item.message
                if not msg.payload and (msg.retain or not self.bridge.v5):
                    # A client clearing a retained request (an empty retained payload): nothing to answer.
                    # MQTT 3.1.1 clears the retain flag on delivery to a live subscription, so there every
                    # empty payload is taken for one.
                    self.bridge.ack(item)
                    continue
                prepared, transaction = self._read_request(item)
                entries.append(_Entry(item, prepared=prepared, transaction=transaction))
            except _Refused as exc:
                entries.append(_Entry(item, error=exc.reason, transaction=exc.transaction))
            except Exception as exc:  # e.g. a topic that is not UTF-8
                LOG.exception("reading an MQTT message failed")
                entries.append(_Entry(item, error=unexpected(exc)))
        self._submit(entries)
        acks: list[Incoming] = []  # committed, their PUBACKs not yet written: together, before anything else is
        counters = self.counters
        for entry in entries:
            item = entry.item
            try:
                if entry.error is not None:
                    self._flush_acks(acks)
                    self._reject(item, entry.error, entry.transaction)
                elif entry.accepted is not None:
                    acks.append(item)
                    for accepted in entry.accepted:
                        counters["duplicates" if accepted.duplicate else "accepted"] += 1
                    if entry.transaction is not None or item.response_topic:
                        self._flush_acks(acks)
                        self._respond_ok(item, entry.accepted, entry.transaction)
            except Exception:
                LOG.exception("answering the MQTT message on %s failed", item.message.topic)
                if not item.retrying:
                    self.bridge.ack(item)
        self._flush_acks(acks)

    def _flush_acks(self, acks: list[Incoming]) -> None:
        if acks:
            self.bridge.ack_many(acks)
            acks.clear()

    def _submit(self, entries: list[_Entry]) -> None:
        """Hand the checked requests of ``entries`` to the intake (one transaction if it can be) and
        note each outcome. A request the store could not take (disk full, locked, I/O) is kept (no
        PUBACK) and tried again; one over its source's daily cap is audited and refused."""
        pending = [(entry, entry.prepared) for entry in entries if entry.prepared is not None]
        if not pending:
            return
        outcomes = self.intake.submit_many([prepared for _, prepared in pending])
        kept: list[Incoming] = []
        failure: StoreUnavailable | None = None
        for (entry, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, StoreUnavailable):
                kept.append(entry.item)
                failure = failure or outcome
            elif isinstance(outcome, IntakeError):
                entry.error = str(outcome)
                if isinstance(outcome, OverDailyCap):
                    self._audit_capped(entry, outcome)
            else:
                entry.accepted = outcome
        if failure is not None:
            self._store_failed(failure.cause, kept)

    def _audit_capped(self, entry: _Entry, refusal: OverDailyCap) -> None:
        try:
            self.store.audit(AUDIT_CAPPED, {"source": refusal.cause.source, "error": str(refusal),
                                            "topic": entry.item.message.topic})
        except Exception:
            LOG.exception("auditing a capped request failed")

    def _store_failed(self, exc: BaseException, items: list[Incoming]) -> None:
        """Nothing of ``items`` was committed: keep them (no PUBACK) and try again."""
        self.bridge.set_error(f"store commit failed: {exc}", record=False)
        LOG.error("committing %d MQTT request(s) failed (%s); retrying", len(items), exc)
        for item in items:
            item.retrying = True
        self._kept[:0] = items
        if self._retry_handle is None or self._retry_handle.cancelled():
            def again() -> None:
                self._retry_handle = None
                self.handle([])
            self._retry_handle = asyncio.get_running_loop().call_later(COMMIT_RETRY, again)

    def _respond(self, item: Incoming, response: dict[str, Any]) -> None:
        if self.bridge.share_group:
            response["node"] = self.bridge.node_id  # in a fleet: which member answered (its topics: B/node/<node>/…)
        self.bridge.publish(self.bridge.topic("bridge/response/send"), response, qos=1)
        self.bridge.respond_to(item, response)

    def _respond_ok(self, item: Incoming, accepted: Sequence[Accepted], transaction: object) -> None:
        if transaction is None and not item.response_topic:
            return
        messages = [{"id": a.id, "to": a.to, "state": a.state, "duplicate": a.duplicate} for a in accepted]
        data: dict[str, Any] = dict(messages[0]) if len(messages) == 1 else {"messages": messages}
        response: dict[str, Any] = {"status": "ok", "data": data}
        if transaction is not None:
            response["transaction"] = transaction
        self._respond(item, response)

    def _reject(self, item: Incoming, reason: str, transaction: object) -> None:
        msg = item.message
        self.counters["rejected"] += 1
        LOG.warning("refused MQTT request on %s: %s", msg.topic, reason)
        payload_text = excerpt(msg.payload)
        try:
            self.store.audit(AUDIT_REJECTED, {"topic": msg.topic, "error": reason, "payload": payload_text,
                                              "transaction": transaction})
            self.store.state_set("mqtt", "rejected", int(self.store.state_get("mqtt", "rejected", 0)) + 1)
        except Exception:
            LOG.exception("auditing a refused request failed")
        self.bridge.ack(item)
        response: dict[str, Any] = {"status": "error", "error": reason, "data": {}, "topic": msg.topic}
        if transaction is not None:
            response["transaction"] = transaction
        self._respond(item, response)

    def _fail_safe(self, item: Incoming, reason: str) -> None:
        """Last resort for a message whose handling failed: audit and acknowledge it."""
        try:
            self._reject(item, reason, None)
        except Exception:
            LOG.exception("refusing the MQTT message on %s failed", item.message.topic)
            self.bridge.ack(item)
