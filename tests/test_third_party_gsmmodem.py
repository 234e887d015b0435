"""python-gsmmodem-new, unmodified, against the pty modem simulator (docs/third-party-clients.md)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from third_party_fixtures import SimulatorProcess, run_simulator
from waiting import wait_until

gsmmodem = pytest.importorskip("gsmmodem.modem", reason="python-gsmmodem-new is not installed")
CmsError = pytest.importorskip("gsmmodem.exceptions").CmsError

RECIPIENT = "+4915550123"
SENDER = "+4915550111"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    with run_simulator(tmp_path / "sim") as running:
        yield running


@dataclass
class Client:
    """A connected GsmModem on modem0 and what its callbacks were handed."""

    modem: Any
    received: list[Any] = field(default_factory=list)
    reports: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def open_client(simulator: SimulatorProcess, *, text_mode: bool = False, pin: str | None = None,
                **options: Any) -> Iterator[Client]:
    lock = threading.Lock()
    received: list[Any] = []
    reports: list[Any] = []

    def on_sms(sms: Any) -> None:
        with lock:
            received.append(sms)

    def on_report(report: Any) -> None:
        with lock:
            reports.append(report)

    modem = gsmmodem.GsmModem(simulator.port(0), 115200, smsReceivedCallbackFunc=on_sms,
                              smsStatusReportCallback=on_report, **options)
    modem.smsTextMode = text_mode
    # The serial read timeout (1 s by default) only decides how long close() waits for the read thread.
    modem.timeout = 0.1
    modem.connect(pin=pin)
    try:
        yield Client(modem, received, reports)
    finally:
        modem.close()


@pytest.fixture
def client(simulator: SimulatorProcess) -> Iterator[Client]:
    with open_client(simulator) as connected:
        yield connected


@pytest.mark.timeout(30)
def test_gsmmodem_connects_and_reads_identity(client: Client, simulator: SimulatorProcess) -> None:
    modem = client.modem
    identity = simulator.identity(0)
    assert modem.imei == identity["imei"]
    assert modem.manufacturer == identity["manufacturer"]
    assert modem.signalStrength > 0
    assert modem.networkName


@pytest.mark.timeout(30)
def test_gsmmodem_send_sms_reaches_the_network(client: Client, simulator: SimulatorProcess) -> None:
    sent = client.modem.sendSms(RECIPIENT, "hello from python-gsmmodem")
    record = simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "hello from python-gsmmodem")
    assert record["parts"] == 1
    # python-gsmmodem always asks for a status report (TP-SRR); the +CDSI it gets is matched to the SMS.
    wait_until(lambda: sent.report is not None, timeout=15, what="the status report for the sent SMS")
    assert sent.status == gsmmodem.SentSms.DELIVERED


@pytest.mark.timeout(30)
def test_gsmmodem_send_long_unicode_sms_is_reassembled(simulator: SimulatorProcess) -> None:
    # +CNMI <ds>=0: no +CDSI during the send. python-gsmmodem handles a +CDSI in a second thread that
    # writes AT+CPMS while the main thread is between the parts of a multipart send, without a lock
    # (docs/third-party-clients.md).
    with open_client(simulator, AT_CNMI="2,1,0,0") as client:
        text = "Grüße ☃ " * 20  # 160 UCS-2 characters: three parts
        client.modem.sendSms(RECIPIENT, text)
        record = simulator.wait_sent(RECIPIENT, lambda r: r["text"] == text)
    assert record["parts"] == 3


@pytest.mark.timeout(30)
def test_gsmmodem_receive_callback_fires_for_injected_sms(client: Client, simulator: SimulatorProcess) -> None:
    simulator.inject(SENDER, "Incoming for python-gsmmodem")
    wait_until(lambda: client.received, timeout=15, what="the smsReceivedCallbackFunc")
    sms = client.received[0]
    assert sms.number == SENDER
    assert sms.text == "Incoming for python-gsmmodem"


@pytest.mark.timeout(30)
def test_gsmmodem_send_fails_with_injected_cms_error_then_works(client: Client, simulator: SimulatorProcess) -> None:
    simulator.fault("cms-error:500")
    with pytest.raises(CmsError) as failure:
        client.modem.sendSms(RECIPIENT, "refused by the network")
    assert failure.value.code == 500
    sent = client.modem.sendSms(RECIPIENT, "accepted after the fault")
    simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "accepted after the fault")
    assert all(record["text"] != "refused by the network" for record in simulator.network())
    wait_until(lambda: sent.report is not None, timeout=15, what="the status report")


@pytest.mark.timeout(30)
def test_gsmmodem_connect_enters_the_sim_pin(tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", "--pin", "4321") as simulator, open_client(simulator, pin="4321") as client:
        assert client.modem.imei == simulator.identity(0)["imei"]
        client.modem.sendSms(RECIPIENT, "sent after the PIN")
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "sent after the PIN")


@pytest.mark.timeout(30)
def test_gsmmodem_text_mode_send_report_receive(simulator: SimulatorProcess) -> None:
    with open_client(simulator, text_mode=True) as client:
        sent = client.modem.sendSms(RECIPIENT, "hello in text mode")
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "hello in text mode")
        # Its AT+CSMP=49,... asks for a report; the stored report is read back in text mode.
        wait_until(lambda: sent.report is not None, timeout=15, what="the status report, read in text mode")
        assert sent.status == gsmmodem.SentSms.DELIVERED
        simulator.inject(SENDER, "Incoming in text mode")
        wait_until(lambda: client.received, timeout=15, what="the smsReceivedCallbackFunc")
        assert client.received[0].number == SENDER
        assert client.received[0].text == "Incoming in text mode"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("profile", ["sim800", "sim7600", "ec25", "e3372"])
def test_gsmmodem_connect_send_receive_on_each_profile(profile: str, tmp_path: Path) -> None:
    with run_simulator(tmp_path / "sim", profile=profile) as simulator, open_client(simulator) as client:
        assert client.modem.imei == simulator.identity(0)["imei"]
        sent = client.modem.sendSms(RECIPIENT, f"python-gsmmodem on {profile}")
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == f"python-gsmmodem on {profile}")
        wait_until(lambda: sent.report is not None, timeout=15, what="the status report")
        simulator.inject(SENDER, f"Incoming on {profile}")
        wait_until(lambda: client.received, timeout=15, what="the smsReceivedCallbackFunc")
        assert client.received[0].text == f"Incoming on {profile}"
        assert client.received[0].number == SENDER
