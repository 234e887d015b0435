"""Why the broker refused or failed us shows in `smsgw status` (``mqtt.last_error`` with its time).

A real mosquitto with a password file (``allow_anonymous false``) refuses a wrong password with
CONNACK "Not authorized" (MQTT 5.0 reason code 0x87, section 3.2.2.2; MQTT 3.1.1 return code 5,
section 3.2.2.3). Once the login works, ``last_error`` is cleared and ``last_failure`` keeps the
refusal with its time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from mosquitto import Broker, free_port
from waiting import async_wait_until

pytest_plugins = ["mosquitto"]


def status(config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "appliance", "status", "--json", "--config", str(config)],
                          capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    mqtt: dict[str, Any] = json.loads(done.stdout)["mqtt"]
    return mqtt


def human_status(config: Path) -> str:
    return subprocess.run([sys.executable, "-m", "appliance", "status", "--config", str(config)],
                          capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30).stdout


def mqtt_config(port: int, password: str, protocol: str) -> str:
    return (f'\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "gateway"\npassword = "{password}"\n'
            f'client_id = "gw-status"\nprotocol = "{protocol}"\nreconnect_min = 1\nreconnect_max = 1\n')


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_login_refusal_shows_in_status_and_is_kept_after_a_good_login(
        tmp_path: Path, broker_factory: Callable[..., Broker], protocol: str) -> None:
    broker = broker_factory(users={"gateway": "right"})
    config = write_config(tmp_path / "gw", ["/dev/null"], extra=mqtt_config(broker.port, "wrong", protocol))
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running(timeout=20)
        refused = await async_wait_until(lambda: (s := status(config)).get("last_error") and s, timeout=20,
                                         what="the refusal in smsgw status")
        assert refused["connected"] is not True
        assert "Not authorized" in refused["last_error"], refused
        assert refused["last_error_at"].endswith("Z")
        assert "Not authorized" in human_status(config)

        # the broker now accepts that password: the daemon connects; the refusal stays as history
        broker.users["gateway"] = "wrong"
        broker.restart()
        connected = await async_wait_until(lambda: (s := status(config)).get("connected") and s, timeout=20,
                                           what="connected")
        assert connected["last_error"] is None
        assert "Not authorized" in connected["last_failure"]["error"]
        assert connected["last_failure"]["at"].endswith("Z")
        assert "MQTT last error: connection refused by the broker: Not authorized" in human_status(config)
    finally:
        await daemon.stop()


async def test_a_closed_port_shows_the_connection_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "gw", ["/dev/null"], extra=mqtt_config(free_port(), "x", "5"))
    assert "Connection refused" in await first_error(config)


async def first_error(config: Path) -> str:
    """Run the daemon until `smsgw status` shows an MQTT error; that error."""
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running(timeout=20)
        failed = await async_wait_until(lambda: (s := status(config)).get("last_error") and s, timeout=20,
                                        what="the MQTT error in smsgw status")
        return str(failed["last_error"])
    finally:
        await daemon.stop()


async def test_a_tls_failure_shows_the_certificate_error(tmp_path: Path,
                                                         broker_factory: Callable[..., Broker]) -> None:
    """The broker's certificate is signed by the tests' own CA, which the appliance is not given: the
    handshake fails with CERTIFICATE_VERIFY_FAILED, and status says so (not just "cannot connect")."""
    broker = broker_factory(users={"gateway": "right"}, tls=True)
    assert broker.tls_port is not None
    extra = mqtt_config(broker.tls_port, "right", "5") + "\n[mqtt.tls]\ninsecure = false\n"
    config = write_config(tmp_path / "gw", ["/dev/null"], extra=extra)
    assert "CERTIFICATE_VERIFY_FAILED" in await first_error(config)
