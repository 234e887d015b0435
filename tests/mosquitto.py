"""A real mosquitto broker for tests, on a free loopback port with its own config file.

Load the fixtures with ``pytest_plugins = ["mosquitto"]``:

- ``mosquitto``: a started broker, anonymous, plain TCP (``broker.port``).
- ``broker_factory``: ``broker_factory(users=..., acl=..., tls=True, persistence=True, start=True)``
  builds (and starts) a broker with a password file, an ACL file and/or a TLS listener.
- ``tls_certs``: a CA, a server certificate for 127.0.0.1/localhost and a client certificate,
  generated once per session with ``openssl``.

A :class:`Broker` can be ``stop()``-ed (SIGTERM, mosquitto saves its persistence file), ``kill()``-ed
(SIGKILL; with ``autosave_on_changes`` sessions and subscriptions survive it too) and ``start()``-ed
again on the same ports. ``pub()`` and ``sub_command()`` wrap ``mosquitto_pub`` / ``mosquitto_sub`` for
the broker. :class:`Probe` is a paho client that records what it receives (``Probe(broker, "smsgw/#")``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server certificate (CN localhost, SAN 127.0.0.1) and a client certificate."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_cn: str = "smsgw-client"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_certs(directory: Path, client_cn: str = "smsgw-client") -> Certs:
    """Generate a CA and server/client certificates in ``directory`` with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=smsgw test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", client_cn)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    for key in d.glob("*.key"):
        key.chmod(0o644)  # mosquitto may run as another user
    return Certs(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
                 client_cn)


