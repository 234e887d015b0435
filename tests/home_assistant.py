"""What Home Assistant does with our discovery messages, as its source says, for the tests.

Sources read (home-assistant/core, the current MQTT entity platform, not the removed legacy
notify service):

- ``homeassistant/components/mqtt/notify.py`` (commit 78247e60bf4b2fdbe338fcf26c4bac931efd7fd6, and
  the later version with ``async_publish_with_config`` and ``probatio``, unchanged in this):
  ``MqttNotify.async_send_message(self, message, title=None)`` renders
  ``self._command_template(message)``; ``title`` is ignored. Its ``PLATFORM_SCHEMA_MODERN``:
  ``command_topic`` (required, ``valid_publish_topic``), ``command_template``, ``name``, ``retain``,
  plus ``MQTT_BASE_SCHEMA`` (``qos``, ``encoding``) and the entity common schema.
- ``homeassistant/components/mqtt/models.py`` (commit 01732e5029e2e9b3b27b642be579b9caea1523d4),
  ``MqttCommandTemplate.async_render(value, variables=None)``: the variables are ``{"value": value}``
  and, for an entity, ``entity_id``, ``name`` and ``this`` (a ``TemplateStateFromEntityId``);
  nothing else (notify passes no ``variables``). Rendered with ``parse_result=False`` (a string).
- ``homeassistant/helpers/template``: ``TemplateEnvironment`` is a Jinja2
  ``ImmutableSandboxedEnvironment``; Jinja2's built-in filters (``tojson``, ``trim``) are kept.
- ``homeassistant/components/mqtt/schemas.py`` (commit c6ca7f5f416326437e8e652a5623aa5eff7b3d00 and
  the current one, which adds ``default_entity_id`` beside the deprecated ``object_id``: HA 2025.10
  warns "Replace the "object_id" option with "default_entity_id": "sensor.…"", ignored from 2026.4):
  ``MQTT_ENTITY_COMMON_SCHEMA`` = availability schemas + ``device``, ``origin``,
  ``enabled_by_default``, ``entity_category``, ``icon``, ``json_attributes_topic``,
  ``json_attributes_template``, ``unique_id``; ``MQTT_ENTITY_DEVICE_INFO_SCHEMA`` (at least one of
  ``identifiers``/``connections``); ``MQTT_AVAILABILITY_LIST_SCHEMA`` (``availability`` entries need
  ``topic``; ``availability_mode`` one of ``all``, ``any``, ``latest``).
- ``sensor.py``, ``binary_sensor.py``, ``event.py`` of the same directory for their own keys and
  required ``state_topic`` (and ``event_types`` for events); ``abbreviations.py`` (commit
  911803bfd294b1ba1f541af01f6d37666ae4e384) for the short forms, which we do not use.

The discovery schemas drop unknown keys silently (``extra=vol.REMOVE_EXTRA``), so an unknown key
is a setting Home Assistant never sees: ``validate`` treats it as an error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

AVAILABILITY = {"availability", "availability_mode", "availability_template", "availability_topic",
                "payload_available", "payload_not_available"}
COMMON = AVAILABILITY | {"device", "origin", "enabled_by_default", "entity_category", "entity_picture", "icon",
                         "json_attributes_topic", "json_attributes_template", "default_entity_id", "object_id",
                         "unique_id", "qos", "encoding", "name"}
PLATFORM_KEYS: dict[str, set[str]] = {
    "sensor": {"state_topic", "value_template", "device_class", "expire_after", "force_update",
               "last_reset_value_template", "options", "suggested_display_precision", "state_class",
               "unit_of_measurement"},
    "binary_sensor": {"state_topic", "value_template", "device_class", "expire_after", "force_update",
                      "off_delay", "payload_off", "payload_on"},
    "event": {"state_topic", "value_template", "device_class", "event_types"},
    "notify": {"command_topic", "command_template", "retain"},
    "button": {"command_topic", "command_template", "device_class", "payload_press", "retain"},
}
REQUIRED: dict[str, set[str]] = {
    "sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "event": {"state_topic", "event_types"},
    "notify": {"command_topic"}, "button": {"command_topic"},
}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
               "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
SENSOR_DEVICE_CLASSES = {"signal_strength", "timestamp", None}
STATE_CLASSES = {"measurement", "total", "total_increasing", None}


def valid_publish_topic(topic: str) -> bool:
    """HA's ``util.valid_publish_topic``: a valid topic without ``+`` or ``#``."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\0" not in topic


def valid_subscribe_topic(topic: str) -> bool:
    parts = topic.split("/")
    return bool(topic) and all(p in ("+", "#") or ("+" not in p and "#" not in p) for p in parts) \
        and "#" not in parts[:-1]


