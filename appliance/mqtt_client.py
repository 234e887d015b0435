"""paho's MQTT client as the bridge uses it: buffered reading of the socket, a read gate, the reason
of a failed connect.

paho-mqtt 2.x reads every packet with three ``recv`` calls (the first byte, the remaining length
byte by byte, then the body) and decodes every MQTT 5 PUBLISH into a ``Properties`` object, a
``MQTTMessage`` and its ``MQTTMessageInfo`` (a ``Condition`` and an ``RLock`` each): under a burst of
requests that was about 40 % of the daemon's CPU time, most of it in the network thread competing
for the GIL with the event loop. ``BridgeClient`` overrides one thing, ``loop_read``: it takes up to
READ_SIZE bytes per ``recv`` into a buffer and cuts every complete packet out of it
(``packet_header`` finds where each ends). Two packets are decoded here:

- a PUBLISH with QoS 0 or 1 (for MQTT 5: without properties, the common case; with properties paho's
  ``Properties`` reads them as before), into an ``MQTTMessage`` without its ``MQTTMessageInfo``
  (paho only uses that for messages it sends) and handed to paho's ``_handle_on_message`` as paho
  does;
- a PUBACK without properties (MQTT 3.1.1's; MQTT 5's success, or a reason code alone such as "No
  matching subscribers"), handed to paho's ``_do_on_publish`` with one shared ``ReasonCode`` per
  code and shared empty ``Properties``.

A received PUBLISH goes straight to ``on_message`` while no ``message_callback_add`` filter is set
(paho would match its topic against them first), with paho's locking and error handling.

Every other packet (CONNACK, SUBACK, QoS 2, a PUBACK with properties, PINGRESP, DISCONNECT ...)
goes to paho's own ``_packet_handle`` through ``_in_packet``, as paho's ``_packet_read`` would hand
it over.

Two methods write many packets at once, each as one entry of paho's outgoing queue (one write to
the socket, one byte to the pipe that wakes paho's network thread, where ``publish`` and ``ack``
each take one per packet):

- ``publish_many``: QoS 1 PUBLISH packets without properties, each kept in ``_out_messages`` exactly
  as ``publish`` keeps it (the PUBACK completes it, paho sends it again after a reconnect, the
  in-flight limit holds the rest back until paho's ``_update_inflight`` sends them);
- ``ack_many``: the PUBACKs of several received messages (manual acknowledgement).

The override relies on paho internals (``_sock_recv``, ``_in_packet``, ``_packet_handle``,
``_handle_on_message``, ``_on_message_filtered``, ``_do_on_publish``, ``_out_messages``,
``_loop_rc_handle``, ``_packet_queue``, ``_mid_generate``, ``_inflight_messages``, the slots of
``MQTTMessage`` and ``MQTTMessageInfo``); ``PAHO_VERSIONS`` lists the releases it was checked against and
``tests/test_mqtt_client.py`` pins each internal, so an upgrade that changes them fails loudly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import __version__ as paho_version
from paho.mqtt.enums import MessageState, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["BUFFERED", "PAHO_VERSIONS", "READ_SIZE", "BridgeClient", "packet_header"]

#: paho-mqtt releases whose internals ``BridgeClient`` was checked against (tests/test_mqtt_client.py).
PAHO_VERSIONS = ("2.2.0",)
#: Whether the installed paho is one of them (else BridgeClient reads as paho does).
BUFFERED = paho_version in PAHO_VERSIONS
#: Bytes asked of the socket per ``recv`` (more when a packet still needs more than this).
READ_SIZE = 65536
#: At most this many bytes per ``recv`` while a big packet is read.
READ_MAX = 1 << 20

_PUBLISH = 0x30
_PUBACK = 0x40
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
_CONN_LOST = MQTTErrorCode.MQTT_ERR_CONN_LOST
_PROTOCOL = MQTTErrorCode.MQTT_ERR_PROTOCOL
_INVALID = MessageState.MQTT_MS_INVALID
_WAIT_FOR_PUBACK = MessageState.MQTT_MS_WAIT_FOR_PUBACK
_QUEUED = MessageState.MQTT_MS_QUEUED
#: The largest remaining length of an MQTT packet.
_MAX_REMAINING = 268_435_455


def packet_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """The fixed header of the MQTT packet at ``data[pos:]``: (its first byte, the start and the end
    of its body; the body may not all be in ``data`` yet); None while the header itself is not
    complete. ValueError for a remaining length longer than four bytes."""
    size = len(data)
    index = pos + 1
    length = 0
    shift = 0
    while True:
        if index >= size:
            return None
        byte = data[index]
        index += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return data[pos], index, index + length
        shift += 7
        if shift == 28:
            raise ValueError("remaining length longer than four bytes")


def remaining_length(length: int) -> bytes:
    """The variable-length encoding of a packet's remaining length ``length``."""
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _empty_packet() -> paho._InPacket:
    return {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}


