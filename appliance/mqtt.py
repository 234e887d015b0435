"""The MQTT connection (paho-mqtt 2.x): one client, its subscriptions, publishing, acknowledgements.

paho runs its network loop in its own thread (``loop_start``); every callback hands its work to the
asyncio loop with ``loop.call_soon_threadsafe``. The store is only touched from the asyncio thread.
Every message is acknowledged by hand (manual PUBACK): a handler's message after the handler
returned, a request after its component answered it.

The bridge hosts two components (``appliance.component.Component``), started before it connects
and stopped after it disconnected: ``requests`` (``appliance.mqtt_requests``: ``B/send`` through the
send intake) and ``events`` (``appliance.mqtt_events``: store events out). Its own state is the
retained ``bridge/state`` (with the last will) and ``bridge/info``.

With ``share_group`` (a fleet of appliances sharing ``$share/<group>/B/send``) the request topics are
subscribed as shared subscriptions and the bridge publishes its own state and its events under its
node topic ``B/node/<node_id>`` (``state_topic``), so members never overwrite each other; responses
stay on the shared ``B/bridge/response/send`` and carry ``"node"``.

Public API used by the daemon, rules and discovery::

    bridge = MqttBridge(config, store, status=lambda: {...})
    await bridge.start(); await bridge.stop()
    bridge.base_topic, bridge.connected
    bridge.subscribe("sensors/+/alarm", handler)        # handler(topic, payload) sync or async
    bridge.publish("smsgw/x", {"a": 1}, qos=1, retain=True)
    bridge.add_connect_listener(callback)               # on every (re)connect, in the asyncio loop
    bridge.requests.intake                              # the send intake B/send goes through
    await bridge.events.drain(timeout)                  # wait until the broker took every event
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance import __version__
from appliance.config import Config, MqttConfig
from appliance.discovery import node_id
from appliance.intake import Intake, IntakePolicy
from appliance.mqtt_client import BridgeClient
from appliance.mqtt_events import EventPublisher
from appliance.mqtt_requests import AUDIT_CAPPED, AUDIT_REJECTED, SendRequests, unexpected
from appliance.payload import dump_json, excerpt
from appliance.store import Store

__all__ = ["AUDIT_CAPPED", "AUDIT_HANDLER_FAILED", "AUDIT_REJECTED", "Incoming", "MqttBridge"]

LOG = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]
JsonPayload = bytes | str | dict[str, Any] | list[Any]


class _PahoNoise(logging.Filter):
    """paho logs "Client is not connected" as an error on every loop turn without a socket; the
    bridge reports connection failures itself (once, as a warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


PAHO_LOG = logging.getLogger("appliance.mqtt.paho")
PAHO_LOG.addFilter(_PahoNoise())

#: Seconds the broker keeps the session (subscriptions and queued QoS 1 requests) while we are away.
SESSION_EXPIRY = 7 * 24 * 3600
#: How many unacknowledged QoS 1 messages the broker may send us at once (MQTT 5 Receive Maximum).
RECEIVE_MAXIMUM = 500
#: Messages paho has read that wait for the asyncio loop, at most: beyond it paho's network thread
#: stops reading the socket (TCP holds the rest at the broker) until the loop took them, for at most
#: READ_PAUSE seconds at a time. The broker's Receive Maximum alone does not bound this: mosquitto
#: 2.0.11 (Debian 12) sends up to that many more after every PUBACK (eclipse-mosquitto/mosquitto
#: #2301), so a burst of 10,000 requests arrived at once, about 5 KiB of paho objects each.
READ_BACKLOG = RECEIVE_MAXIMUM
READ_PAUSE = 1.0
#: Seconds between refreshes of the retained ``B/bridge/info``.
INFO_INTERVAL = 60.0
#: Seconds stop() waits for paho's network thread.
STOP_TIMEOUT = 5.0
#: Audit kind of a message on another subscribed topic (rules, Home Assistant) whose handler failed.
AUDIT_HANDLER_FAILED = "mqtt_handler_failed"


@dataclass
class Incoming:
    """One message from the broker until it is acknowledged (once: the packet id may be reused)."""

    generation: int  # the connection it came on
    message: paho.MQTTMessage  # without its MQTT 5 properties: see ``arrived``
    response_topic: str | None = None  # the MQTT 5 response topic the sender asked for, if any
    correlation: bytes | None = None  # its MQTT 5 correlation data
    user_properties: tuple[tuple[str, str], ...] = ()  # its MQTT 5 user properties
    counted: bool = False  # counted as received (a request kept for a retry is counted once)
    acked: bool = False  # its PUBACK went out
    retrying: bool = False  # kept for another commit attempt (the store failed)

    @classmethod
    def arrived(cls, generation: int, message: paho.MQTTMessage) -> Incoming:
        """The message as paho handed it over, keeping of its MQTT 5 properties the three the bridge
        reads: paho's ``Properties`` object carries tables of every property name (about 5 KiB per
        message), and a burst of requests waiting for the asyncio loop would hold one per request."""
        props = message.properties
        message.properties = None
        return cls(generation, message, response_topic=getattr(props, "ResponseTopic", None) or None,
                   correlation=getattr(props, "CorrelationData", None) or None,
                   user_properties=tuple(getattr(props, "UserProperty", None) or ()))


BatchHandler = Callable[[Sequence[Incoming]], None]


@dataclass(frozen=True)
class PublishResult:
    """What paho did with a publish: its message id (its PUBACK comes with it) and whether it was
    queued (False: not connected and QoS 0, dropped)."""

    mid: int
    queued: bool


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    match_filter: str  # without "$share/<group>/"
    handler: Handler | None  # a handler of single messages; or
    batch_handler: BatchHandler | None  # a request component's, given every batch at once
    qos: int
    #: MQTT 5 retain handling: 1 (replay retained only when the subscription is new), 2 (never)
    retain_handling: int = 1


def _match_filter(topic_filter: str) -> str:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter


def _encode(payload: JsonPayload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "backslashreplace")
    return dump_json(payload).encode()


class MqttBridge:
    """The MQTT side of the appliance (see the module docstring)."""

    def __init__(self, config: Config, store: Store, *, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.config = config
        self.mqtt: MqttConfig = config.mqtt if config.mqtt is not None else MqttConfig(client_id="smsgw")
        self.store = store
        self.status = status
        self.base_topic: str = self.mqtt.base_topic.rstrip("/")
        self.client_id: str = self.mqtt.client_id or "smsgw"
        self.protocol = self.mqtt.protocol
        self.share_group: str | None = self.mqtt.share_group
        #: This member's node id in a fleet (the client id, sanitised as for discovery).
        self.node_id: str = node_id(self.client_id)
        #: Where this bridge publishes its own state: ``B`` alone, ``B/node/<node_id>`` in a fleet.
        self.state_base: str = f"{self.base_topic}/node/{self.node_id}" if self.share_group else self.base_topic
        self.connected = False
        # Subscriptions: _sub_lock orders subscribe() (asyncio thread) against paho's on_connect and
        # on_disconnect (network thread), so each filter is sent exactly once per connection.
        self._sub_lock = threading.Lock()
        self._link_up = False  # paho's on_connect ran and on_disconnect has not (under _sub_lock)
        self._sent_filters: set[str] = set()  # filters subscribed on the current connection
        self._v5 = self.protocol in ("5", "5.0", "v5", "mqttv5")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._subscriptions: list[_Subscription] = []
        self._connect_listeners: list[Callable[[], Any]] = []
        self._publish_listeners: list[Callable[[int, ReasonCode | None], None]] = []
        self._generation = 0  # bumped on every connect; acks from an older connection are never sent
        self._incoming: list[Incoming] = []
        self._incoming_lock = threading.Lock()
        self._incoming_room = threading.Condition(self._incoming_lock)  # notified when the loop took them
        self._acked: list[tuple[int, ReasonCode | None]] = []  # PUBACKs for the publish listeners (under the lock)
        self.read_pauses = 0  # times the network thread waited for the loop (counter ``read_pauses``)
        self._drain_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._connects = 0
        #: The bridge's current problem (a broker refusal, a connection failure...); None once connected.
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        #: The most recent error with its time, kept after a successful connect: {"error", "at"}.
        self.last_failure: dict[str, Any] | None = None
        # number policy, limits and the [sources] daily caps (validated again, and reported, by the rules)
        self.requests = SendRequests(self, Intake(IntakePolicy.from_config(config), store))
        self.events = EventPublisher(self, store)
        #: Started in this order before the connection, stopped in reverse after it.
        self.components = (self.requests, self.events)

    # --- topics ---------------------------------------------------------------------------

    def topic(self, relative: str) -> str:
        return f"{self.base_topic}/{relative}"

    def state_topic(self, relative: str) -> str:
        """A topic of this bridge's own state (``bridge/state``, ``bridge/info``, events): under
        ``B/node/<node_id>`` when ``share_group`` is set (each fleet member has its own), else under ``B``."""
        return f"{self.state_base}/{relative}"

    @property
    def v5(self) -> bool:
        """Whether the connection speaks MQTT 5 (else 3.1.1)."""
        return self._v5

    @property
    def running(self) -> bool:
        """Started and not stopped (connected or trying to)."""
        return self._client is not None

    @property
    def receiving(self) -> bool:
        """Messages are waiting to be handed to their handlers (a burst of requests is arriving)."""
        return self._drain_scheduled

    # --- public API -----------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic_filter``; kept across reconnects.

        The message is acknowledged after the handler returns (or raises).
        """
        self._add(_Subscription(topic_filter, _match_filter(topic_filter), handler, None, qos))

    def subscribe_requests(self, topic_filters: Sequence[str], handler: BatchHandler) -> None:
        """Give every batch of messages on ``topic_filters`` to ``handler(items)`` at once, before the
        other subscriptions' handlers; ``handler`` acknowledges each item itself (``ack``). QoS 1,
        shared (``$share/<group>/``) in a fleet; MQTT 5: retained messages are never replayed and
        keep their retain flag on live delivery (retain-as-published, MQTT 5 §3.8.3.1), so a
        retained request is seen and refused."""
        for topic_filter in topic_filters:
            subscribed = f"$share/{self.share_group}/{topic_filter}" if self.share_group else topic_filter
            self._add(_Subscription(subscribed, topic_filter, None, handler, 1, retain_handling=2))

    def _add(self, sub: _Subscription) -> None:
        with self._sub_lock:
            self._subscriptions.append(sub)
            # Send it now only if paho's on_connect already ran for this connection (it subscribes to
            # everything in the list at that moment); otherwise the next on_connect sends it.
            send = self._link_up and sub.topic_filter not in self._sent_filters
            if send:
                self._sent_filters.add(sub.topic_filter)
        client = self._client
        if send and client is not None:
            self._send_subscribe(client, sub.topic_filter, sub.qos, sub.retain_handling)

    def _send_subscribe(self, client: paho.Client, topic_filter: str, qos: int, retain_handling: int) -> None:
        """MQTT 5: retain handling 2 (never replay retained) for requests, 1 (only when the
        subscription is new) for the rest, so a persistent session's reconnect replays nothing."""
        if self._v5:
            client.subscribe(topic_filter, options=SubscribeOptions(
                qos=qos, retainHandling=retain_handling, retainAsPublished=retain_handling == 2))
        else:
            client.subscribe(topic_filter, qos=qos)

    def publish(self, topic: str, payload: JsonPayload, *, qos: int = 0, retain: bool = False) -> None:
        """Publish on a full topic (QoS 1 messages are kept by paho while disconnected)."""
        client = self._client
        if client is None:
            LOG.debug("publish on %s before start: dropped", topic)
            return
        client.publish(topic, _encode(payload), qos=qos, retain=retain)

    def publish_tracked(self, topic: str, payload: JsonPayload, *, qos: int = 0,
                        retain: bool = False) -> PublishResult | None:
        """``publish``, returning paho's message id (the publish listeners get its PUBACK); None
        when the bridge is not running."""
        client = self._client
        if client is None:
            return None
        info = client.publish(topic, _encode(payload), qos=qos, retain=retain)
        return PublishResult(info.mid, info.rc == paho.MQTT_ERR_SUCCESS)

    def publish_many_tracked(self, messages: Sequence[tuple[str, bytes, bool]]) -> list[PublishResult] | None:
        """``publish_tracked`` of every QoS 1 ``(topic, payload, retain)``, in order; written to the
        socket together where the client can (``BridgeClient.publish_many``); None when the bridge
        is not running."""
        client = self._client
        if client is None:
            return None
        mids = client.publish_many(messages) if isinstance(client, BridgeClient) else None
        if mids is not None:
            return [PublishResult(mid, True) for mid in mids]
        results = []
        for topic, payload, retain in messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            results.append(PublishResult(info.mid, info.rc == paho.MQTT_ERR_SUCCESS))
        return results

    def respond_to(self, item: Incoming, response: dict[str, Any]) -> None:
        """Publish ``response`` on the MQTT 5 response topic of ``item`` (with its correlation data),
        if it asked for one."""
        response_topic = item.response_topic
        client = self._client
        if not response_topic or client is None:
            return
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if item.correlation:
            out.CorrelationData = item.correlation
        client.publish(response_topic, _encode(response), qos=1, properties=out)

    def ack(self, item: Incoming) -> None:
        """Acknowledge ``item`` (once; never on a later connection than the one it came on)."""
        client = self._client
        msg = item.message
        if client is None or msg.qos == 0 or item.acked:
            return
        item.acked = True
        if item.generation != self._generation:
            # The connection this message came on is gone: the broker redelivers it (persistent
            # session) and an ack now could hit an unrelated message with the same packet id.
            return
        client.ack(msg.mid, msg.qos)

    def ack_many(self, items: Sequence[Incoming]) -> None:
        """``ack`` of every item, their PUBACKs written together."""
        client = self._client
        if client is None:
            return
        mids = []
        for item in items:
            msg = item.message
            if msg.qos == 0 or item.acked:
                continue
            item.acked = True
            if item.generation != self._generation:
                continue  # as ack: the broker delivers it again
            if msg.qos == 1 and isinstance(client, BridgeClient):
                mids.append(msg.mid)
            else:
                client.ack(msg.mid, msg.qos)
        if mids and isinstance(client, BridgeClient):
            client.ack_many(mids)

    def add_connect_listener(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Call ``callback()`` (sync or async) in the asyncio loop after every (re)connect."""
        self._connect_listeners.append(callback)
        if self.connected and self._loop is not None:
            self._loop.call_soon(self._run_listener, callback)
        return lambda: self._connect_listeners.remove(callback) if callback in self._connect_listeners else None

    def add_publish_listener(self, callback: Callable[[int, ReasonCode | None], None]) -> Callable[[], None]:
        """Call ``callback(mid, reason_code)`` in the asyncio loop for every publish the broker
        acknowledged while the bridge runs."""
        self._publish_listeners.append(callback)
        return lambda: self._publish_listeners.remove(callback) if callback in self._publish_listeners else None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.requests.counters)
        data["events_published"] = self.events.published
        data["connects"] = self._connects
        data["connected"] = self.connected
        data["rejected_total"] = self.store.state_get("mqtt", "rejected", 0)
        data["events_inflight"] = self.events.inflight
        data["read_pauses"] = self.read_pauses
        data["last_error"] = self.last_error
        data["last_error_at"] = self.last_error_at
        data["last_failure"] = self.last_failure
        return data

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        client = self._make_client()
        with self._sub_lock:
            self._link_up = False
            self._sent_filters = set()
        with self._incoming_lock:
            self._acked = []
        self._client = client
        for component in self.components:
            await component.start()
        self._tasks = [asyncio.create_task(self._info_refresher(), name="mqtt-info")]
        properties = None
        if client.protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        host, port, keepalive = self.mqtt.host, self.mqtt.port, self.mqtt.keepalive
        if client.protocol == paho.MQTTv5:
            client.connect_async(host, port, keepalive, clean_start=False, properties=properties)
        else:
            client.connect_async(host, port, keepalive)
        client.loop_start()
        LOG.info("MQTT bridge connecting to %s:%s as %s (base topic %s)", host, port, self.client_id,
                 self.base_topic)

    async def stop(self) -> None:
        self._stopping = True
        with self._incoming_room:
            self._incoming_room.notify_all()  # a network thread held back by the read gate goes on
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        self._tasks = []
        client = self._client
        if client is None:
            return
        if self.connected:
            info = client.publish(self.state_topic("bridge/state"), _encode({"state": "offline"}), qos=1,
                                  retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                await asyncio.sleep(0.01)
        client.disconnect()
        # paho's loop_stop joins its thread; do that in a daemon thread so a wedged network loop can
        # never hold up the daemon's shutdown.
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-loop-stop", daemon=True)
        stopper.start()
        deadline = time.monotonic() + STOP_TIMEOUT
        while stopper.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if stopper.is_alive():
            LOG.warning("the MQTT network loop did not stop within %.0f s; leaving it", STOP_TIMEOUT)
        self.connected = False
        self._client = None  # from here on, late paho callbacks are ignored
        for component in reversed(self.components):
            await component.stop()  # the events: PUBACKs already received are marked done
        self._record_connection()

    async def drain_events(self, timeout: float) -> bool:
        """``events.drain``: wait until the broker took every pending store event (a clean stop)."""
        return await self.events.drain(timeout)

    # --- paho client ----------------------------------------------------------------------

    def set_error(self, error: str, *, record: bool = True) -> None:
        """Remember ``error`` with its time (any thread) and record it where ``smsgw status`` reads it
        (not with ``record=False``: when the store itself is failing)."""
        now = time.time()
        self.last_error, self.last_error_at = error, now
        self.last_failure = {"error": error, "at": now}
        if record:
            self._call(self._record_connection)

    def _make_client(self) -> paho.Client:
        if self._v5:
            client = BridgeClient(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        else:
            client = BridgeClient(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311,
                             clean_session=False)
        client.manual_ack_set(True)
        client.read_gate = self._wait_for_room
        client.enable_logger(PAHO_LOG)
        client.max_inflight_messages_set(100)
        if self.mqtt.username:
            client.username_pw_set(self.mqtt.username, self.mqtt.password)
        tls = self.mqtt.tls
        if tls is not None:
            client.tls_set(ca_certs=str(tls.ca) if tls.ca else None, certfile=str(tls.cert) if tls.cert else None,
                           keyfile=str(tls.key) if tls.key else None,
                           cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED)
            if tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(self.state_topic("bridge/state"), _encode({"state": "offline"}), qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, round(self.mqtt.reconnect_min)),
            max_delay=max(1, round(self.mqtt.reconnect_max)),
        )
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._client is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed while paho was still running
            pass

    # paho thread
    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: object, sock: Any) -> None:  # paho's SocketLike
        # PUBACK, response and event go out back to back: without TCP_NODELAY, Nagle holds the second
        # packet until the broker's delayed ACK of the first (about 40 ms).
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        if reason_code.is_failure:
            error = f"connection refused by the broker: {reason_code}"
            if error != self.last_error:
                LOG.error("MQTT broker refused the connection: %s", reason_code)
            self.set_error(error)
            return
        self.last_error = self.last_error_at = None  # last_failure keeps what went wrong before
        self._generation += 1
        # Every filter once (the highest QoS asked for); subscribe() from now on sends new ones itself.
        filters: dict[str, tuple[int, int]] = {}
        with self._sub_lock:
            self._link_up = True
            for sub in self._subscriptions:
                qos, retain_handling = filters.get(sub.topic_filter, (0, sub.retain_handling))
                filters[sub.topic_filter] = (max(qos, sub.qos), retain_handling)
            self._sent_filters = set(filters)
        for topic_filter, (qos, retain_handling) in filters.items():
            self._send_subscribe(client, topic_filter, qos, retain_handling)
        client.publish(self.state_topic("bridge/state"), _encode({"state": "online"}), qos=1, retain=True)
        LOG.info("MQTT connected (session present: %s)", getattr(flags, "session_present", None))
        self._call(self._connected_main)

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        host, port = self.mqtt.host, self.mqtt.port
        cause = getattr(client, "connect_error", None)
        if cause is not None:
            reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, ssl.SSLError) else str(cause)
        else:
            tls = " or the TLS handshake failed" if self.mqtt.tls is not None else ""
            reason = f"refused, unreachable{tls}"
        error = f"cannot connect to the broker at {host}:{port} ({reason}); retrying"
        if error != self.last_error:
            LOG.warning("MQTT %s", error)
        self.set_error(error)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: paho.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        with self._sub_lock:
            was_up = self._link_up
            self._link_up = False
            self._sent_filters = set()
        if not self._stopping and was_up:  # after a refused CONNECT, the refusal says more
            self.set_error(f"disconnected: {reason_code}")
            LOG.warning("MQTT disconnected: %s; reconnecting", reason_code)
        self._call(self._disconnected_main)

    def _wait_for_room(self) -> None:
        """Before paho reads the socket: while READ_BACKLOG messages wait for the asyncio loop, wait
        until it took them (at most READ_PAUSE seconds: keep-alive and a wedged loop)."""
        if len(self._incoming) < READ_BACKLOG:  # the common case, without the lock (called per packet)
            return
        with self._incoming_room:
            if len(self._incoming) < READ_BACKLOG or self._stopping:
                return
            self.read_pauses += 1
            self._incoming_room.wait_for(lambda: len(self._incoming) < READ_BACKLOG or self._stopping, READ_PAUSE)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._incoming_lock:
            self._incoming.append(Incoming.arrived(self._generation, message))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._call(self._drain)

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason_code: ReasonCode | None,
                    properties: Properties | None) -> None:
        # PUBACKs read together are handed to the loop together (one wake-up of it, not one each)
        with self._incoming_lock:
            self._acked.append((mid, reason_code))
            if len(self._acked) > 1:
                return
        self._call(self._published_main)

    # --- asyncio thread: connection ---------------------------------------------------------

    def _connected_main(self) -> None:
        self.connected = True
        self._connects += 1
        self._record_connection()
        self.publish_info()
        for callback in list(self._connect_listeners):
            self._run_listener(callback)

    def _published_main(self) -> None:
        with self._incoming_lock:
            acked, self._acked = self._acked, []
        if self._client is None:  # stopped: an event stays pending and is published next time
            return
        listeners = list(self._publish_listeners)
        for mid, reason_code in acked:
            for callback in listeners:
                try:
                    callback(mid, reason_code)
                except Exception:
                    LOG.exception("MQTT publish listener %r failed", callback)

    def _run_listener(self, callback: Callable[[], Any]) -> None:
        try:
            result = callback()
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:
            LOG.exception("MQTT connect listener %r failed", callback)

    def _disconnected_main(self) -> None:
        was = self.connected
        self.connected = False
        if was:
            self._record_connection()

    def _record_connection(self) -> None:
        """The connection state in the store (state ``mqtt``/``connection``) for ``smsgw status``."""
        host, port = self.mqtt.host, self.mqtt.port
        try:
            self.store.state_set("mqtt", "connection", {
                "connected": self.connected, "since": time.time(), "broker": f"{host}:{port}",
                "client_id": self.client_id, "last_error": self.last_error, "last_error_at": self.last_error_at,
                "last_failure": self.last_failure,
            })
        except Exception:
            LOG.exception("recording the MQTT connection state failed")

    def publish_info(self) -> None:
        """Publish the retained ``B/bridge/info`` (version, modems, config summary, counters)."""
        info: dict[str, Any] = {
            "version": __version__,
            "client_id": self.client_id,
            "base_topic": self.base_topic,
            "protocol": "5" if self.protocol in ("5", "5.0") else "3.1.1",
            "share_group": self.share_group,
            "node_id": self.node_id if self.share_group else None,
            "tls": self.mqtt.tls is not None,
            "config": self._config_summary(),
        }
        if self.status is not None:
            try:
                info.update(self.status())
            except Exception as exc:
                LOG.exception("status callback failed")
                info["status_error"] = str(exc)
        else:
            try:
                info["queue"] = self.store.stats()["outbox"]
            except Exception:
                LOG.exception("store stats failed")
        info["bridge"] = self.stats()
        self.publish(self.state_topic("bridge/info"), info, qos=1, retain=True)

    def _config_summary(self) -> dict[str, Any]:
        numbers = self.config.numbers
        return {
            "default_country": numbers.default_country,
            "allow_premium": numbers.allow_premium,
            "allow_short_codes": numbers.allow_short_codes,
            "max_parts": self.config.limits.max_parts,
            "modems": len(self.config.modems),
        }

    async def _info_refresher(self) -> None:
        while not self._stopping:
            await asyncio.sleep(INFO_INTERVAL)
            if self.connected:
                self.publish_info()

    # --- asyncio thread: messages in ------------------------------------------------------------

    def _drain(self) -> None:
        """Hand every message paho has handed over to its handlers: each request subscription's
        batch at once (one store transaction for its good requests), then the others in order."""
        with self._incoming_room:
            batch, self._incoming = self._incoming, []
            self._drain_scheduled = False
            self._incoming_room.notify_all()
        if not batch or self._client is None:
            return  # stopped: unacknowledged, the broker delivers them again
        batches: dict[BatchHandler, list[Incoming]] = {}
        others: list[Incoming] = []
        requests = [s for s in self._subscriptions if s.batch_handler is not None]
        # the request subscription of each topic, matched once per topic and drain (a burst of
        # requests comes on one or a few topics)
        matched: dict[str, _Subscription | None] = {}
        for item in batch:
            try:
                topic = item.message.topic
                if topic in matched:
                    sub = matched[topic]
                else:
                    sub = matched[topic] = next(
                        (s for s in requests if paho.topic_matches_sub(s.match_filter, topic)), None)
            except Exception:  # e.g. a topic that is not UTF-8
                LOG.exception("reading an MQTT message failed")
                self.ack(item)
                continue
            if sub is not None and sub.batch_handler is not None:
                batches.setdefault(sub.batch_handler, []).append(item)
            else:
                others.append(item)
        for handler, items in batches.items():
            try:
                handler(items)
            except Exception:
                LOG.exception("handling %d MQTT request(s) failed", len(items))
                for item in items:
                    if not item.retrying:
                        self.ack(item)
        for item in others:
            try:
                self._dispatch_other(item)
            except Exception:
                LOG.exception("answering the MQTT message on %s failed", item.message.topic)
                self.ack(item)

    def _handler_failed(self, msg: paho.MQTTMessage, exc: BaseException) -> None:
        """A handler of another subscribed topic raised: logged and audited; the message is still
        acknowledged (redelivering it would only fail again)."""
        LOG.error("MQTT handler for %s failed: %s", msg.topic, unexpected(exc), exc_info=exc)
        try:
            self.store.audit(AUDIT_HANDLER_FAILED, {"topic": msg.topic, "error": unexpected(exc),
                                                    "payload": excerpt(msg.payload)})
        except Exception:
            LOG.exception("auditing a failed MQTT handler failed")

    def _dispatch_other(self, item: Incoming) -> None:
        msg = item.message
        handlers = [s.handler for s in self._subscriptions
                    if s.handler is not None and paho.topic_matches_sub(s.match_filter, msg.topic)]
        if not handlers:
            self.ack(item)
            return
        awaitables = []
        for handler in handlers:
            try:
                result = handler(msg.topic, bytes(msg.payload))
                if inspect.isawaitable(result):
                    awaitables.append(result)
            except Exception as exc:
                self._handler_failed(msg, exc)
        if not awaitables:
            self.ack(item)
            return

        async def finish() -> None:
            for awaitable in awaitables:
                try:
                    await awaitable
                except Exception as exc:
                    self._handler_failed(msg, exc)
            self.ack(item)

        asyncio.ensure_future(finish())
