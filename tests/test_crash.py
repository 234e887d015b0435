"""Crash test: SIGKILL the daemon at random moments while SMS flow both ways, then check nothing was lost.

One simulator (two modems) serves every daemon life. Each cycle: enqueue outbound messages with
unique texts (from this process, like ``smsgw send``), start ``smsgw run``, inject SMS with unique
texts at random moments, let it run a random 20-300 ms (one cycle in five is killed at a random
moment of its start-up instead) and ``kill -9`` it. After the last kill a daemon runs to the end
and stops with SIGTERM. Then:

- every accepted outbound message reached the simulated network (``network.jsonl``) at least once;
- every injected SMS (single, multipart and emoji) is in the store's inbox exactly once;
- no multipart message left through two modems (every part on the simulated network, by sender);
- no SIM slot was ever deleted before its message was committed: every deletion in the simulator
  is checked against the store file at the moment it happens, and after every kill every injected
  SMS not yet in the store is still on the SIM (or still held by the network);
- a message reached the network twice only if a daemon life was killed after the modem accepted
  it and before its TP-MR was committed (the documented window, docs/store.md): after every kill
  each submission of that life is classified, and duplicates beyond those are failures.

``SMSGW_CRASH_KILLS`` sets the number of kills (default 200).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess, write_config
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

KILLS = int(os.environ.get("SMSGW_CRASH_KILLS", "200"))
OUTSIDE = "+4915112345678"
LONG = " and the pump in station seven reports a pressure drop that needs a look"  # makes 2 parts


class DeleteWitness(dict):  # type: ignore[type-arg]
    """Replaces a simulated SIM storage's slot dict: checks each deletion against the store file."""

    def __init__(self, slots: dict[int, Any], db: Path, violations: list[str]) -> None:
        super().__init__(slots)
        self.db = db
        self.violations = violations
        self.deleted = 0

    def _check(self, index: int) -> None:
        sms = self.get(index)
        if sms is None:
            return
        self.deleted += 1
        with sqlite3.connect(self.db) as conn:
            row = conn.execute("SELECT 1 FROM inbox_part WHERE pdu = ?", (sms.pdu.strip().upper(),)).fetchone()
        if row is None:
            self.violations.append(f"slot {index} deleted before its message was committed: {sms.pdu}")

    def pop(self, index: int, *default: Any) -> Any:
        self._check(index)
        return super().pop(index, *default)

    def __delitem__(self, index: int) -> None:
        self._check(index)
        super().__delitem__(index)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    simulator = Simulator(tmp_path / "sim", modems=2, profile="generic", control=False)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, sim: Simulator) -> None:
    seed = int(os.environ.get("SMSGW_CRASH_SEED", str(time.time_ns())))
    print(f"SMSGW_CRASH_SEED={seed}")  # shown with a failure: rerun with the same moments
    rng = random.Random(seed)
    config = write_config(tmp_path / "gw", sim.ports, sweep_interval=0.5)
    db = tmp_path / "gw" / "smsgw.db"
    Store(db).close()  # create the schema before the first life, so the witness can read it
    violations: list[str] = []
    for modem in sim.modems:
        modem.storage.slots = DeleteWitness(modem.storage.slots, db, violations)

    submissions: list[tuple[int, str]] = []  # (life, text) per SMS that reached the network
    life = 0
    submit = sim.network.submit

    def recording_submit(sender: Any, part: Any) -> None:
        before = len(sim.network.sent)
        submit(sender, part)
        for record in sim.network.sent[before:]:
            submissions.append((life, str(record["text"])))

    sim.network.submit = recording_submit  # type: ignore[method-assign]

    accepted: dict[str, int] = {}  # text -> message id
    injected: list[tuple[int, str]] = []  # (modem, text)
    window_allowance: Counter[str] = Counter()  # texts submitted but not committed when killed
    out_n = in_n = 0
    kills = 0
    store = Store(db)
    loop = asyncio.get_running_loop()

    def enqueue(count: int) -> None:
        nonlocal out_n
        requests = []
        for _ in range(count):
            out_n += 1
            text = f"out {out_n}" + (LONG if out_n % 5 == 0 else "")
            requests.append(OutboundRequest(to=OUTSIDE, text=text, source="crash"))
        for request, result in zip(requests, store.enqueue(requests), strict=True):
            accepted[request.text] = result.id

    single: set[str] = set()  # injected single-part texts (checked against the SIM after every kill)

    def inject() -> None:
        nonlocal in_n
        in_n += 1
        modem = rng.randrange(len(sim.modems))
        text = f"in {in_n}"
        if in_n % 4 == 0:
            text += LONG * 3  # multipart
        elif in_n % 3 == 0:
            text += " 🚰 ✅"  # emoji: UCS-2 with a surrogate pair
        if sim.inject(modem, f"+49170{in_n:07d}", text) == 1:
            single.add(text)
        injected.append((modem, text))

    def committed_inbox() -> set[str]:
        return {str(row["text"]) for row in store.inbox(100000)}

    def sim_holds(modem: int, text: str) -> bool:
        from drivers.pdu import decode

        sm = sim.modems[modem]
        pdus = [sms.pdu for _, sms in sm.storage] + list(sm.waiting)
        for pdu in pdus:
            try:
                if getattr(decode(pdu), "text", None) == text:
                    return True
            except Exception:  # noqa: BLE001 - fillers or garbage are not ours
                continue
        return False

    started = time.monotonic()
    startups: list[float] = []
    timers: list[asyncio.TimerHandle] = []
    while kills < KILLS:
        life += 1
        enqueue(rng.choice((1, 2, 3)))
        daemon = await DaemonProcess(config).start()
        if life % 5 == 0:
            run_for = rng.uniform(0.0, 0.25)  # somewhere in its start-up
        else:
            spawned = time.monotonic()
            await daemon.wait_running()
            startups.append(time.monotonic() - spawned)
            run_for = rng.uniform(0.02, 0.3)
        for _ in range(rng.choice((0, 1, 1, 2))):
            timers.append(loop.call_later(rng.uniform(0.0, run_for), inject))
        await asyncio.sleep(run_for)  # the random moment of the kill
        assert daemon.running, daemon.log_text()[-3000:]
        await daemon.kill()
        kills += 1
        for timer in timers:
            timer.cancel()
        timers.clear()
        # classify this life's submissions: committed (TP-MR stored) or inside the window
        for when, text in submissions:
            if when == life and text in accepted:
                row = store.message(accepted[text])
                assert row is not None
                if row["state"] not in ("sent", "delivered"):
                    window_allowance[text] += 1
        # what is not committed must still be on the SIM (or held by the network)
        inbox = committed_inbox()
        lost = [(m, t) for m, t in injected if t in single and t not in inbox and not sim_holds(m, t)]
        assert not lost, f"after kill {kills}: injected SMS neither committed nor on the SIM: {lost}"
        assert not violations, violations
    cycle = (time.monotonic() - started) / kills

    # the last life runs to the end
    life += 1
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running()
        await async_wait_until(lambda: all(
            (store.message(i) or {}).get("state") in ("sent", "delivered") for i in accepted.values()),
            timeout=60, what="every accepted message sent")
        await async_wait_until(lambda: {t for _, t in injected} <= committed_inbox(), timeout=60,
                               what="every injected SMS committed")
        await async_wait_until(lambda: all(sm.storage.used == 0 and not sm.waiting for sm in sim.modems),
                               timeout=30, what="SIMs emptied")
    finally:
        status = await daemon.stop()
    assert status == 0

    journal = [json.loads(line) for line in (sim.directory / "network.jsonl").read_text().splitlines() if line]
    counts = Counter(str(record["text"]) for record in journal)
    missing = [text for text in accepted if counts[text] == 0]
    assert not missing, f"accepted but never sent: {missing}"
    unexplained = {text: n for text, n in counts.items() if n > 1 + window_allowance[text]}
    assert not unexplained, f"duplicates outside the +CMGS-to-commit window: {unexplained}"
    inbox_counts = Counter(str(row["text"]) for row in store.inbox(100000))
    assert all(inbox_counts[t] == 1 for _, t in injected), "an injected SMS is missing or stored twice"
    assert not violations, violations
    duplicates = sum(n - 1 for n in counts.values())
    split = {}  # concatenation groups of one outbound message seen from more than one modem
    for part in sim.network.parts:
        if part["total"] > 1:
            split.setdefault((part["to"], part["concat_reference"], part["total"]), set()).add(part["modem"])
    assert all(len(modems) == 1 for modems in split.values()), f"multipart split over modems: {split}"
    store.close()
    left_on_sim = sum(sm.storage.used for sm in sim.modems)
    print(f"\naccepted {len(accepted)}, delivered to the network {sum(1 for t in accepted if counts[t])}, lost "
          f"{len(missing)}, duplicated {duplicates} (all inside the window), injected {len(injected)}, stored "
          f"{sum(inbox_counts[t] for _, t in injected)}, left on the SIM {left_on_sim}")
    startup = sorted(startups)[len(startups) // 2] if startups else float("nan")
    print(f"\n{kills} kills, {cycle * 1000:.0f} ms per cycle, start-up median {startup * 1000:.0f} ms, {len(accepted)} messages out "
          f"({duplicates} duplicate(s) inside the window), {len(injected)} in, "
          f"{sum(w.deleted for w in (sm.storage.slots for sm in sim.modems))} SIM deletions checked")
