"""Home Assistant entities of the escalating alert rules: a problem ``binary_sensor`` and a state sensor.

Called by ``appliance.discovery`` for each alert rule with ``escalate``. Both read the retained
``B/alert_rule/<rule>`` (``appliance.escalation``: ``active``, how many alerts of the rule are open
or acknowledged and waiting for their resolve, and ``latest``, the newest alert). The binary sensor
is on while one is active (``device_class: problem``: "On means problem detected, Off means no
problem", ``BinarySensorDeviceClass.PROBLEM`` in home-assistant/core
``homeassistant/components/binary_sensor/__init__.py``, commit 027590d94dd8effd8b68fef1d7ac9d8d10027eb6);
the sensor's state is the latest alert's state (open, acknowledged, resolved, expired; ``none``
before the first), with its code, text, who was alerted and who acknowledged as attributes. Keys
from ``homeassistant/components/mqtt/binary_sensor.py`` and ``sensor.py`` (``state_topic``,
``value_template``, ``payload_on``/``payload_off``, ``json_attributes_topic``/``_template``).
"""

from __future__ import annotations

from typing import Any

ACTIVE_TEMPLATE = "{{ 'ON' if (value_json.active or 0) > 0 else 'OFF' }}"
STATE_TEMPLATE = "{{ value_json.latest.state if value_json.latest else 'none' }}"
ATTRIBUTES_TEMPLATE = (
    "{% set a = value_json.latest or {} %}"
    "{{ {'active': value_json.active, 'code': a.get('id'), 'text': a.get('text'), 'topic': a.get('topic'), "
    "'step': a.get('step'), 'steps': a.get('steps'), 'alerted': a.get('alerted'), "
    "'acknowledged_by': a.get('acknowledged_name') or a.get('acknowledged_by'), "
    "'opened_at': a.get('created_at'), 'closed_at': a.get('closed_at')} | tojson }}"
)


def alert_entities(*, state_base: str, gateway_id: str, rule: str, slug: str, device: dict[str, Any],
                   availability: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(component, object id, config payload)`` for one escalating rule's two entities."""
    topic = f"{state_base}/alert_rule/{rule}"
    common = {"state_topic": topic, "json_attributes_topic": topic, "json_attributes_template": ATTRIBUTES_TEMPLATE,
              "availability": availability, "device": device}
    problem = {
        "name": f"Alert {rule}", "unique_id": f"{gateway_id}_alert_{slug}", "value_template": ACTIVE_TEMPLATE,
        "payload_on": "ON", "payload_off": "OFF", "device_class": "problem", "icon": "mdi:bell-alert", **common,
    }
    state = {
        "name": f"Alert {rule} state", "unique_id": f"{gateway_id}_alert_{slug}_state",
        "value_template": STATE_TEMPLATE, "icon": "mdi:bell-ring", **common,
    }
    return [("binary_sensor", f"alert_{slug}", problem), ("sensor", f"alert_{slug}_state", state)]
