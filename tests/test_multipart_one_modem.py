"""All parts of a multipart SMS leave through one modem: `smsgw run` on two simulated modems.

A handset joins the parts of a concatenated SMS by sender (3GPP TS 23.040 9.2.3.24.1: the reference
is only unique per originator), so a message whose parts left through two SIMs is never shown.
Modem 0 hangs after the first part of a three-part message: the other parts wait for it; when it
stays unusable past ``multipart_wait`` the whole message goes again from part 1 through modem 1
with a new concatenation reference. Every part on the simulated network is checked by sending modem.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, write_config
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

OUTSIDE = "+4915112345678"
TEXT = "Pump station 7 reports a pressure drop in the main line; please check the valves soon. " * 4  # 3 parts


@pytest.mark.timeout(60)
async def test_parts_of_one_message_never_leave_through_two_modems(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic", send_delay=0.3) as sim:
        config = write_config(tmp_path / "gw", sim.ports, sweep_interval=30.0)
        text = config.read_text().replace("[health]\n", "[health]\nmultipart_wait = 3\n")
        config.write_text(text)
        db = tmp_path / "gw" / "smsgw.db"
        daemon = await DaemonProcess(config).start()
        try:
            await daemon.wait_running()
            await async_wait_until(lambda: "modem sim1 online" in daemon.log_text()
                                   and "modem sim0 online" in daemon.log_text(), timeout=15, what="modems online")
            with Store(db) as store:
                (result,) = store.enqueue([OutboundRequest(to=OUTSIDE, text=TEXT, source="test")])
            first = await async_wait_until(lambda: [p for p in sim.network.parts if p["to"] == OUTSIDE],
                                           timeout=10, what="the first part on the network")
            sim.fault(first[0]["modem"], "hang")  # the modem that sent part 1 stops answering
            other = 1 - first[0]["modem"]
            await async_wait_until(lambda: [r for r in sim.network.sent if r["text"] == TEXT], timeout=30,
                                   what="the whole message received by the handset")
            def message_state() -> str:
                with Store(db) as store:
                    return str((store.message(result.id) or {}).get("state"))

            # the last part's TP-MR is committed just after the network took it
            await async_wait_until(lambda: message_state() == "sent", timeout=10, what="the message sent")
            with Store(db) as store:
                row = store.message(result.id)
                restarts = store.audit_log(10, "multipart_restart")
        finally:
            if daemon.running:
                await daemon.stop()
    groups: dict[int | None, set[int]] = defaultdict(set)
    sequences: dict[int | None, list[int]] = defaultdict(list)
    for part in sim.network.parts:
        groups[part["concat_reference"]].add(part["modem"])
        sequences[part["concat_reference"]].append(part["sequence"])
    assert all(len(modems) == 1 for modems in groups.values()), f"a message split over modems: {groups}"
    complete = [ref for ref, seqs in sequences.items() if sorted(seqs) == [1, 2, 3]]
    assert len(complete) == 1 and groups[complete[0]] == {other}, (sequences, groups)
    assert complete[0] != first[0]["concat_reference"]  # a new concatenation reference
    received = [r for r in sim.network.sent if r["text"] == TEXT]
    assert len(received) == 1 and received[0]["modem"] == other
    assert row is not None and row["state"] == "sent"
    assert restarts, "the restart is audited"
