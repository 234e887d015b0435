"""Can smsgw talk to this MQTT broker? TCP, TLS, CONNECT and the credentials, each named when it fails.

Used by ``smsgw doctor`` (on the configured ``[mqtt]``) and by ``smsgw setup`` (on the answers,
before anything is written): the same paho-mqtt client the daemon uses, one CONNECT, then gone.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from appliance.config import MqttConfig


@dataclass(frozen=True)
class BrokerCheck:
    ok: bool
    stage: str      # "ok", or what failed: "reach", "tls", "connect", "answer", "credentials"
    message: str
    hint: str = ""


def check_broker(mqtt: MqttConfig, timeout: float, *, client_id: str) -> BrokerCheck:
    """Reach the broker, CONNECT with the configured credentials and TLS; what failed, if anything."""
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=timeout):
            pass
    except OSError as exc:
        return BrokerCheck(False, "reach", f"broker {mqtt.host}:{mqtt.port} is not reachable: {exc}",
                           "is mosquitto running? (systemctl status mosquitto)")
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    protocol = paho.MQTTv5 if mqtt.protocol == "5" else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, mqtt.password)
    if mqtt.tls is not None:
        try:
            client.tls_set(ca_certs=str(mqtt.tls.ca) if mqtt.tls.ca else None,
                           certfile=str(mqtt.tls.cert) if mqtt.tls.cert else None,
                           keyfile=str(mqtt.tls.key) if mqtt.tls.key else None,
                           cert_reqs=ssl.CERT_NONE if mqtt.tls.insecure else ssl.CERT_REQUIRED)
            client.tls_insecure_set(mqtt.tls.insecure)
        except (OSError, ValueError, ssl.SSLError) as exc:
            return BrokerCheck(False, "tls", f"TLS files: {exc}", "check [mqtt.tls] ca, cert and key")
    answered = threading.Event()
    result: dict[str, str] = {}

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any) -> None:
        result["reason"] = str(reason_code)
        result["failure"] = "1" if getattr(reason_code, "is_failure", False) else ""
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
        client.loop_start()
        got = answered.wait(timeout)
    except (OSError, ssl.SSLError) as exc:
        return BrokerCheck(False, "connect", f"connecting to {mqtt.host}:{mqtt.port} failed: {exc}",
                           "TLS port and certificates must match the broker's listener")
    finally:
        client.loop_stop()
        client.disconnect()
    if not got:
        return BrokerCheck(False, "answer", f"{mqtt.host}:{mqtt.port} did not answer CONNECT within {timeout:g}s",
                           "is that port an MQTT listener (TLS vs plain)?")
    if result.get("failure"):
        return BrokerCheck(False, "credentials", f"{mqtt.host}:{mqtt.port} refused the connection: {result['reason']}",
                           "check [mqtt] username/password and the broker's ACL")
    return BrokerCheck(True, "ok", f"broker {mqtt.host}:{mqtt.port} accepted MQTT {mqtt.protocol}"
                       f"{' over TLS' if mqtt.tls else ''}")


