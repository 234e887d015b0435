"""Home Assistant entities of a modem's balance check: a sensor and a "Check balance" button.

Called by ``appliance.discovery`` for each modem with a ``balance`` table. The sensor reads the
retained ``B/modem/<id>/balance`` (``value_json.balance``; the network's text and the time of the
check as attributes); the button publishes ``check`` on ``B/modem/<id>/balance/check``, which runs
a check at once. Both follow ``B/bridge/state`` only: the last amount stays readable while the
modem is down. Schemas: Home Assistant's ``homeassistant/components/mqtt/sensor.py`` and
``button.py`` (``command_topic``, ``payload_press``; ``default_entity_id`` replaces the deprecated
``object_id`` from 2025.10).
"""

from __future__ import annotations

from typing import Any


def balance_entities(*, base_topic: str, state_base: str, node: str, modem_id: str, slug: str,
                     device: dict[str, Any], device_id: str, availability: list[dict[str, Any]],
                     unit: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(component, object id, config payload)`` for the balance sensor and button."""
    sensor: dict[str, Any] = {
        "name": "Balance", "unique_id": f"{device_id}_balance", "default_entity_id": f"sensor.{node}_{slug}_balance",
        "state_topic": f"{state_base}/modem/{modem_id}/balance", "value_template": "{{ value_json.balance }}",
        "json_attributes_topic": f"{state_base}/modem/{modem_id}/balance",
        "json_attributes_template": "{{ {'text': value_json.text, 'checked_at': value_json.at, "
                                    "'below_low': value_json.below_low, 'low': value_json.low, "
                                    "'error': value_json.error} | tojson }}",
        "state_class": "measurement", "icon": "mdi:cash", "availability": availability, "device": device,
    }
    if unit:
        sensor["unit_of_measurement"] = unit
    button = {
        "name": "Check balance", "unique_id": f"{device_id}_balance_check",
        "default_entity_id": f"button.{node}_{slug}_balance_check",
        "command_topic": f"{base_topic}/modem/{modem_id}/balance/check", "payload_press": "check",
        "icon": "mdi:cash-refund", "availability": availability, "device": device,
    }
    return [("sensor", f"{slug}_balance", sensor), ("button", f"{slug}_balance_check", button)]
