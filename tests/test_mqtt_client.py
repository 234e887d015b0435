"""BridgeClient (appliance/mqtt_client.py): paho's client reading its socket buffered.

The paho internals the override relies on are pinned here, so a paho release that changes them fails
these tests before it fails the bridge; the reading itself is checked against a real mosquitto, side
by side with paho's own client on the same stream: packets split across reads, big payloads, MQTT 5
properties, QoS 0/1/2, both protocol versions, PUBACKs with and without a reason code.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from mosquitto import Broker
from paho.mqtt import __version__ as paho_version
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from waiting import wait_until

from appliance import mqtt_client
from appliance.mqtt_client import PAHO_VERSIONS, BridgeClient, packet_header

pytest_plugins = ["mosquitto"]

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311
_ids = itertools.count()


# --- the paho internals the override uses -------------------------------------------------------


def test_the_installed_paho_is_a_release_the_override_was_checked_against() -> None:
    assert paho_version in PAHO_VERSIONS, (
        f"paho-mqtt {paho_version}: check BridgeClient (appliance/mqtt_client.py) against its _packet_read, "
        f"_packet_handle, _handle_publish and _handle_pubackcomp, then add it to PAHO_VERSIONS")
    assert mqtt_client.BUFFERED


@pytest.mark.parametrize(("method", "parameters"), [
    ("loop_read", ["self", "max_packets"]),
    ("_sock_recv", ["self", "bufsize"]),
    ("_packet_handle", ["self"]),
    ("_handle_on_message", ["self", "message"]),
    ("_do_on_publish", ["self", "mid", "reason_code", "properties"]),
    ("_loop_rc_handle", ["self", "rc"]),
    ("_send_puback", ["self", "mid"]),
    ("_easy_log", ["self", "level", "fmt", "args"]),
    ("reconnect", ["self"]),
    ("_update_inflight", ["self"]),
    ("_packet_queue", ["self", "command", "packet", "mid", "qos", "info"]),
    ("_mid_generate", ["self"]),
    ("_raise_for_invalid_topic", ["topic"]),
    ("ack", ["self", "mid", "qos"]),
])
def test_paho_methods_the_override_calls_keep_their_signatures(method: str, parameters: list[str]) -> None:
    assert list(inspect.signature(getattr(paho.Client, method)).parameters) == parameters


def test_paho_state_the_override_reads_is_where_it_was() -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    assert set(client._in_packet) == {"command", "have_remaining", "remaining_count", "remaining_mult",
                                      "remaining_length", "packet", "to_process", "pos"}
    for name in ("_out_messages", "_out_message_mutex", "_msgtime_mutex", "_last_bytes_received", "_manual_ack",
                 "_protocol", "_logger", "_on_log", "_sock", "_inflight_messages", "_max_inflight_messages",
                 "_callback_mutex", "_in_callback_mutex", "_userdata", "suppress_exceptions", "_out_packet"):
        assert hasattr(client, name), name
    assert set(paho.MQTTMessage.__slots__) == {"_topic", "dup", "info", "mid", "payload", "properties", "qos",
                                               "retain", "state", "timestamp"}
    assert set(paho.MQTTMessageInfo.__slots__) == {"_condition", "_iterpos", "_published", "mid", "rc"}
    assert not client._on_message_filtered._root._children  # no message_callback_add filter
    client.message_callback_add("a/#", lambda *args: None)
    assert client._on_message_filtered._root._children
    # _handle_on_message hands a message to on_message alone when no filter matches, as _deliver does
    handle = inspect.getsource(paho.Client._handle_on_message)
    assert "self._on_message_filtered.iter_match(message.topic)" in handle and "on_message = self.on_message" in handle
    assert callable(paho.time_func) and paho.MQTT_LOG_DEBUG and paho.MQTT_LOG_ERR
    # paho reads a packet in _packet_read, called only by loop_read: the override replaces both
    source = inspect.getsource(paho.Client)
    assert source.count("self._packet_read()") == 1
    assert "rc = self._packet_read()" in inspect.getsource(paho.Client.loop_read)


# --- framing and decoding, against paho's own decoder ---------------------------------------------


@pytest.mark.parametrize(("data", "pos", "expected"), [
    (b"\x30\x00", 0, (0x30, 2, 2)),
    (b"\x30\x05abcde", 0, (0x30, 2, 7)),
    (b"\x30\x05abc", 0, (0x30, 2, 7)),  # the body is not all here yet
    (b"\x30", 0, None),  # nor the remaining length
    (b"\x30\x80", 0, None),
    (b"xx\x32\x80\x01", 2, (0x32, 5, 5 + 128)),
    (b"\x30\xff\xff\xff\x7f", 0, (0x30, 5, 5 + 268_435_455)),  # the longest MQTT packet
])
def test_packet_header_finds_where_a_packet_ends(data: bytes, pos: int, expected: tuple[int, int, int] | None) -> None:
    assert packet_header(data, pos) == expected


def test_a_remaining_length_of_five_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="four bytes"):
        packet_header(b"\x30\xff\xff\xff\xff\x01", 0)


def _publish_body(topic: bytes, payload: bytes, mid: int | None, properties: bytes | None) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if mid is not None:
        body += mid.to_bytes(2, "big")
    if properties is not None:
        body += properties
    return body + payload


def _properties(**values: Any) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


WITH_PROPERTIES = _properties(ResponseTopic="replies/me", CorrelationData=b"\x00\x01",
                              UserProperty=[("source", "kitchen"), ("source", "hall")], ContentType="application/json")

PUBLISH_BODIES = [  # (first byte, body, protocol)
    (0x30, _publish_body(b"t/a", b"qos 0", None, None), V311),
    (0x32, _publish_body(b"t/a", b"qos 1", 7, None), V311),
    (0x3B, _publish_body(b"t/a", b"dup, qos 1, retain", 65535, None), V311),
    (0x32, _publish_body(b"t/a", b"", 1, None), V311),
    (0x32, _publish_body("t/ü".encode(), "ü".encode() * 1000, 2, None), V311),
    (0x30, _publish_body(b"t/a", b"qos 0", None, b"\x00"), V5),
    (0x32, _publish_body(b"t/a", b"qos 1", 9, b"\x00"), V5),
    (0x32, _publish_body(b"t/a", b"props", 9, WITH_PROPERTIES.pack()), V5),
    (0x32, _publish_body(b"", b"topic alias only", 9, _properties(TopicAlias=3).pack()), V5),
    (0x32, _publish_body(b"t/a", b"", 9, b"\x00"), V5),
    # broken packets: paho's own decoding says what is wrong
    (0x30, _publish_body(b"", b"empty topic", None, None), V311),
    (0x32, b"\x00", V311),
    (0x32, b"\x00\x09t/a", V311),
    (0x32, b"\x00\x03t/a\x00\x01", V5),  # no property length
    (0x32, b"\x00\x03t/a\x00\x01\x05\x01", V5),  # properties cut short
]


@pytest.mark.parametrize(("command", "body", "protocol"), PUBLISH_BODIES)
def test_a_publish_is_decoded_as_paho_decodes_it(command: int, body: bytes, protocol: MQTTProtocolVersion) -> None:
    client = BridgeClient(CallbackAPIVersion.VERSION2, protocol=protocol)
    data = b"junk" + body + b"next packet"  # decoded in place, between other bytes
    message = client._decode_publish(command, data, 4, 4 + len(body))
    try:
        expected = _packet.decode_publish(command, body, protocol)
    except MalformedPacket:
        assert message is None  # paho's _packet_handle then says what is wrong
        return
    assert message is not None
    assert (message._topic, message.payload, message.mid, message.qos, message.dup, message.retain) == (
        expected.topic, expected.payload, expected.mid, expected.qos, expected.dup, expected.retain)
    assert type(message._topic) is bytes and type(message.payload) is bytes
    expected_properties = expected.properties.json() if expected.properties is not None else {}
    assert (message.properties.json() if message.properties is not None else {}) == expected_properties
    if protocol == V5 and not expected_properties:
        assert message.properties is None  # no Properties object for a PUBLISH without any


# --- against a real mosquitto ----------------------------------------------------------------------


class Receiver:
    """A client subscribed to ``t/#`` with QoS 2 that records what it receives (and the gate's calls)."""

    def __init__(self, broker: Broker, client: paho.Client, *, manual_ack: bool = False) -> None:
        self.client = client
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.gate_calls = 0
        if isinstance(client, BridgeClient):
            client.read_gate = self._gate
        client.manual_ack_set(manual_ack)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *args: self.subscribed.set()
        client.on_message = self._on_message
        client.connect(broker.host, broker.port, 30)
        client.loop_start()
        assert self.subscribed.wait(10), "not subscribed"

    def _gate(self) -> None:
        self.gate_calls += 1

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        if client.protocol == paho.MQTTv5:
            client.subscribe("t/#", options=SubscribeOptions(qos=2))
        else:
            client.subscribe("t/#", qos=2)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(message)
        if client._manual_ack:
            client.ack(message.mid, message.qos)

    def received(self) -> list[tuple[Any, ...]]:
        with self.lock:
            return [(m.topic, m.payload, m.qos, m.retain,
                     m.properties.json() if m.properties is not None else {}) for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _client(kind: str, protocol: int) -> paho.Client:
    cls = paho.Client if kind == "paho" else BridgeClient
    client = cls(CallbackAPIVersion.VERSION2, client_id=f"{kind}-{next(_ids)}", protocol=protocol)
    if kind == "unbuffered":
        assert isinstance(client, BridgeClient)
        client.buffered = False
    return client


@pytest.fixture
def clients() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def _publish_all(broker: Broker, protocol: int, messages: list[tuple[str, bytes, int, Properties | None]]) -> None:
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{next(_ids)}", protocol=protocol)
    publisher.connect(broker.host, broker.port, 30)
    publisher.loop_start()
    try:
        infos = [publisher.publish(topic, payload, qos=qos, properties=props if protocol == paho.MQTTv5 else None)
                 for topic, payload, qos, props in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _stream(protocol: int) -> list[tuple[str, bytes, int, Properties | None]]:
    big = bytes(range(256)) * 8192  # 2 MiB: more than READ_MAX per recv
    messages: list[tuple[str, bytes, int, Properties | None]] = []
    for n in range(60):
        qos = n % 3
        props = WITH_PROPERTIES if n % 5 == 0 else None
        payload = b"" if n == 7 else (f"message {n} ".encode() * (n * 7))
        messages.append((f"t/{n}", payload, qos, props))
    messages += [("t/big/1", big, 1, WITH_PROPERTIES), ("t/big/0", big[:70000], 0, None), ("t/big/2", big, 2, None),
                 ("t/ü/end", "ü".encode(), 1, None)]
    return messages


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
@pytest.mark.parametrize(("read_size", "read_max"), [(65536, 1 << 20), (7, 65536), (1, 4096)])
def test_a_stream_reads_as_paho_reads_it(mosquitto: Broker, clients: list[Receiver], monkeypatch: pytest.MonkeyPatch,
                                         protocol: int, read_size: int, read_max: int) -> None:
    """QoS 0/1/2, MQTT 5 properties, empty and 2 MiB payloads; with 1-byte and 7-byte reads every packet
    is split across reads, and a 4 KiB READ_MAX reads a big payload in 512 pieces."""
    monkeypatch.setattr(mqtt_client, "READ_SIZE", read_size)
    monkeypatch.setattr(mqtt_client, "READ_MAX", read_max)
    paho_side = Receiver(mosquitto, _client("paho", protocol))
    buffered = Receiver(mosquitto, _client("buffered", protocol), manual_ack=True)
    unbuffered = Receiver(mosquitto, _client("unbuffered", protocol), manual_ack=True)
    clients += [paho_side, buffered, unbuffered]
    stream = _stream(protocol)
    _publish_all(mosquitto, protocol, stream)
    for receiver in clients:
        wait_until(lambda r=receiver: len(r.received()) >= len(stream), timeout=60, what="every message")  # type: ignore[misc]
    expected = paho_side.received()
    assert sorted(expected) == sorted((topic, payload, qos, False, props.json() if props and protocol == paho.MQTTv5 else {})
                                      for topic, payload, qos, props in stream)
    # in the order paho hands them over (a QoS 2 message on its PUBREL: the order across QoS levels varies)
    assert sorted(buffered.received()) == sorted(expected)
    assert sorted(unbuffered.received()) == sorted(expected)
    assert [m for m in buffered.received() if m[2] == 1] == [m for m in expected if m[2] == 1]
    assert buffered.gate_calls >= len(stream)  # before every packet taken (and before every recv)
    # QoS 0 and 1 came the short way, QoS 2 through paho's own _handle_publish
    short = [m for m in buffered.messages if m.info is buffered.client._message_info]  # type: ignore[attr-defined]
    assert {m.qos for m in short} == {0, 1} and len(short) == sum(1 for m in stream if m[2] < 2)


def test_a_retained_message_keeps_its_retain_flag(mosquitto: Broker, clients: list[Receiver]) -> None:
    mosquitto.pub("t/kept", "retained", retain=True)
    receiver = Receiver(mosquitto, _client("buffered", paho.MQTTv5))
    clients.append(receiver)
    wait_until(receiver.received, what="the retained message")
    assert receiver.received() == [("t/kept", b"retained", 1, True, {})]


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_pubacks_and_pubcomps_complete_what_the_client_published(mosquitto: Broker, clients: list[Receiver],
                                                                 protocol: int) -> None:
    """A PUBACK without a reason code takes the short way; MQTT 5's "No matching subscribers" (a reason
    code: three bytes) and QoS 2's PUBREC/PUBCOMP go through paho."""
    receiver = Receiver(mosquitto, _client("buffered", protocol))
    clients.append(receiver)
    acks: list[tuple[int, str]] = []
    receiver.client.on_publish = lambda client, userdata, mid, reason, props: acks.append((mid, str(reason)))
    infos = [receiver.client.publish(f"t/{n}", b"x", qos=1) for n in range(50)]
    infos += [receiver.client.publish("nobody/listens", b"x", qos=1), receiver.client.publish("t/2", b"x", qos=2)]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()
    reasons = dict(acks)
    assert len(reasons) == len(infos)
    assert reasons[infos[-2].mid] == ("No matching subscribers" if protocol == paho.MQTTv5 else "Success")
    assert {reasons[info.mid] for info in infos[:50]} == {"Success"}
    wait_until(lambda: len(receiver.received()) == 51, what="its own messages back")


def test_a_lost_connection_drops_what_was_buffered(mosquitto: Broker, clients: list[Receiver]) -> None:
    """A reconnect starts from an empty buffer: half a packet of the old connection is not glued to the new."""
    client = _client("buffered", paho.MQTTv311)
    assert isinstance(client, BridgeClient)
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    client._read_buffer = b"\x30\x7f half a packet"
    connects = receiver.subscribed
    connects.clear()
    mosquitto.restart()
    assert connects.wait(30), "not subscribed again"
    assert client._read_buffer == b""
    mosquitto.pub("t/after", "after the restart", qos=1)
    wait_until(receiver.received, what="a message on the new connection")
    assert receiver.received() == [("t/after", b"after the restart", 1, False, {})]


# --- what a broker should not send ---------------------------------------------------------------


class ScriptedBroker:
    """A TCP listener that accepts one MQTT 3.1.1 client, answers its CONNECT and then sends ``script``;
    ``closed`` is set once the client has closed the connection."""

    def __init__(self, script: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.listener.close()  # one connection: a reconnect is refused
        with conn:
            conn.settimeout(30)
            data = b""
            while (header := packet_header(data, 0)) is None or header[2] > len(data):  # the CONNECT
                data += conn.recv(4096)
            conn.sendall(b"\x20\x02\x00\x00" + self.script)  # CONNACK: accepted
            while conn.recv(4096):
                pass
        self.closed.set()


@pytest.mark.parametrize("kind", ["paho", "buffered"])
@pytest.mark.parametrize(("script", "received", "dropped"), [
    (b"\x40\x02\x12\x34" + b"\x30\x05\x00\x01tok", [("t", b"ok")], False),  # a PUBACK for nothing sent: ignored
    (b"\x30\x05\x00\x01tok" + b"\x30\xff\xff\xff\xff\x01", [("t", b"ok")], True),  # a remaining length of 5 bytes
    (b"\x30\x05\x00\x01tok" + b"\x32\x01\x00", [("t", b"ok")], True),  # a PUBLISH too short for its packet id
    (b"\x30\x03\x00\x00x", [], True),  # an empty topic (MQTT 3.1.1)
    (b"\xf0\x00", [], True),  # an unknown packet type
])
def test_a_broken_stream_is_handled_as_paho_handles_it(kind: str, script: bytes, received: list[tuple[str, bytes]],
                                                       dropped: bool) -> None:
    broker = ScriptedBroker(script)
    client = _client(kind, paho.MQTTv311)
    messages: list[tuple[str, bytes]] = []
    disconnected = threading.Event()
    client.on_message = lambda c, u, m: messages.append((m.topic, m.payload))
    client.on_disconnect = lambda *args: disconnected.set()
    client.connect("127.0.0.1", broker.port, 30)
    client.loop_start()
    try:
        wait_until(lambda: messages == received and (not dropped or (broker.closed.is_set() and disconnected.is_set())),
                   what=f"{received}, dropped: {dropped}")
        assert disconnected.is_set() == dropped
    finally:
        client.disconnect()
        client.loop_stop()


def test_paho_debug_logging_names_each_publish(mosquitto: Broker, clients: list[Receiver],
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = _client("buffered", paho.MQTTv5)
    client.enable_logger(logging.getLogger("test.paho"))
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    with caplog.at_level(logging.DEBUG, logger="test.paho"):
        mosquitto.pub("t/logged", "x", qos=1)
        wait_until(receiver.received, what="the message")
    assert "Received PUBLISH (d0, q1, r0, m1), b't/logged', ...  (1 bytes)" in caplog.text


def test_messages_queued_behind_the_in_flight_limit_are_all_sent(mosquitto: Broker, clients: list[Receiver]) -> None:
    """The scan paho makes after a PUBACK is skipped only while nothing waits behind the limit."""
    client = _client("buffered", paho.MQTTv5)
    client.max_inflight_messages_set(5)
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    infos = [client.publish(f"t/{n}", str(n).encode(), qos=1 + n % 2) for n in range(60)]
    for info in infos:
        info.wait_for_publish(10)
    assert all(info.is_published() for info in infos)
    wait_until(lambda: len(receiver.received()) == 60, what="all 60 back")
    assert client._out_messages == {} and client._inflight_messages == 0


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_messages_published_together_are_each_completed_by_their_puback(
        mosquitto: Broker, clients: list[Receiver], protocol: int) -> None:
    """publish_many: one queued write for the batch; each message kept as publish keeps it until its
    PUBACK; those beyond the in-flight limit are sent as PUBACKs make room."""
    client = _client("buffered", protocol)
    assert isinstance(client, BridgeClient)
    client.max_inflight_messages_set(7)
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    acks: list[int] = []
    client.on_publish = lambda c, userdata, mid, reason, props: acks.append(mid)
    queued_before = len(client._out_packet)
    with client._out_message_mutex:  # the network thread waits: what was queued can be seen
        mids = client.publish_many([(f"t/{n}", f"m{n}".encode() * n, n == 3) for n in range(40)])
        assert mids is not None and len(set(mids)) == 40
        assert len(client._out_packet) - queued_before <= 1
        assert client._inflight_messages <= 7
    wait_until(lambda: len(receiver.received()) >= 40, timeout=20, what="all 40 back")
    wait_until(lambda: len(acks) == 40, what="every PUBACK")
    assert sorted(acks) == sorted(mids)
    assert [(topic, payload) for topic, payload, *_ in receiver.received()] == [
        (f"t/{n}", f"m{n}".encode() * n) for n in range(40)]
    assert client._out_messages == {} and client._inflight_messages == 0


def test_publish_many_leaves_a_disconnected_client_to_paho() -> None:
    client = BridgeClient(CallbackAPIVersion.VERSION2, client_id="offline", protocol=paho.MQTTv5)
    assert client.publish_many([("t/a", b"x", False)]) is None
    assert client._out_messages == {}
    with pytest.raises(ValueError, match="wildcards"):
        client._sock = socket.socket()  # "connected" for the checks before anything is queued
        try:
            client.publish_many([("t/#", b"x", False)])
        finally:
            client._sock.close()
            client._sock = None


def test_acks_written_together_are_one_packet_of_pubacks(monkeypatch: pytest.MonkeyPatch) -> None:
    client = BridgeClient(CallbackAPIVersion.VERSION2, client_id="acks", protocol=paho.MQTTv5)
    client.manual_ack_set(True)
    queued: list[tuple[int, bytes]] = []
    monkeypatch.setattr(client, "_packet_queue", lambda command, packet, mid, qos, info=None: queued.append(
        (command, bytes(packet))))
    client.ack_many([1, 0x1234, 65535])
    assert queued == [(0x40, b"\x40\x02\x00\x01" + b"\x40\x02\x12\x34" + b"\x40\x02\xff\xff")]


def test_a_message_callback_filter_is_still_matched(mosquitto: Broker, clients: list[Receiver]) -> None:
    client = _client("buffered", paho.MQTTv5)
    filtered: list[str] = []
    client.message_callback_add("t/filtered/#", lambda c, userdata, message: filtered.append(message.topic))
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    mosquitto.pub("t/filtered/1", "x", qos=1)
    mosquitto.pub("t/plain", "y", qos=1)
    wait_until(lambda: filtered and receiver.received(), what="both messages")
    assert filtered == ["t/filtered/1"] and [m[0] for m in receiver.received()] == ["t/plain"]


def test_messages_published_together_are_sent_again_after_a_reconnect(mosquitto: Broker,
                                                                     clients: list[Receiver]) -> None:
    """Kept in _out_messages as publish keeps them: a connection lost before their packet was written
    (paho drops its queued packets on reconnect) sends them again, and their PUBACKs complete them."""
    client = _client("buffered", paho.MQTTv5)
    assert isinstance(client, BridgeClient)
    receiver = Receiver(mosquitto, client)
    clients.append(receiver)
    acks: list[int] = []
    client.on_publish = lambda c, userdata, mid, reason, props: acks.append(mid)
    client.loop_stop()  # nothing is written from here on
    with client._in_callback_mutex:  # (without the thread, paho writes at once unless in a callback)
        mids = client.publish_many([(f"t/again/{n}", b"x", False) for n in range(10)])
    assert len(client._out_packet) == 1  # one packet for the ten, not written
    assert mids is not None and all(client._out_messages[mid].state == paho.mqtt_ms_wait_for_puback for mid in mids)
    client._sock_close()  # the connection is lost with the batch still queued
    client.reconnect()
    client.loop_start()
    wait_until(lambda: sorted(acks) == sorted(mids), timeout=15, what="every message acknowledged")
    assert client._out_messages == {} and client._inflight_messages == 0
