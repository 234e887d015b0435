"""Home Assistant MQTT discovery: the gateway and each modem appear as devices with entities.

Published retained under ``<prefix>/<component>/<node>/<object>/config`` (prefix ``homeassistant``,
node from the MQTT client id), on every connect of the bridge, again whenever Home Assistant
announces itself with ``online`` on ``<prefix>/status``, and when a modem's retained state
(``B/modem/<id>``) brings a model or IMEI not announced yet.

Gateway device: queue-depth sensor (from the retained ``B/bridge/info``), an ``event`` entity and a
"last SMS received" timestamp sensor fed by ``B/received``, and ``notify`` entities that publish JSON
to ``B/send``: one "SMS" entity whose message is ``<number>: <text>`` and one per contact and per
group of the rules configuration. Home Assistant's MQTT notify entity renders ``command_template``
with ``value`` (the message) and ``entity_id``, ``name``, ``this`` only (``MqttNotify`` in
``homeassistant/components/mqtt/notify.py``, ``MqttCommandTemplate`` in ``models.py``): never a title
or a target, so the recipient is part of the template.

Modem devices (``via_device`` the gateway; manufacturer, model, revision and IMEI from the modem):
signal (dBm), operator, network technology, SIM and state sensors and a registration
``binary_sensor``, all read from the retained ``B/modem/<id>``.

Every config has ``default_entity_id`` (``object_id`` is deprecated since HA 2025.10). The topics
announced are kept in the store; one that is no longer announced (a removed contact, group or modem)
gets an empty retained payload, so no ghost entity stays behind.

Availability: the gateway's entities follow ``B/bridge/state``; a modem's entities need both
``B/bridge/state`` online and the modem's own state ``online`` (``availability_mode: all``).

In a fleet (``mqtt.share_group`` set) each member is its own gateway device: its state topics
(``bridge/state``, ``bridge/info``, ``received``, ``modem/<id>``) are under ``B/node/<node>`` (the
bridge's ``state_base``), while its notify entities still publish to the shared ``B/send``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from appliance import __version__
from appliance.discovery_alerts import alert_entities
from appliance.discovery_balance import balance_entities
from appliance.payload import PayloadError, load_json

LOG = logging.getLogger(__name__)

#: Registration states that count as registered (``binary_sensor`` on).
REGISTERED = ("home", "roaming", "registered", "registered_home", "registered_roaming")

SIGNAL_TEMPLATE = (
    "{% set s = value_json.get('signal') %}"
    "{{ (s.get('dbm') if s is mapping else s) if s is not none else None }}"
)
REGISTRATION_TEMPLATE = (
    "{% set r = value_json.get('registration') %}"
    "{% set r = r.get('state') if r is mapping else r %}"
    "{{ 'ON' if r in " + json.dumps(list(REGISTERED)).replace('"', "'") + " else 'OFF' }}"
)
OPERATOR_TEMPLATE = (
    "{% set o = value_json.get('operator') %}"
    "{{ (o.get('name') if o is mapping else o) if o else None }}"
)
QUEUE_TEMPLATE = (
    "{% set s = value_json.get('store') or {} %}"
    "{% set o = s.get('outbox') or value_json.get('queue') or {} %}"
    "{{ o.get('queued', 0) + o.get('sending', 0) }}"
)
#: The generic notify entity: the message is ``<number>: <text>`` (the number before the first colon).
GENERIC_NOTIFY_TEMPLATE = (
    "{% set to, sep, text = value.partition(':') %}"
    "{{ {'to': to | trim, 'text': text | trim} | tojson }}"
)
LAST_RECEIVED_ATTRIBUTES = (
    "{{ {'from': value_json.get('from'), 'text': value_json.get('text'), 'modem': value_json.get('modem'), "
    "'id': value_json.get('id')} | tojson }}"
)
STATE_ATTRIBUTES = (
    "{{ {'error': value_json.get('error'), 'last_error': value_json.get('last_error'), "
    "'last_error_at': value_json.get('last_error_at')} | tojson }}"
)
EVENT_TEMPLATE = (
    "{{ {'event_type': 'received', 'id': value_json.get('id'), 'from': value_json.get('from'), "
    "'text': value_json.get('text'), 'modem': value_json.get('modem')} | tojson }}"
)


#: What a modem's retained state tells of its device (announced again when one changes).
IDENTITY_KEYS = ("manufacturer", "model", "revision", "imei")
#: Store state (namespace, key): the config topics announced last, to clear those that are gone.
ANNOUNCED_STATE = ("discovery", "announced")


def node_id(client_id: str) -> str:
    """A discovery node id from the MQTT client id (only ``[a-zA-Z0-9_-]``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", client_id) or "smsgw"


def _jinja_literal(value: Any) -> str:
    """``value`` as a Jinja literal (JSON strings, lists and numbers are Jinja literals too)."""
    return json.dumps(value, ensure_ascii=False)


def _strip_manufacturer(model: str, manufacturer: str) -> str:
    """``"SIMCOM SIM800"`` with manufacturer ``"SIMCOM"`` is the model ``"SIM800"``."""
    if manufacturer and model.lower().startswith(manufacturer.lower() + " "):
        return model[len(manufacturer) + 1:]
    return model


def discovery_messages(
    *,
    prefix: str,
    base_topic: str,
    node: str,
    modems: Mapping[str, Mapping[str, Any]],
    contacts: Mapping[str, str] | None = None,
    groups: Mapping[str, tuple[str, ...]] | None = None,
    state_base: str | None = None,
    balance: Mapping[str, str | None] | None = None,
    alerts: Sequence[str] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """Every discovery config message as ``(topic, payload)``; pure, for tests and ``announce``.

    ``modems`` maps a modem id to what is known of it (``manufacturer``, ``model``, ``revision``,
    ``imei``: optional). ``state_base`` is where the gateway's own state is published
    (``B/node/<node>`` in a fleet; default ``B``); commands always go to ``base_topic``.

    ``balance`` maps the modems with a balance check to the amount's unit (``discovery_balance``);
    ``alerts`` names the alert rules with ``escalate`` (``discovery_alerts``).
    """
    b = base_topic
    s = state_base or base_topic
    gateway_id = f"smsgw_{node}"
    origin = {"name": "smsgw", "sw_version": __version__}
    gateway_device = {"identifiers": [gateway_id], "name": f"SMS gateway {node}", "manufacturer": "smsgw",
                      "model": "SMS gateway", "sw_version": __version__}
    bridge_availability = {"topic": f"{s}/bridge/state", "value_template": "{{ value_json.state }}",
                           "payload_available": "online", "payload_not_available": "offline"}
    out: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, object_id: str, payload: dict[str, Any]) -> None:
        payload.setdefault("origin", origin)
        # an entity id is a slug: lower-case letters, digits and "_" (HA 2025.10 replaced object_id by this)
        payload["default_entity_id"] = f"{component}." + re.sub(r"[^a-z0-9_]", "_", f"{node}_{object_id}".lower())
        out.append((f"{prefix}/{component}/{node}/{object_id}/config", payload))

    gateway = {"availability": [bridge_availability], "device": gateway_device}
    add("sensor", "queue", {
        "name": "Queue", "unique_id": f"{gateway_id}_queue",
        "state_topic": f"{s}/bridge/info", "value_template": QUEUE_TEMPLATE,
        "unit_of_measurement": "messages", "state_class": "measurement", "icon": "mdi:tray-full", **gateway,
    })
    add("event", "received", {
        "name": "Received SMS", "unique_id": f"{gateway_id}_received",
        "state_topic": f"{s}/received", "event_types": ["received"], "value_template": EVENT_TEMPLATE,
        "icon": "mdi:message-text", **gateway,
    })
    add("sensor", "last_received", {
        "name": "Last SMS received", "unique_id": f"{gateway_id}_last_received",
        "state_topic": f"{s}/received", "value_template": "{{ value_json.received_at }}",
        "device_class": "timestamp", "json_attributes_topic": f"{s}/received",
        "json_attributes_template": LAST_RECEIVED_ATTRIBUTES, "icon": "mdi:message-text-clock", **gateway,
    })
    # Home Assistant renders a notify entity's command_template with ``value`` (the message) and
    # entity_id, name, this only (see the module docstring): the recipient is in the template.
    add("notify", "sms", {
        "name": "SMS", "unique_id": f"{gateway_id}_sms", "command_topic": f"{b}/send",
        "command_template": GENERIC_NOTIFY_TEMPLATE, "icon": "mdi:message-arrow-right", **gateway,
    })
    for name, number in sorted((contacts or {}).items()):
        slug = node_id(name).lower()
        add("notify", f"sms_{slug}", {
            "name": f"SMS {name}", "unique_id": f"{gateway_id}_sms_{slug}", "command_topic": f"{b}/send",
            "command_template": "{{ {'to': " + _jinja_literal(number) + ", 'text': value} | tojson }}",
            "icon": "mdi:message-arrow-right", **gateway,
        })
    for name, members in sorted((groups or {}).items()):
        slug = node_id(name).lower()
        add("notify", f"sms_group_{slug}", {
            "name": f"SMS group {name}", "unique_id": f"{gateway_id}_sms_group_{slug}",
            "command_topic": f"{b}/send",
            "command_template": "{{ {'to': " + _jinja_literal(list(members)) + ", 'text': value} | tojson }}",
            "icon": "mdi:message-arrow-right", **gateway,
        })

    for rule in alerts:
        for component, object_id, payload in alert_entities(
                state_base=s, gateway_id=gateway_id, rule=rule, slug=node_id(rule).lower(), device=gateway_device,
                availability=[bridge_availability]):
            add(component, object_id, payload)

    for modem_id, info in sorted(modems.items()):
        slug = node_id(modem_id)
        device_id = f"{gateway_id}_{slug}"
        manufacturer = str(info.get("manufacturer") or "")
        model = _strip_manufacturer(str(info.get("model") or ""), manufacturer)
        identifiers = [device_id]
        if info.get("imei"):
            identifiers.append(f"imei_{info['imei']}")
        device: dict[str, Any] = {"identifiers": identifiers, "name": f"SMS modem {modem_id}",
                                  "manufacturer": manufacturer or "unknown", "model": model or "GSM modem",
                                  "via_device": gateway_id}
        if info.get("revision"):
            device["sw_version"] = str(info["revision"])
        if info.get("imei"):
            device["serial_number"] = str(info["imei"])
        state_topic = f"{s}/modem/{modem_id}"
        availability = [bridge_availability, {
            "topic": state_topic, "value_template": "{{ value_json.state }}",
            "payload_available": "online", "payload_not_available": "offline"}]
        common = {"state_topic": state_topic, "availability": availability, "availability_mode": "all",
                  "device": device}
        add("sensor", f"{slug}_signal", {
            "name": "Signal", "unique_id": f"{device_id}_signal",
            "value_template": SIGNAL_TEMPLATE, "device_class": "signal_strength",
            "unit_of_measurement": "dBm", "state_class": "measurement", "entity_category": "diagnostic",
            **common,
        })
        add("sensor", f"{slug}_operator", {
            "name": "Operator", "unique_id": f"{device_id}_operator",
            "value_template": OPERATOR_TEMPLATE, "icon": "mdi:radio-tower", **common,
        })
        add("sensor", f"{slug}_technology", {
            "name": "Network technology", "unique_id": f"{device_id}_technology",
            "value_template": "{{ value_json.get('technology') }}", "icon": "mdi:signal-variant",
            "entity_category": "diagnostic", **common,
        })
        add("sensor", f"{slug}_sim", {
            "name": "SIM", "unique_id": f"{device_id}_sim",
            "value_template": "{{ value_json.get('sim') }}", "icon": "mdi:sim",
            "entity_category": "diagnostic", **common,
        })
        add("sensor", f"{slug}_state", {
            "name": "State", "unique_id": f"{device_id}_state",
            "value_template": "{{ value_json.state }}", "icon": "mdi:sim",
            "entity_category": "diagnostic", "json_attributes_topic": state_topic,
            "json_attributes_template": STATE_ATTRIBUTES,
            # the state sensor stays available while the modem is down: only the bridge matters
            **{**common, "availability": [bridge_availability], "availability_mode": "latest"},
        })
        add("binary_sensor", f"{slug}_registration", {
            "name": "Registered", "unique_id": f"{device_id}_registration",
            "value_template": REGISTRATION_TEMPLATE,
            "payload_on": "ON", "payload_off": "OFF", "device_class": "connectivity", **common,
        })
        if modem_id in (balance or {}):
            for component, object_id, payload in balance_entities(
                    base_topic=b, state_base=s, node=node, modem_id=modem_id, slug=slug, device=device,
                    device_id=device_id, availability=[bridge_availability], unit=(balance or {})[modem_id]):
                add(component, object_id, payload)
    return out


class Discovery:
    """Announces the discovery configs through the bridge (see the module docstring)."""

    def __init__(self, config: Any, bridge: Any, *, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.config = config
        self.bridge = bridge
        self.status = status or (lambda: {})
        mqtt = getattr(config, "mqtt", None)
        self.enabled = bool(getattr(mqtt, "discovery", True)) and mqtt is not None
        self.prefix = str(getattr(mqtt, "discovery_prefix", "homeassistant"))
        self.node = node_id(str(getattr(mqtt, "client_id", "smsgw") or "smsgw"))
        #: where the bridge publishes its own state (``B/node/<node>`` in a fleet)
        self.state_base = str(getattr(bridge, "state_base", None) or bridge.base_topic)
        self.announcements = 0
        self._remove: Callable[[], None] | None = None
        self._seen: dict[str, dict[str, Any]] = {}  # modem id -> model/imei from its retained state
        self._announced: dict[str, dict[str, Any]] = {}
        self._contacts: dict[str, str] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._alerts: list[str] = []  # the alert rules with escalate
        try:
            rules = config.rules
            self._contacts, self._groups = rules.contacts, rules.groups
            self._alerts = [rule.name for rule in rules.alerts if rule.escalate is not None]
        except Exception as exc:  # the rules engine reports its own configuration errors
            LOG.debug("discovery without contacts: %s", exc)

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        modems: dict[str, dict[str, Any]] = {m.id: {} for m in getattr(self.config, "modems", ())}
        try:
            known = (self.status() or {}).get("modems") or {}
        except Exception:
            LOG.exception("status callback failed")
            known = {}
        items = known.items() if isinstance(known, dict) else (
            (m.get("id"), m) for m in known if isinstance(m, dict) and m.get("id"))
        for modem_id, info in items:
            if isinstance(info, dict):
                modems.setdefault(str(modem_id), {}).update(
                    {k: info[k] for k in IDENTITY_KEYS if info.get(k)})
        for modem_id, info in self._seen.items():
            if modem_id in modems:  # a retained state of a modem no longer configured announces nothing
                modems[modem_id].update(info)
        self._announced = {modem_id: dict(info) for modem_id, info in modems.items()}
        return discovery_messages(prefix=self.prefix, base_topic=self.bridge.base_topic, node=self.node,
                                  modems=modems, contacts=self._contacts, groups=self._groups,
                                  state_base=self.state_base, alerts=self._alerts,
                                  balance={m.id: m.balance.unit for m in getattr(self.config, "modems", ())
                                           if getattr(m, "balance", None) is not None})

    def announce(self) -> int:
        """Publish every config message (retained); how many.

        The topics announced are kept in the store; a topic announced before and not now (a contact,
        group or modem removed from the configuration) gets an empty retained payload, which makes
        Home Assistant remove the entity and the broker forget the config.
        """
        messages = self.messages()
        for topic, payload in messages:
            self.bridge.publish(topic, json.dumps(payload, ensure_ascii=False).encode(), qos=1, retain=True)
        self._clear_gone({topic for topic, _ in messages})
        self.announcements += 1
        LOG.info("Home Assistant discovery: announced %d entities under %s/", len(messages), self.prefix)
        return len(messages)

    def _clear_gone(self, current: set[str]) -> None:
        store = getattr(self.bridge, "store", None)
        if store is None:
            return
        try:
            before = store.state_get(*ANNOUNCED_STATE, None) or []
            for topic in sorted(set(before) - current):
                self.bridge.publish(topic, b"", qos=1, retain=True)
                LOG.info("Home Assistant discovery: removed %s (no longer configured)", topic)
            if set(before) != current:
                store.state_set(*ANNOUNCED_STATE, sorted(current))
        except Exception:
            LOG.exception("clearing removed discovery configs failed")

    def _on_modem_state(self, topic: str, payload: bytes) -> None:
        """Announce again when a modem's model or IMEI becomes known (or a new modem appears)."""
        modem_id = topic.rsplit("/", 1)[-1]
        try:
            state = load_json(payload)
        except PayloadError:
            return
        if not isinstance(state, dict):
            return
        configured = {m.id for m in getattr(self.config, "modems", ())}
        if configured and modem_id not in configured and state:
            # the retained state of a modem removed from the configuration: clear it
            self.bridge.publish(topic, b"", qos=1, retain=True)
            return
        info = {k: state[k] for k in IDENTITY_KEYS if state.get(k)}
        self._seen[modem_id] = {**self._seen.get(modem_id, {}), **info}
        announced = self._announced.get(modem_id)
        if self.announcements and (announced is None or any(announced.get(k) != v for k, v in info.items())):
            self.announce()

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            self.announce()

    async def start(self) -> None:
        if not self.enabled:
            return
        # the bridge sends a subscription made at any time, also while it is connecting
        self.bridge.subscribe(f"{self.prefix}/status", self._on_ha_status)
        self.bridge.subscribe(f"{self.state_base}/modem/+", self._on_modem_state)
        self._remove = self.bridge.add_connect_listener(self.announce)

    async def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