@dataclass
class Broker:
    """One mosquitto process with its own directory, config file, log and persistence file."""

    directory: Path
    port: int = 0
    tls_port: int | None = None
    users: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    certs: Certs | None = None
    require_certificate: bool = False
    persistence: bool = True
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None
    host: str = HOST

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.certs is not None and self.tls_port is None:
            self.tls_port = free_port()

    # --- files ----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def write_config(self) -> Path:
        lines = [f"listener {self.port} {self.host}"]
        if self.tls_port is not None and self.certs is not None:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.certs.ca}",
                f"certfile {self.certs.server_cert}",
                f"keyfile {self.certs.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        if self.users:
            password_file = self.directory / "passwords"
            password_file.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(password_file)], check=True, capture_output=True)
            password_file.chmod(0o644)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.directory / "acl"
            acl_file.write_text(self.acl)
            acl_file.chmod(0o644)
            lines.append(f"acl_file {acl_file}")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    # --- process --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto is not installed")
        if self.running:
            return self
        self.write_config()
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=(self.directory / "stderr.log").open("ab"),
        )
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while not all(port_open(port) for port in ports):
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not open {ports} within {timeout}s:\n{self.log()}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto writes its persistence file) and wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye (persistence only as of its last autosave)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, kill: bool = False) -> Broker:
        self.kill() if kill else self.stop()
        return self.start()

    def log(self) -> str:
        parts = []
        for path in (self.log_path, self.directory / "stderr.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # --- clients --------------------------------------------------------------------------

    def client_args(self, *, user: str | None = None, tls: bool = False, client_cert: bool = False) -> list[str]:
        """Connection options for mosquitto_pub / mosquitto_sub."""
        args = ["-h", self.host]
        if tls:
            assert self.certs is not None and self.tls_port is not None, "broker has no TLS listener"
            args += ["-p", str(self.tls_port), "--cafile", str(self.certs.ca)]
            if client_cert:
                args += ["--cert", str(self.certs.client_cert), "--key", str(self.certs.client_key)]
        else:
            args += ["-p", str(self.port)]
        if user is not None:
            args += ["-u", user, "-P", self.users[user]]
        return args

    def pub(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False,
            user: str | None = None, tls: bool = False, extra: tuple[str, ...] = ()) -> None:
        """Publish one message with mosquitto_pub (waits for it to be sent)."""
        args = ["mosquitto_pub", *self.client_args(user=user, tls=tls), "-t", topic, "-q", str(qos)]
        if retain:
            args.append("-r")
        data = payload.encode() if isinstance(payload, str) else payload
        args += ["-s", *extra]
        subprocess.run(args, input=data, check=True, capture_output=True, timeout=10)

    def sub_command(self, topic: str, *, count: int | None = None, qos: int = 1, user: str | None = None,
                    tls: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
        """An argv for mosquitto_sub on ``topic`` (``-C count``, verbose: topic and payload)."""
        args = ["mosquitto_sub", *self.client_args(user=user, tls=tls), "-t", topic, "-q", str(qos), "-v"]
        if count is not None:
            args += ["-C", str(count)]
        return [*args, *extra]


class Probe:
    """A paho client for tests: records every message it receives (thread-safe), publishes.

    ``Probe(broker, "smsgw/#")`` connects (persistent session unless ``clean=True``) and subscribes;
    ``messages`` is a list of ``(topic, payload bytes, retain)``; use ``payloads(topic)`` and
    ``json(topic)`` to read them, and tests/waiting.py to wait for them.
    """

    def __init__(self, broker: Broker, *topics: str, client_id: str | None = None, clean: bool = True,
                 qos: int = 1, protocol: int | None = None, user: str | None = None, tls: bool = False,
                 timeout: float = 10.0) -> None:
        import threading

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.topics = topics
        self.qos = qos
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connects = 0
        protocol = paho.MQTTv311 if protocol is None else protocol
        kwargs: dict[str, object] = {}
        if protocol != paho.MQTTv5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{id(self):x}",
                                  protocol=protocol, **kwargs)  # type: ignore[arg-type]
        if user is not None:
            self.client.username_pw_set(user, broker.users[user])
        port = broker.port
        if tls:
            assert broker.certs is not None and broker.tls_port is not None
            self.client.tls_set(ca_certs=str(broker.certs.ca), certfile=str(broker.certs.client_cert),
                                keyfile=str(broker.certs.client_key))
            port = broker.tls_port
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, port, 30)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while self.connects == 0:
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"probe could not connect to the broker on port {port}")
            time.sleep(0.01)

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            return
        for topic in self.topics:
            client.subscribe(topic, qos=self.qos)
        with self.lock:
            self.connects += 1

    def _on_message(self, client, userdata, message):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def subscribed(self, timeout: float = 5.0) -> None:
        """Publish a marker on the first subscribed topic's prefix and wait to receive it."""
        marker = f"probe/{id(self):x}/{time.monotonic_ns()}"
        self.client.subscribe(marker, qos=1)
        deadline = time.monotonic() + timeout
        while True:
            self.client.publish(marker, b"x", qos=1)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                if any(topic == marker for topic, _, _ in self.snapshot()):
                    return
                time.sleep(0.005)
            if time.monotonic() > deadline:
                raise AssertionError("probe subscription not active")

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.snapshot() if t == topic]

    def json(self, topic: str) -> list[object]:
        import json

        return [json.loads(payload) for payload in self.payloads(topic)]

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False,
                properties: object = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)  # type: ignore[arg-type]
        info.wait_for_publish(10)

    def close(self) -> None:
        import threading

        self.client.disconnect()
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(5)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Broker]]:
    brokers: list[Broker] = []

    def make(*, users: dict[str, str] | None = None, acl: str | None = None, tls: bool = False,
             require_certificate: bool = False, persistence: bool = True, extra_config: str = "",
             start: bool = True) -> Broker:
        certs = request.getfixturevalue("tls_certs") if tls else None
        broker = Broker(tmp_path / f"broker{len(brokers)}", users=dict(users or {}), acl=acl, certs=certs,
                        require_certificate=require_certificate, persistence=persistence,
                        extra_config=extra_config)
        brokers.append(broker)
        return broker.start() if start else broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.kill()


@pytest.fixture
def mosquitto(broker_factory: Callable[..., Broker]) -> Broker:
    return broker_factory()
