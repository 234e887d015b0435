"""MQTT bridge: send requests in, store events out (paho-mqtt 2.x).

paho runs its network loop in its own thread (``loop_start``); every callback hands its work to the
asyncio loop with ``loop.call_soon_threadsafe``. The store is only touched from the asyncio thread.

Requests on ``B/send`` / ``B/send/<number>`` are checked and committed by the send intake
(``appliance.intake``), a batch of them in one transaction, and acknowledged (manual PUBACK) only after they are
committed to the store, or, for a bad request, after the refusal is audited and counted. Store events
(``message/<id>``, ``received``, ``modem/<id>``) are published in id order and marked done only when
the broker acknowledged them (paho's ``on_publish`` for the message id).

With ``share_group`` (a fleet of appliances sharing ``$share/<group>/B/send``) the bridge publishes its
own state (``bridge/state`` with the last will, ``bridge/info``) and its events under its node topic
``B/node/<node_id>`` (``state_topic``), so members never overwrite each other; responses stay on the
shared ``B/bridge/response/send`` and carry ``"node"``.

Public API used by the daemon, rules and discovery::

    bridge = MqttBridge(config, store, status=lambda: {...})
    await bridge.start(); await bridge.stop()
    bridge.base_topic, bridge.connected
    bridge.subscribe("sensors/+/alarm", handler)        # handler(topic, payload) sync or async
    bridge.publish("smsgw/x", {"a": 1}, qos=1, retain=True)
    bridge.add_connect_listener(callback)               # on every (re)connect, in the asyncio loop
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
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance import __version__
from appliance.discovery import node_id
from appliance.intake import (
    Accepted,
    Intake,
    IntakeError,
    IntakePolicy,
    OverDailyCap,
    Prepared,
    SendRequest,
    StoreUnavailable,
    request_from_json,
)
from appliance.payload import PayloadError, decode_text, dump_json, excerpt, load_json
from appliance.store import Store

LOG = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]


class _PahoNoise(logging.Filter):
    """paho logs "Client is not connected" as an error on every loop turn without a socket; the
    bridge reports connection failures itself (once, as a warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


PAHO_LOG = logging.getLogger("appliance.mqtt.paho")
PAHO_LOG.addFilter(_PahoNoise())

#: Seconds the broker keeps the session (subscriptions and queued QoS 1 requests) while we are away.
SESSION_EXPIRY = 7 * 24 * 3600
#: Store events handed to paho and not yet acknowledged by the broker, at most.
EVENT_WINDOW = 200
#: How many unacknowledged QoS 1 messages the broker may send us at once (MQTT 5 Receive Maximum).
RECEIVE_MAXIMUM = 500
#: Seconds between looks for events committed by another process (the listener covers this one).
EVENT_POLL = 1.0
#: Seconds the event publisher may wait while requests are arriving.
EVENT_DEFER = 0.1
#: Seconds between refreshes of the retained ``B/bridge/info``.
INFO_INTERVAL = 60.0
#: Seconds before a request batch whose commit failed is tried again.
COMMIT_RETRY = 1.0
#: Seconds stop() waits for paho's network thread.
STOP_TIMEOUT = 5.0
#: Audit kind of a refused request.
AUDIT_REJECTED = "mqtt_request_rejected"
#: Audit kind of a request refused by its source's daily cap (also audited as AUDIT_REJECTED).
AUDIT_CAPPED = "cap_exceeded"
#: Audit kind of a message on another subscribed topic (rules, Home Assistant) whose handler failed.
AUDIT_HANDLER_FAILED = "mqtt_handler_failed"


@dataclass
class _Incoming:
    generation: int
    message: paho.MQTTMessage
    counted: bool = False
    acked: bool = False  # its PUBACK went out (never twice: the packet id may be reused)
    retrying: bool = False  # kept for another commit attempt (the store failed)


@dataclass
class _Entry:
    """One message of a batch on its way: another topic's, or a send request with its checked
    request, its refusal or its accepted messages."""

    item: _Incoming
    other: bool = False  # not a send request: for the subscribed handlers
    prepared: Prepared | None = None
    error: str | None = None
    transaction: Any = None
    accepted: list[Accepted] | None = None


class _Refused(Exception):
    """A send request refused while reading it, with the ``transaction`` it carried (if any)."""

    def __init__(self, reason: str, transaction: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transaction = transaction


def _unexpected(exc: BaseException) -> str:
    """The error response for a request that raised something no check foresaw."""
    return f"the request could not be handled ({type(exc).__name__}: {str(exc)[:200]})"


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    match_filter: str  # without "$share/<group>/"
    handler: Handler
    qos: int


class _Client(paho.Client):
    """paho's client, remembering why its last connection attempt failed (paho's ``on_connect_fail``
    gets no exception: a TLS failure or a refused TCP connection would be lost)."""

    connect_error: BaseException | None = None

    def reconnect(self) -> Any:
        try:
            result = super().reconnect()
        except (OSError, ValueError) as exc:
            self.connect_error = exc
            raise
        self.connect_error = None
        return result


def _match_filter(topic_filter: str) -> str:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        return parts[2] if len(parts) == 3 else topic_filter
    return topic_filter


def _cfg(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default) if obj is not None else default


def _transaction_of(payload: bytes | bytearray) -> Any:
    """The ``transaction`` of a JSON request, if it has one (for the answer to a refused request)."""
    try:
        request = load_json(payload, text_only=False)
    except PayloadError:
        return None
    return request.get("transaction") if isinstance(request, dict) else None


def _encode(payload: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "backslashreplace")
    return dump_json(payload).encode()


class MqttBridge:
    """The MQTT side of the appliance (see the module docstring)."""

    def __init__(self, config: Any, store: Store, *, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.store = store
        self.status = status
        self.base_topic: str = str(_cfg(self.mqtt, "base_topic", "smsgw")).rstrip("/")
        self.client_id: str = str(_cfg(self.mqtt, "client_id", None) or "smsgw")
        self.protocol = str(_cfg(self.mqtt, "protocol", "5"))
        self.share_group: str | None = _cfg(self.mqtt, "share_group", None)
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
        self._generation = 0  # bumped on every connect; acks from an older connection are never sent
        self._incoming: list[_Incoming] = []
        self._incoming_lock = threading.Lock()
        self._drain_scheduled = False
        self._retry_handle: asyncio.TimerHandle | None = None
        self._inflight: dict[int, tuple[int, int]] = {}  # paho mid -> (event id, qos)
        self._handed: set[int] = set()  # event ids given to paho, not yet acknowledged
        self._done: list[int] = []  # acknowledged, to be marked done
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._remove_listener: Callable[[], None] | None = None
        self._stopping = False
        self.counters = {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0,
                         "events_published": 0, "connects": 0}
        #: The bridge's current problem (a broker refusal, a connection failure...); None once connected.
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        #: The most recent error with its time, kept after a successful connect: {"error", "at"}.
        self.last_failure: dict[str, Any] | None = None
        # number policy, limits and the [sources] daily caps (validated again, and reported, by the rules)
        self.intake = Intake(IntakePolicy.from_config(config), store)

    # --- topics ---------------------------------------------------------------------------

    def topic(self, relative: str) -> str:
        return f"{self.base_topic}/{relative}"

    def state_topic(self, relative: str) -> str:
        """A topic of this bridge's own state (``bridge/state``, ``bridge/info``, events): under
        ``B/node/<node_id>`` when ``share_group`` is set (each fleet member has its own), else under ``B``."""
        return f"{self.state_base}/{relative}"

    @property
    def send_filters(self) -> list[str]:
        filters = [self.topic("send"), self.topic("send/+")]
        if self.share_group:
            filters = [f"$share/{self.share_group}/{f}" for f in filters]
        return filters

    # --- public API -----------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic_filter``; kept across reconnects.

        The message is acknowledged after the handler returns (or raises).
        """
        sub = _Subscription(topic_filter, _match_filter(topic_filter), handler, qos)
        with self._sub_lock:
            self._subscriptions.append(sub)
            # Send it now only if paho's on_connect already ran for this connection (it subscribes to
            # everything in the list at that moment); otherwise the next on_connect sends it.
            send = self._link_up and topic_filter not in self._sent_filters
            if send:
                self._sent_filters.add(topic_filter)
        client = self._client
        if send and client is not None:
            self._send_subscribe(client, topic_filter, qos, 1)

    def _send_subscribe(self, client: paho.Client, topic_filter: str, qos: int, retain_handling: int) -> None:
        """MQTT 5: retain handling 2 (never replay retained) for send requests, 1 (only when the
        subscription is new) for the rest, so a persistent session's reconnect replays nothing."""
        if self._v5:
            # retain-as-published on the send topics: the broker keeps the publisher's retain flag on
            # live deliveries (MQTT 5 §3.8.3.1), so a retained request is seen and refused
            client.subscribe(topic_filter, options=SubscribeOptions(
                qos=qos, retainHandling=retain_handling, retainAsPublished=topic_filter in self.send_filters))
        else:
            client.subscribe(topic_filter, qos=qos)

    def publish(self, topic: str, payload: bytes | str | dict[str, Any], *, qos: int = 0,
                retain: bool = False) -> None:
        """Publish on a full topic (QoS 1 messages are kept by paho while disconnected)."""
        client = self._client
        if client is None:
            LOG.debug("publish on %s before start: dropped", topic)
            return
        client.publish(topic, _encode(payload), qos=qos, retain=retain)

    def add_connect_listener(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Call ``callback()`` (sync or async) in the asyncio loop after every (re)connect."""
        self._connect_listeners.append(callback)
        if self.connected and self._loop is not None:
            self._loop.call_soon(self._run_listener, callback)
        return lambda: self._connect_listeners.remove(callback) if callback in self._connect_listeners else None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.counters)
        data["connected"] = self.connected
        data["rejected_total"] = self.store.state_get("mqtt", "rejected", 0)
        data["events_inflight"] = len(self._inflight)
        data["last_error"] = self.last_error
        data["last_error_at"] = self.last_error_at
        data["last_failure"] = self.last_failure
        return data

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        client = self._make_client()
        with self._sub_lock:
            self._link_up = False
            self._sent_filters = set()
        self._client = client
        self._remove_listener = self.store.add_listener(self._wake_publisher)
        self._tasks = [
            asyncio.create_task(self._publisher(), name="mqtt-publisher"),
            asyncio.create_task(self._info_refresher(), name="mqtt-info"),
        ]
        properties = None
        if client.protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = int(_cfg(self.mqtt, "session_expiry", SESSION_EXPIRY))
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        host = str(_cfg(self.mqtt, "host", "127.0.0.1"))
        port = int(_cfg(self.mqtt, "port", 1883))
        keepalive = int(_cfg(self.mqtt, "keepalive", 60))
        if client.protocol == paho.MQTTv5:
            client.connect_async(host, port, keepalive, clean_start=False, properties=properties)
        else:
            client.connect_async(host, port, keepalive)
        client.loop_start()
        LOG.info("MQTT bridge connecting to %s:%s as %s (base topic %s)", host, port, self.client_id,
                 self.base_topic)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        self._tasks = []
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
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
        if self._done:
            self._flush_done()  # PUBACKs already received: mark those events done before the store closes
        self._record_connection()

    async def drain_events(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the broker took every pending store event; used
        by a clean stop so the modems' offline states reach it. False if some are still pending."""
        deadline = time.monotonic() + timeout
        while self.connected and time.monotonic() < deadline:
            if not self._handed and not self._done and not self.store.events_pending(limit=1):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    # --- paho client ----------------------------------------------------------------------

    def _set_error(self, error: str, *, record: bool = True) -> None:
        """Remember ``error`` with its time (any thread) and record it where ``smsgw status`` reads it
        (not with ``record=False``: when the store itself is failing)."""
        now = time.time()
        self.last_error, self.last_error_at = error, now
        self.last_failure = {"error": error, "at": now}
        if record:
            self._call(self._record_connection)

    def _make_client(self) -> paho.Client:
        if self._v5:
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        else:
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311,
                             clean_session=False)
        client.manual_ack_set(True)
        client.enable_logger(PAHO_LOG)
        client.max_inflight_messages_set(100)
        username = _cfg(self.mqtt, "username")
        if username:
            client.username_pw_set(username, _cfg(self.mqtt, "password"))
        tls = _cfg(self.mqtt, "tls")
        if tls is not None:
            ca = _cfg(tls, "ca")
            cert = _cfg(tls, "cert")
            key = _cfg(tls, "key")
            insecure = bool(_cfg(tls, "insecure", False))
            client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                           keyfile=str(key) if key else None,
                           cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED)
            if insecure:
                client.tls_insecure_set(True)
        client.will_set(self.state_topic("bridge/state"), _encode({"state": "offline"}), qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, round(float(_cfg(self.mqtt, "reconnect_min", 1.0)))),
            max_delay=max(1, round(float(_cfg(self.mqtt, "reconnect_max", 60.0)))),
        )
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._client is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed while paho was still running
            pass

    # paho thread
    @staticmethod
    def _on_socket_open(client: paho.Client, userdata: Any, sock: Any) -> None:
        # PUBACK, response and event go out back to back: without TCP_NODELAY, Nagle holds the second
        # packet until the broker's delayed ACK of the first (about 40 ms).
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            error = f"connection refused by the broker: {reason_code}"
            if error != self.last_error:
                LOG.error("MQTT broker refused the connection: %s", reason_code)
            self._set_error(error)
            return
        self.last_error = self.last_error_at = None  # last_failure keeps what went wrong before
        self._generation += 1
        # Every filter once (the highest QoS asked for); subscribe() from now on sends new ones itself.
        filters: dict[str, tuple[int, int]] = {f: (1, 2) for f in self.send_filters}
        with self._sub_lock:
            self._link_up = True
            for sub in self._subscriptions:
                qos, retain_handling = filters.get(sub.topic_filter, (0, 1))
                filters[sub.topic_filter] = (max(qos, sub.qos), retain_handling)
            self._sent_filters = set(filters)
        for topic_filter, (qos, retain_handling) in filters.items():
            self._send_subscribe(client, topic_filter, qos, retain_handling)
        client.publish(self.state_topic("bridge/state"), _encode({"state": "online"}), qos=1, retain=True)
        LOG.info("MQTT connected (session present: %s)", getattr(flags, "session_present", None))
        self._call(self._connected_main)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        host = _cfg(self.mqtt, "host", "127.0.0.1")
        port = _cfg(self.mqtt, "port", 1883)
        cause = getattr(client, "connect_error", None)
        if cause is not None:
            reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, ssl.SSLError) else str(cause)
        else:
            tls = " or the TLS handshake failed" if _cfg(self.mqtt, "tls") is not None else ""
            reason = f"refused, unreachable{tls}"
        error = f"cannot connect to the broker at {host}:{port} ({reason}); retrying"
        if error != self.last_error:
            LOG.warning("MQTT %s", error)
        self._set_error(error)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._sub_lock:
            was_up = self._link_up
            self._link_up = False
            self._sent_filters = set()
        if not self._stopping and was_up:  # after a refused CONNECT, the refusal says more
            self._set_error(f"disconnected: {reason_code}")
            LOG.warning("MQTT disconnected: %s; reconnecting", reason_code)
        self._call(self._disconnected_main)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._incoming_lock:
            self._incoming.append(_Incoming(self._generation, message))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._call(self._drain)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._call(self._published_main, mid, reason_code)

    # --- asyncio thread: connection ---------------------------------------------------------

    def _connected_main(self) -> None:
        self.connected = True
        self.counters["connects"] += 1
        self._record_connection()
        self.publish_info()
        for callback in list(self._connect_listeners):
            self._run_listener(callback)
        self._wake.set()

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
        host = _cfg(self.mqtt, "host", "127.0.0.1")
        port = _cfg(self.mqtt, "port", 1883)
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
            "tls": _cfg(self.mqtt, "tls") is not None,
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
        numbers = _cfg(self.config, "numbers")
        limits = _cfg(self.config, "limits")
        return {
            "default_country": _cfg(numbers, "default_country"),
            "allow_premium": _cfg(numbers, "allow_premium"),
            "allow_short_codes": _cfg(numbers, "allow_short_codes"),
            "max_parts": _cfg(limits, "max_parts"),
            "modems": len(_cfg(self.config, "modems", []) or []),
        }

    async def _info_refresher(self) -> None:
        while not self._stopping:
            await asyncio.sleep(INFO_INTERVAL)
            if self.connected:
                self.publish_info()

    # --- asyncio thread: requests -------------------------------------------------------------

    def _source(self, message: paho.MQTTMessage) -> str:
        props = getattr(message, "properties", None)
        for name, value in getattr(props, "UserProperty", None) or []:
            if name == "source" and value:
                return f"mqtt:{value}"
        return "mqtt"

    def _drain(self) -> None:
        """Handle every message paho has handed over: one store transaction for all good requests."""
        with self._incoming_lock:
            batch, self._incoming = self._incoming, []
            self._drain_scheduled = False
        if not batch or self._client is None:
            return  # stopped: unacknowledged, the broker delivers them again
        try:
            self._process(batch)
        except Exception:
            # _process handles each message on its own; should it fail all the same, no message of the
            # batch may be left unanswered (the broker would redeliver it into the same failure).
            LOG.exception("handling %d MQTT message(s) failed", len(batch))
            for item in batch:
                if not item.acked and not item.retrying:
                    self._fail_safe(item, "the request could not be handled (internal error)")

    def _read_request(self, item: _Incoming, send_topic: str, send_prefix: str) -> tuple[Prepared, Any]:
        """The request one ``B/send`` message asks for, checked, and its ``transaction``; _Refused."""
        msg = item.message
        transaction: Any = None
        try:
            if msg.retain:
                # Sent again on every reconnect if kept: refused, and cleared from the broker.
                transaction = _transaction_of(msg.payload) if msg.topic == send_topic else None
                self.publish(msg.topic, b"", qos=1, retain=True)
                raise _Refused("retained send requests are refused (publish without retain)", transaction)
            text = decode_text(msg.payload)
            if msg.topic == send_topic:
                payload = load_json(text, text_only=False)  # the intake checks each string
                if isinstance(payload, dict):
                    transaction = payload.get("transaction")
                request = request_from_json(payload, source=self._source(msg))
            else:
                request = SendRequest(to=(msg.topic[len(send_prefix):],), text=text, source=self._source(msg))
            return self.intake.prepare(request), transaction
        except PayloadError as exc:
            raise _Refused(exc.reason, transaction) from exc
        except IntakeError as exc:
            raise _Refused(str(exc), transaction) from exc
        except _Refused:
            raise
        except Exception as exc:
            LOG.exception("reading the MQTT request on %s failed", msg.topic)
            raise _Refused(_unexpected(exc), transaction) from exc

    def _process(self, batch: list[_Incoming]) -> None:
        """Check, commit the good requests in one transaction, then ack and answer in arrival order.

        Each message is handled on its own: whatever one request raises, it is refused (audit, PUBACK,
        error response) and the others of the batch go on.
        """
        send_topic = self.topic("send")
        send_prefix = send_topic + "/"
        entries: list[_Entry] = []
        for item in batch:
            item.retrying = False
            try:
                topic = item.message.topic
                if topic != send_topic and not topic.startswith(send_prefix):
                    entries.append(_Entry(item, other=True))
                    continue
                if not item.counted:
                    self.counters["received"] += 1
                    item.counted = True
                msg = item.message
                if not msg.payload and (msg.retain or not self._v5):
                    # A client clearing a retained request (an empty retained payload): nothing to answer.
                    # MQTT 3.1.1 clears the retain flag on delivery to a live subscription, so there every
                    # empty payload is taken for one.
                    self._ack(item)
                    continue
                prepared, transaction = self._read_request(item, send_topic, send_prefix)
                entries.append(_Entry(item, prepared=prepared, transaction=transaction))
            except _Refused as exc:
                entries.append(_Entry(item, error=exc.reason, transaction=exc.transaction))
            except Exception as exc:  # e.g. a topic that is not UTF-8
                LOG.exception("reading an MQTT message failed")
                entries.append(_Entry(item, error=_unexpected(exc)))
        self._submit(entries)
        for entry in entries:
            item = entry.item
            try:
                if entry.other:
                    self._dispatch_other(item)
                elif entry.error is not None:
                    self._reject(item, entry.error, entry.transaction)
                elif entry.accepted is not None:
                    self._ack(item)
                    for accepted in entry.accepted:
                        self.counters["duplicates" if accepted.duplicate else "accepted"] += 1
                    self._respond_ok(item, entry.accepted, entry.transaction)
            except Exception:
                LOG.exception("answering the MQTT message on %s failed", item.message.topic)
                if not item.retrying:
                    self._ack(item)

    def _submit(self, entries: list[_Entry]) -> None:
        """Hand the checked requests of ``entries`` to the intake (one transaction if it can be) and
        note each outcome. A request the store could not take (disk full, locked, I/O) is kept (no
        PUBACK) and tried again; one over its source's daily cap is audited and refused."""
        pending = [entry for entry in entries if entry.prepared is not None]
        if not pending:
            return
        outcomes = self.intake.submit_many([entry.prepared for entry in pending if entry.prepared is not None])
        kept: list[_Incoming] = []
        failure: StoreUnavailable | None = None
        for entry, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, StoreUnavailable):
                kept.append(entry.item)
                failure = failure or outcome
            elif isinstance(outcome, IntakeError):
                entry.error = str(outcome)
                if isinstance(outcome, OverDailyCap):
                    self._audit_capped(entry, outcome)
            else:
                entry.accepted = outcome
        if kept:
            assert failure is not None
            self._store_failed(failure.cause, kept)

    def _audit_capped(self, entry: _Entry, refusal: OverDailyCap) -> None:
        try:
            self.store.audit(AUDIT_CAPPED, {"source": refusal.cause.source, "error": str(refusal),
                                            "topic": entry.item.message.topic})
        except Exception:
            LOG.exception("auditing a capped request failed")

    def _store_failed(self, exc: BaseException, items: list[_Incoming]) -> None:
        """Nothing of ``items`` was committed: keep them (no PUBACK) and try again."""
        self._set_error(f"store commit failed: {exc}", record=False)
        LOG.error("committing %d MQTT request(s) failed (%s); retrying", len(items), exc)
        for item in items:
            item.retrying = True
        self._retry(items)

    def _retry(self, items: list[_Incoming]) -> None:
        assert self._loop is not None
        with self._incoming_lock:
            self._incoming[:0] = items
        if self._retry_handle is None or self._retry_handle.cancelled():
            def again() -> None:
                self._retry_handle = None
                self._drain()
            self._retry_handle = self._loop.call_later(COMMIT_RETRY, again)

    def _ack(self, item: _Incoming) -> None:
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

    def _respond(self, item: _Incoming, response: dict[str, Any]) -> None:
        if self.share_group:
            response["node"] = self.node_id  # in a fleet: which member answered (its topics: B/node/<node>/…)
        self.publish(self.topic("bridge/response/send"), response, qos=1)
        props = getattr(item.message, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        if response_topic:
            out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            correlation = getattr(props, "CorrelationData", None)
            if correlation:
                out.CorrelationData = correlation
            client = self._client
            if client is not None:
                client.publish(response_topic, _encode(response), qos=1, properties=out)

    def _respond_ok(self, item: _Incoming, accepted: Sequence[Accepted], transaction: Any) -> None:
        if transaction is None and not getattr(getattr(item.message, "properties", None), "ResponseTopic", None):
            return
        messages = [{"id": a.id, "to": a.to, "state": a.state, "duplicate": a.duplicate} for a in accepted]
        data: dict[str, Any] = dict(messages[0]) if len(messages) == 1 else {"messages": messages}
        response: dict[str, Any] = {"status": "ok", "data": data}
        if transaction is not None:
            response["transaction"] = transaction
        self._respond(item, response)

    def _reject(self, item: _Incoming, reason: str, transaction: Any) -> None:
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
        self._ack(item)
        response: dict[str, Any] = {"status": "error", "error": reason, "data": {}, "topic": msg.topic}
        if transaction is not None:
            response["transaction"] = transaction
        self._respond(item, response)

    def _fail_safe(self, item: _Incoming, reason: str) -> None:
        """Last resort for a message whose handling failed: audit and acknowledge it."""
        try:
            self._reject(item, reason, None)
        except Exception:
            LOG.exception("refusing the MQTT message on %s failed", item.message.topic)
            self._ack(item)

    def _handler_failed(self, msg: paho.MQTTMessage, exc: BaseException) -> None:
        """A handler of another subscribed topic raised: logged and audited; the message is still
        acknowledged (redelivering it would only fail again)."""
        LOG.error("MQTT handler for %s failed: %s", msg.topic, _unexpected(exc), exc_info=exc)
        try:
            self.store.audit(AUDIT_HANDLER_FAILED, {"topic": msg.topic, "error": _unexpected(exc),
                                                    "payload": excerpt(msg.payload)})
        except Exception:
            LOG.exception("auditing a failed MQTT handler failed")

    def _dispatch_other(self, item: _Incoming) -> None:
        msg = item.message
        handlers = [s.handler for s in self._subscriptions if paho.topic_matches_sub(s.match_filter, msg.topic)]
        if not handlers:
            self._ack(item)
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
            self._ack(item)
            return

        async def finish() -> None:
            for awaitable in awaitables:
                try:
                    await awaitable
                except Exception as exc:
                    self._handler_failed(msg, exc)
            self._ack(item)

        asyncio.ensure_future(finish())

    # --- asyncio thread: events out -------------------------------------------------------------

    def _wake_publisher(self) -> None:
        self._wake.set()

    async def _publisher(self) -> None:
        while not self._stopping:
            # the poll is the safety net for events committed by another process (smsgw send);
            # asyncio.timeout, unlike wait_for in 3.11, never swallows the task's cancellation
            try:
                async with asyncio.timeout(EVENT_POLL):
                    await self._wake.wait()
            except TimeoutError:
                pass
            # While a burst of requests is being committed, their acknowledgements go first and the
            # events follow, at most EVENT_DEFER seconds later.
            deferred_since = time.monotonic()
            while self._drain_scheduled and time.monotonic() - deferred_since < EVENT_DEFER:
                await asyncio.sleep(0.002)
            self._wake.clear()
            try:
                self._pump()
            except Exception as exc:
                self._set_error(f"publishing events failed: {exc}", record=False)
                LOG.exception("publishing store events failed")
                await asyncio.sleep(1.0)
                self._wake.set()

    def _pump(self) -> None:
        client = self._client
        if client is None or not self.connected:
            return
        room = EVENT_WINDOW - len(self._handed)
        if room <= 0:
            return
        events = self.store.events_pending(limit=len(self._handed) + room)
        for event in events:
            if event.id in self._handed:
                continue
            info = client.publish(self.state_topic(event.topic), _encode(event.payload), qos=event.qos,
                                  retain=event.retain)
            if info.rc != paho.MQTT_ERR_SUCCESS and event.qos == 0:
                break  # not connected: QoS 0 is not kept by paho; try again on reconnect
            self._handed.add(event.id)
            self._inflight[info.mid] = (event.id, event.qos)

    def _published_main(self, mid: int, reason_code: Any) -> None:
        if self._client is None:  # stopped: the event stays pending and is published next time
            return
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        event_id, _qos = entry
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            # The broker refused it (e.g. ACL with MQTT 5): it stays pending; log once per event.
            # Marked done all the same, so one refused topic cannot block every later event.
            LOG.error("broker refused event %d: %s", event_id, reason_code)
            self._set_error(f"broker refused event {event_id}: {reason_code}")
            try:
                self.store.audit("mqtt_event_refused", {"event": event_id, "reason": str(reason_code)})
            except Exception:
                LOG.exception("auditing a refused event failed")
        self._done.append(event_id)
        if len(self._done) == 1:
            # PUBACKs that arrive together are marked done in one transaction
            assert self._loop is not None
            self._loop.call_soon(self._flush_done)

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
        self.counters["events_published"] += len(done)
        self._wake.set()
