"""Every simulator fault kind on one of two modems under `smsgw run`: nothing is lost, traffic goes on.

For each kind in ``drivers.simulator.FAULTS`` (with a value for the parametrised ones) modem 1
gets the fault while messages are queued and SMS arrive at modem 0: every accepted message is sent
(through modem 0 when modem 1 cannot), nothing fails, every SMS is stored once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, write_config
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import FAULTS, Simulator

VALUES = {"cms-error:CODE": "cms-error:38", "pin-attempts:N": "pin-attempts:1",
          "report-status:CODE": "report-status:65", "cmgr-header:NAME": "cmgr-header:length-only",
          "balance:AMOUNT": "balance:3.50"}
KINDS = [VALUES.get(kind, kind) for kind in FAULTS]


def test_every_fault_kind_is_covered() -> None:
    assert all(":" not in kind or kind in VALUES.values() for kind in KINDS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
async def test_fault_on_one_modem_loses_nothing(tmp_path: Path, kind: str) -> None:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic", send_delay=0.01) as sim:
        config = write_config(tmp_path / "gw", sim.ports, pins=["1234", "1234"], sweep_interval=1.0)
        db = tmp_path / "gw" / "smsgw.db"
        daemon = await DaemonProcess(config).start()
        try:
            await daemon.wait_running()
            await async_wait_until(lambda: daemon.log_text().count("online") >= 2, timeout=15, what="online")
            sim.fault(1, kind)
            with Store(db) as store:
                texts = [f"{kind} {n}" + (" and a longer tail " * 10 if n % 4 == 0 else "") for n in range(12)]
                store.enqueue([OutboundRequest(to=f"+49151123456{n:02d}", text=t, source="test")
                               for n, t in enumerate(texts)])
            incoming = [f"in {kind} {n}" + (" ✅" if n else "") for n in range(3)]
            for text in incoming:
                sim.inject(0, "+4917000000001", text)
            await async_wait_until(lambda: set(texts) <= {r["text"] for r in sim.network.sent}, timeout=40,
                                   what="every message on the network")
            await async_wait_until(lambda: set(incoming) <= set(inbox_texts(db)), timeout=20,
                                   what="every SMS stored")
            with Store(db) as store:
                failed = [m for m in store.outbox(100) if m["state"] == "failed"]
        finally:
            await daemon.stop()
    assert not failed, failed
    sent = Counter(str(r["text"]) for r in sim.network.sent)
    assert all(sent[t] == 1 for t in texts)
    stored = Counter(inbox_texts(db))
    assert all(stored[t] == 1 for t in incoming)  # (sim-full's fillers are real SMS on the SIM, stored too)


def inbox_texts(db: Path) -> list[str]:
    with Store(db) as store:
        return [str(row["text"]) for row in store.inbox(1000)]
