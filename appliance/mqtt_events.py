"""Store events out: ``message/<id>``, ``received``, ``modem/<id>`` published on MQTT in id order.

An event is handed to paho at most once per connection and marked done in the store only when the
broker acknowledged it (paho's ``on_publish`` for its message id); at most EVENT_WINDOW are in
flight. A run of pending QoS 1 events goes to the socket in one write (``publish_many_tracked``). The store's listener wakes the publisher after every commit that added events; a poll every
EVENT_POLL seconds finds those another process (``smsgw send``) committed. While requests are
arriving, their acknowledgements go first and the events follow at most EVENT_DEFER seconds later.

A component of the MQTT bridge (``appliance.mqtt``): started before it connects, stopped after it
disconnected, so the acknowledgements already received are marked done before the store closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.store import Store

if TYPE_CHECKING:
    from appliance.mqtt import MqttBridge, PublishResult

LOG = logging.getLogger("appliance.mqtt")

#: Store events handed to paho and not yet acknowledged by the broker, at most: below paho's in-flight
#: limit (100, ``MqttBridge``), so events wait in the store rather than in paho's queue, which paho
#: scans from its start after every PUBACK.
EVENT_WINDOW = 90
#: Seconds between looks for events committed by another process (the listener covers this one).
EVENT_POLL = 1.0
#: Seconds the event publisher may wait while requests are arriving.
EVENT_DEFER = 0.1
#: Seconds stop() waits for the publisher task.
STOP_TIMEOUT = 5.0


class EventPublisher:
    """Publishes the store's pending events through ``bridge`` (see the module docstring)."""

    def __init__(self, bridge: MqttBridge, store: Store) -> None:
        self.bridge = bridge
        self.store = store
        self.published = 0  # events the broker acknowledged (counter ``events_published``)
        self._inflight: dict[int, tuple[int, int]] = {}  # paho mid -> (event id, qos)
        self._handed: set[int] = set()  # event ids given to paho, not yet acknowledged
        self._done: list[int] = []  # acknowledged, to be marked done
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._removers: list[Callable[[], None]] = []
        self._running = False

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._running = True
        self._removers = [self.store.add_listener(self._wake.set),
                          self.bridge.add_connect_listener(self._wake.set),
                          self.bridge.add_publish_listener(self._published)]
        self._task = asyncio.create_task(self._publisher(), name="mqtt-publisher")

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=STOP_TIMEOUT)
            self._task = None
        for remove in self._removers:
            remove()
        self._removers = []
        if self._done:
            self._flush_done()  # PUBACKs already received: mark those events done before the store closes

    async def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the broker took every pending store event; used
        by a clean stop so the modems' offline states reach it. False if some are still pending."""
        deadline = time.monotonic() + timeout
        while self.bridge.connected and time.monotonic() < deadline:
            if not self._handed and not self._done and not self.store.events_pending(limit=1):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def _publisher(self) -> None:
        while self._running:
            # the poll is the safety net for events committed by another process (smsgw send);
            # asyncio.timeout, unlike wait_for in 3.11, never swallows the task's cancellation
            try:
                async with asyncio.timeout(EVENT_POLL):
                    await self._wake.wait()
            except TimeoutError:
                pass
            # What was started in the loop turn that woke us goes first: the AT+CMGS of a message
            # just claimed (its task starts in the next turn) is not delayed by publishing its event.
            await asyncio.sleep(0)
            # While a burst of requests is being committed, their acknowledgements go first and the
            # events follow, at most EVENT_DEFER seconds later.
            deferred_since = time.monotonic()
            while self.bridge.receiving and time.monotonic() - deferred_since < EVENT_DEFER:
                await asyncio.sleep(0.002)
            self._wake.clear()
            try:
                self._pump()
            except Exception as exc:
                self.bridge.set_error(f"publishing events failed: {exc}", record=False)
                LOG.exception("publishing store events failed")
                await asyncio.sleep(1.0)
                self._wake.set()

    def _pump(self) -> None:
        if not self.bridge.connected:
            return
        room = EVENT_WINDOW - len(self._handed)
        if room <= 0:
            return
        events = [event for event in self.store.event_bodies_pending(limit=len(self._handed) + room)
                  if event.id not in self._handed]
        at = 0
        while at < len(events):
            if events[at].qos == 1:  # a run of QoS 1 events goes out in one write
                run = [events[at]]
                while at + len(run) < len(events) and events[at + len(run)].qos == 1:
                    run.append(events[at + len(run)])
                results = self.bridge.publish_many_tracked(
                    [(self.bridge.state_topic(event.topic), event.body, event.retain) for event in run])
                if results is None:
                    return  # stopped
                for handed, result in zip(run, results, strict=True):
                    self._handed.add(handed.id)
                    self._inflight[result.mid] = (handed.id, handed.qos)
                at += len(run)
                continue
            event = events[at]
            sent: PublishResult | None = self.bridge.publish_tracked(
                self.bridge.state_topic(event.topic), event.body,  # as stored (b"": retained, clears it)
                qos=event.qos, retain=event.retain)
            if sent is None:
                return  # stopped
            if not sent.queued and event.qos == 0:
                break  # not connected: QoS 0 is not kept by paho; try again on reconnect
            self._handed.add(event.id)
            self._inflight[sent.mid] = (event.id, event.qos)
            at += 1

    def _published(self, mid: int, reason_code: object) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        event_id, _qos = entry
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            # The broker refused it (e.g. ACL with MQTT 5): it stays pending; log once per event.
            # Marked done all the same, so one refused topic cannot block every later event.
            LOG.error("broker refused event %d: %s", event_id, reason_code)
            self.bridge.set_error(f"broker refused event {event_id}: {reason_code}")
            try:
                self.store.audit("mqtt_event_refused", {"event": event_id, "reason": str(reason_code)})
            except Exception:
                LOG.exception("auditing a refused event failed")
        self._done.append(event_id)
        if len(self._done) == 1:
            # PUBACKs that arrive together are marked done in one transaction
            asyncio.get_running_loop().call_soon(self._flush_done)

    def _flush_done(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            self.store.events_done(done)
        except Exception:
            LOG.exception("marking events %s done failed", done)
            # they stay pending and are published again after the next reconnect or restart
        finally:
            self._handed.difference_update(done)
        self.published += len(done)
        self._wake.set()