class BridgeClient(paho.Client):
    """paho's client with buffered reading (module docstring), a read gate and ``connect_error``:
    why its last connection attempt failed (paho's ``on_connect_fail`` gets no exception: a TLS
    failure or a refused TCP connection would be lost)."""

    connect_error: BaseException | None = None
    #: Called by the network thread before each packet it takes from the connection (it may wait:
    #: back-pressure). Packets already in the buffer wait there, the rest in the socket.
    read_gate: Callable[[], None] | None = None
    #: Whether ``loop_read`` reads buffered (the installed paho is one of PAHO_VERSIONS); if not it
    #: is paho's own, behind the read gate.
    buffered: bool = BUFFERED

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""  # received and not handled yet: the beginning of a packet
        self._read_chunks: list[bytes] = []  # the pieces of a packet bigger than READ_SIZE
        self._read_have = 0  # bytes in _read_chunks
        self._read_need = 0  # bytes of the packet begun in _read_chunks, from its first byte
        self._puback_reasons: dict[int, ReasonCode] = {}  # PUBACK reason code -> one ReasonCode each
        self._puback_properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
        self._message_info = paho.MQTTMessageInfo(0)  # shared by received messages, never waited on
        self._read_time = 0.0  # when the packets being handled were received
        self._log_publish = False  # paho's debug line per PUBLISH is wanted (a logger or on_log for it)
        # shared by the messages publish_many keeps: each MQTTMessageInfo of paho's has its own
        # Condition and RLock; nobody waits on these
        self._batch_condition = threading.Condition()

    def reconnect(self) -> MQTTErrorCode:
        self._read_buffer, self._read_chunks, self._read_have, self._read_need = b"", [], 0, 0
        try:
            result = super().reconnect()
        except (OSError, ValueError) as exc:
            self.connect_error = exc
            raise
        self.connect_error = None
        return result

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """One ``recv`` of up to READ_SIZE bytes, then every complete packet in the buffer (paho's
        ``select`` only wakes for bytes in the socket: none may be left in the buffer)."""
        gate = self.read_gate
        if not self.buffered:
            if gate is not None:
                gate()
            return super().loop_read(max_packets)
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if gate is not None:
            gate()
        data = self._receive()
        if isinstance(data, MQTTErrorCode):
            return self._loop_rc_handle(data) if data > 0 else _SUCCESS
        return self._handle_buffer(data, gate)

    def _receive(self) -> bytes | MQTTErrorCode:
        """One ``recv``: the bytes to handle, starting with a packet's first byte (MQTT_ERR_AGAIN:
        none yet)."""
        missing = self._read_need - self._read_have
        try:
            chunk = self._sock_recv(min(max(READ_SIZE, missing), READ_MAX))
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # a TimeoutError too
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return _CONN_LOST
        if not chunk:
            return _CONN_LOST
        now = paho.time_func()
        with self._msgtime_mutex:
            self._last_bytes_received = now
        self._read_time = now
        if self._read_need:
            self._read_chunks.append(chunk)
            self._read_have += len(chunk)
            if self._read_have < self._read_need:
                return MQTTErrorCode.MQTT_ERR_AGAIN  # joined once it is all here
            data = b"".join(self._read_chunks)
            self._read_chunks, self._read_have, self._read_need = [], 0, 0
            return data
        data = self._read_buffer + chunk if self._read_buffer else chunk
        self._read_buffer = b""
        return data

    def _handle_buffer(self, data: bytes, gate: Callable[[], None] | None) -> MQTTErrorCode:
        """Handle every complete packet of ``data`` and keep the beginning of the next one."""
        self._log_publish = self._debug_logged()
        pos = 0
        size = len(data)
        while pos < size:
            try:
                header = packet_header(data, pos)
            except ValueError as exc:
                self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
                return self._loop_rc_handle(_PROTOCOL)
            if header is None or header[2] > size:  # the beginning of a packet: kept for the next read
                if header is not None and header[2] - pos > READ_SIZE:
                    self._read_chunks, self._read_have, self._read_need = [data[pos:]], size - pos, header[2] - pos
                else:
                    self._read_buffer = data[pos:]
                break
            if pos and gate is not None:
                gate()
            command, start, pos = header
            try:
                rc = self._handle_packet(command, data, start, pos)
            except MalformedPacket as exc:
                self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
                rc = _PROTOCOL
            if rc > 0:
                return self._loop_rc_handle(rc)
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
        return _SUCCESS

    def _handle_packet(self, command: int, data: bytes, start: int, end: int) -> MQTTErrorCode:
        """Handle one complete packet (``data[start:end]`` its body): the module docstring."""
        kind = command & 0xF0
        if kind == _PUBLISH and command & 0x06 != 0x04:  # QoS 0 or 1
            message = self._decode_publish(command, data, start, end)
            if message is not None:
                self._deliver(message)
                if message.qos == 0 or self._manual_ack:
                    return _SUCCESS
                return self._send_puback(message.mid)
        elif kind == _PUBACK and (end - start == 2 or (end - start == 3 and self._protocol == MQTTProtocolVersion.MQTTv5)):
            reason = self._puback_reason(data[start + 2] if end - start == 3 else 0)
            if reason is not None:
                mid = (data[start] << 8) | data[start + 1]
                with self._out_message_mutex:
                    if mid in self._out_messages:
                        return self._do_on_publish(mid, reason, self._puback_properties)
                return _SUCCESS
        # paho's own handling, handed over as its _packet_read does
        packet = _empty_packet()
        packet["command"] = command
        packet["have_remaining"] = 1
        packet["remaining_length"] = end - start
        packet["packet"] = bytearray(data[start:end])
        self._in_packet = packet
        try:
            return self._packet_handle()
        finally:
            self._in_packet = _empty_packet()

    def _debug_logged(self) -> bool:
        """Whether paho's debug lines go anywhere (``on_log``, or a logger enabled for DEBUG)."""
        logger = self._logger
        return self._on_log is not None or (logger is not None and logger.isEnabledFor(logging.DEBUG))

    def _deliver(self, message: paho.MQTTMessage) -> None:
        """paho's ``_handle_on_message``, without matching the topic against ``message_callback_add``
        filters while there are none."""
        if self._on_message_filtered._root._children:
            self._handle_on_message(message)
            return
        with self._callback_mutex:
            on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def publish_many(self, messages: Sequence[tuple[str, bytes, bool]]) -> list[int] | None:
        """Publish every ``(topic, payload, retain)`` with QoS 1 as ``publish`` would, in one write
        (module docstring); their message ids, in order. None, with nothing published, when paho's
        own ``publish`` must do it: not connected (paho keeps the messages for the reconnect), or
        an installed paho this was not checked against. ValueError as ``publish`` raises it."""
        if not self.buffered or self._sock is None:
            return None
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        encoded = []
        for topic, payload, retain in messages:
            topic_bytes = topic.encode("utf-8")
            self._raise_for_invalid_topic(topic_bytes)
            if not topic_bytes and not v5:
                raise ValueError("Invalid topic.")
            length = 2 + len(topic_bytes) + 2 + (1 if v5 else 0) + len(payload)
            if length > _MAX_REMAINING:
                raise ValueError("Payload too large.")
            encoded.append((topic_bytes, payload, retain, length))
        mids: list[int] = []
        packet = bytearray()
        now = paho.time_func()
        log = self._debug_logged()
        with self._out_message_mutex:
            for topic_bytes, payload, retain, length in encoded:
                mid = self._mid_generate()
                message = paho.MQTTMessage.__new__(paho.MQTTMessage)
                message._topic = topic_bytes
                message.mid = mid
                message.qos = 1
                message.dup = False
                message.retain = retain
                message.payload = payload
                message.properties = None
                message.timestamp = now
                info = paho.MQTTMessageInfo.__new__(paho.MQTTMessageInfo)
                info.mid = mid
                info.rc = _SUCCESS
                info._published = False
                info._condition = self._batch_condition
                info._iterpos = 0
                message.info = info
                self._out_messages[mid] = message
                mids.append(mid)
                if self._max_inflight_messages and self._inflight_messages >= self._max_inflight_messages:
                    message.state = _QUEUED  # sent by paho's _update_inflight when a PUBACK makes room
                    continue
                self._inflight_messages += 1
                message.state = _WAIT_FOR_PUBACK
                if log:
                    self._easy_log(paho.MQTT_LOG_DEBUG, "Sending PUBLISH (d0, q1, r%d, m%d), '%s', ... (%d bytes)",
                                   retain, mid, topic_bytes, len(payload))
                packet.append(_PUBLISH | 0x02 | (1 if retain else 0))
                packet += remaining_length(length)
                packet += len(topic_bytes).to_bytes(2, "big")
                packet += topic_bytes
                packet += mid.to_bytes(2, "big")
                if v5:
                    packet.append(0)  # no properties
                packet += payload
            if packet:
                self._packet_queue(_PUBLISH, packet, mids[0], 1)
        return mids

    def ack_many(self, mids: Sequence[int]) -> None:
        """``ack(mid, 1)`` for every mid, in one write (module docstring)."""
        if not self.buffered:
            for mid in mids:
                self.ack(mid, 1)
            return
        if not mids or not self._manual_ack:
            return
        if self._debug_logged():
            for mid in mids:
                self._easy_log(paho.MQTT_LOG_DEBUG, "Sending PUBACK (Mid: %d)", mid)
        self._packet_queue(_PUBACK, b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids), mids[0], 1)

    def _update_inflight(self) -> MQTTErrorCode:
        """paho's, called after every PUBACK, scans every message it keeps for one queued behind the
        in-flight limit: when each of them is in flight there is none, and no scan."""
        if self.buffered and len(self._out_messages) <= self._inflight_messages:
            return _SUCCESS
        return super()._update_inflight()

    def _puback_reason(self, code: int) -> ReasonCode | None:
        """The PUBACK reason code ``code`` (one shared object per code); None for one paho does not
        know (its own decoding says so)."""
        reason = self._puback_reasons.get(code)
        if reason is None:
            reason = ReasonCode(PacketTypes.PUBACK)
            try:
                reason.unpack(bytes((code,)))
            except Exception:
                return None
            self._puback_reasons[code] = reason
        return reason

    def _decode_publish(self, command: int, data: bytes, start: int, end: int) -> paho.MQTTMessage | None:
        """The QoS 0 or 1 PUBLISH ``data[start:end]`` as paho's ``_handle_publish`` decodes it;
        None for one paho must read itself (its errors: too short, an empty topic in MQTT 3.1.1,
        broken properties)."""
        qos = (command & 0x06) >> 1
        topic_start = start + 2
        topic_end = topic_start + ((data[start] << 8) | data[start + 1]) if topic_start <= end else end + 1
        payload_start = topic_end + 2 if qos else topic_end
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if payload_start + (1 if v5 else 0) > end or (topic_end == topic_start and not v5):
            return None
        mid = (data[topic_end] << 8) | data[topic_end + 1] if qos else 0
        properties = None
        if v5:
            if data[payload_start]:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                try:
                    _props, length = properties.unpack(data[payload_start:end])  # type: ignore[no-untyped-call]
                except Exception:
                    return None
                payload_start += length
                if payload_start > end:
                    return None
            else:
                payload_start += 1
        message = paho.MQTTMessage.__new__(paho.MQTTMessage)
        message._topic = data[topic_start:topic_end]
        message.mid = mid
        message.qos = qos
        message.dup = bool(command & 0x08)
        message.retain = bool(command & 0x01)
        message.payload = data[payload_start:end]
        message.properties = properties
        message.state = _INVALID
        message.timestamp = self._read_time
        message.info = self._message_info
        if self._log_publish:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received PUBLISH (d%d, q%d, r%d, m%d), %r, ...  (%d bytes)",
                           message.dup, qos, message.retain, mid, message._topic, len(message.payload))
        return message