def validate(config_topic: str, payload: dict[str, Any]) -> list[str]:
    """The problems Home Assistant's discovery schema would find (or silently drop)."""
    match = re.fullmatch(r"[^/]+/(\w+)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config", config_topic)
    if match is None:
        return [f"{config_topic}: not <prefix>/<component>/<node>/<object>/config"]
    component = match.group(1)
    problems: list[str] = []
    allowed = COMMON | PLATFORM_KEYS[component]
    problems += [f"unknown key {key!r}" for key in payload if key not in allowed]
    problems += [f"missing {key!r}" for key in REQUIRED[component] if key not in payload]
    if "object_id" in payload:
        problems.append("object_id is deprecated (HA 2025.10), ignored from 2026.4: use default_entity_id")
    entity_id = payload.get("default_entity_id")
    if not isinstance(entity_id, str) or not re.fullmatch(rf"{component}\.[a-z0-9_]+", entity_id):
        problems.append(f"default_entity_id {entity_id!r} is not {component}.<lower-case slug>")
    for key in ("command_topic",):
        if key in payload and not valid_publish_topic(payload[key]):
            problems.append(f"{key} {payload[key]!r} is not a topic a client can publish to")
    for key in ("state_topic", "json_attributes_topic"):
        if key in payload and not valid_subscribe_topic(payload[key]):
            problems.append(f"{key} {payload[key]!r} is not a valid subscribe topic")
    for entry in payload.get("availability", []):
        if "topic" not in entry or not valid_subscribe_topic(entry["topic"]):
            problems.append(f"availability entry without a valid topic: {entry}")
        problems += [f"unknown availability key {k!r}" for k in entry
                     if k not in {"topic", "payload_available", "payload_not_available", "value_template"}]
    if payload.get("availability_mode", "latest") not in ("all", "any", "latest"):
        problems.append(f"availability_mode {payload['availability_mode']!r}")
    device = payload.get("device")
    if device is not None:
        problems += [f"unknown device key {k!r}" for k in device if k not in DEVICE_KEYS]
        if not device.get("identifiers") and not device.get("connections"):
            problems.append("device without identifiers or connections")
        problems += [f"device {k} is not a string" for k in ("manufacturer", "model", "sw_version", "name",
                                                           "serial_number", "via_device")
                     if k in device and not isinstance(device[k], str)]
    origin = payload.get("origin")
    if origin is not None and ("name" not in origin or set(origin) - ORIGIN_KEYS):
        problems.append(f"origin {origin}")
    if component == "sensor":
        if payload.get("device_class") not in SENSOR_DEVICE_CLASSES:
            problems.append(f"device_class {payload.get('device_class')!r} not expected")
        if payload.get("state_class") not in STATE_CLASSES:
            problems.append(f"state_class {payload.get('state_class')!r}")
    if payload.get("entity_category") not in (None, "config", "diagnostic"):
        problems.append(f"entity_category {payload.get('entity_category')!r}")
    return problems


def render_command(template: str, message: str, *, entity_id: str, name: str) -> str:
    """What HA's ``MqttNotify.async_send_message(message)`` publishes: ``MqttCommandTemplate``
    renders with exactly ``value``, ``entity_id``, ``name`` and ``this`` (a state object; here a
    stand-in with the entity id), in Jinja2's immutable sandbox."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()
    this = {"entity_id": entity_id, "state": "unknown", "attributes": {}}
    return str(env.from_string(template).render({"value": message, "entity_id": entity_id, "name": name,
                                                 "this": this}))


def render_value(template: str, payload: Any) -> str:
    """A state, attribute or availability template: HA renders it with ``value`` and ``value_json``."""
    import json

    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return str(env.from_string(template).render(value=text, value_json=json.loads(text))).strip()


@contextlib.asynccontextmanager
async def simulated_gateway(tmp_path: Path, mosquitto: Any, client_id: str, *topics: str,
                            extra: str = "") -> AsyncIterator[tuple[Any, Any, Any]]:
    """`smsgw simulate` (one modem) + `smsgw run` with MQTT on ``mosquitto`` as ``client_id`` and a
    Probe on ``topics``: yields (simulator, daemon, probe); stops and closes everything after."""
    from daemon_helpers import DaemonProcess, write_config
    from mosquitto import Probe
    from third_party_fixtures import run_simulator

    mqtt = (f'\n[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "{client_id}"\n'
            "reconnect_min = 0.2\nreconnect_max = 1\n")
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(run_simulator(tmp_path / "sim"))
        config = write_config(tmp_path / "gw", [sim.port(0)], extra=mqtt + extra)
        probe = Probe(mosquitto, *topics)
        stack.callback(probe.close)
        daemon = DaemonProcess(config)
        await daemon.start()
        try:
            yield sim, daemon, probe
        finally:
            await daemon.stop()
