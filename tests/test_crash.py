"""Crash test: SIGKILL the daemon at random moments while SMS flow both ways on every intake channel.

One simulator (two modems) and one real mosquitto (tests/mosquitto.py, never killed) serve every
daemon life. Each cycle: requests arrive on every intake channel, with unique texts (single,
multipart, emoji) — ``B/send`` JSON with an ``id`` and without one, ``B/send/<number>`` with the text
as the payload (published before the life starts, so the broker queues them in the daemon's
persistent session, and at random moments of the life), and ``smsgw send`` (the CLI as its own
process, running while the daemon lives and dies); SMS (single, multipart, emoji) are injected at
random moments. The daemon runs a random 20-300 ms (one cycle in five is killed at a random moment of
its start-up instead; one in two waits for the MQTT connection first, so kills land in request
commits) and is killed with ``kill -9``. After the last kill a daemon runs to the end and stops with
SIGTERM. Then, with *accepted* meaning the broker acknowledged the publish (QoS 1; the daemon's
persistent session holds it) or ``smsgw send`` exited 0:

- every accepted request reached the simulated network (``network.jsonl``) at least once (lost = 0);
- a request with an ``id``, and every ``smsgw send``, is queued exactly once; a request without an
  ``id`` may be queued once more per daemon life that committed it and was killed before its PUBACK
  (the broker redelivers it: docs/mqtt.md, "Exactly once needs id"), never twice in one life;
- a message reached the network more often than it was queued only if a daemon life was killed
  after the modem accepted it and before its TP-MR was committed (the ``AT+CMGS`` window,
  docs/reliability.md): after every kill each submission of that life is classified (committed, or
  inside the window), and duplicates beyond those are failures;
- every injected SMS is in the store's inbox exactly once and was published on ``B/received``;
- no multipart message left through two modems (every part on the simulated network, by sender);
- no SIM slot was ever deleted before its message was committed: every deletion in the simulator
  is checked against the store file at the moment it happens, and after every kill every injected
  SMS not yet in the store is still on the SIM (or still held by the network); at the end the SIMs
  are empty.

``SMSGW_CRASH_KILLS`` sets the number of kills (default 40; ``bench/faults.py --kills 1000`` runs
the long campaign), ``SMSGW_CRASH_SEED`` the random moments.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from mosquitto import Broker, Probe
from store_helpers import connection
from waiting import async_wait_until

from appliance.store import Store
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto"]

KILLS = int(os.environ.get("SMSGW_CRASH_KILLS", "40"))
OUTSIDE = "+4915112345678"
LONG = " and the pump in station seven reports a pressure drop that needs a look"  # makes 2 parts
#: The intake channels, in turn: B/send with an id, B/send without one, B/send/<number>, smsgw send.
MQTT_ID, MQTT_PLAIN, MQTT_TOPIC, CLI = "B/send with id", "B/send without id", "B/send/<number>", "smsgw send"
#: Channels whose requests carry no id: a redelivery after a kill is queued again.
WITHOUT_ID = {MQTT_PLAIN, MQTT_TOPIC}
SENT = ("sent", "delivered")


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


async def cli_send(config: Path, text: str) -> tuple[str, int, str]:
    """``smsgw send`` as its own process: (text, exit status, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "send", "--config", str(config), OUTSIDE, text,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=daemon_env(), cwd=ROOT)
    _, err = await proc.communicate()
    assert proc.returncode is not None
    return text, proc.returncode, err.decode(errors="replace")


@pytest.mark.timeout(120 + KILLS * 10)  # a hang guard: a loaded machine can take 3 s a cycle
async def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, sim: Simulator, mosquitto: Broker) -> None:
    seed = int(os.environ.get("SMSGW_CRASH_SEED", str(time.time_ns())))
    print(f"SMSGW_CRASH_SEED={seed}")  # shown with a failure: rerun with the same moments
    rng = random.Random(seed)
    mqtt = (f'\n[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "gw-storm"\n'
            "reconnect_min = 0.2\nreconnect_max = 0.5\n")
    config = write_config(tmp_path / "gw", sim.ports, sweep_interval=0.5, extra=mqtt)
    db = tmp_path / "gw" / "smsgw.db"
    Store(db).close()  # create the schema before the first life, so the witness can read it
    violations: list[str] = []
    for modem in sim.modems:
        modem.storage.slots = DeleteWitness(modem.storage.slots, db, violations)
    probe = Probe(mosquitto, "smsgw/received", "smsgw/bridge/state", client_id="storm-probe", clean=False)

    submissions: list[tuple[int, str]] = []  # (life, text) per SMS that reached the network
    life = 0
    submit = sim.network.submit

    def recording_submit(sender: Any, part: Any) -> None:
        before = len(sim.network.sent)
        submit(sender, part)
        for record in sim.network.sent[before:]:
            submissions.append((life, str(record["text"])))

    sim.network.submit = recording_submit  # type: ignore[method-assign]

    channel_of: dict[str, str] = {}  # request text -> its intake channel
    published: list[tuple[str, Any]] = []  # (text, paho MQTTMessageInfo): accepted once the broker acks it
    cli_runs: list[asyncio.Task[tuple[str, int, str]]] = []
    injected: list[tuple[int, str]] = []  # (modem, text)
    single: set[str] = set()  # injected single-part texts (checked against the SIM after every kill)
    window_allowance: Counter[str] = Counter()  # texts submitted but not committed when killed
    row_life: dict[int, int] = {}  # message id -> the daemon life that committed it (or during which smsgw send did)
    sent_before: Counter[str] = Counter()  # rows per text committed as sent, at the previous check
    out_n = in_n = 0
    kills = 0
    store = Store(db)
    loop = asyncio.get_running_loop()

    def next_text() -> tuple[str, str]:
        nonlocal out_n
        out_n += 1
        channel = (MQTT_ID, MQTT_PLAIN, MQTT_TOPIC, CLI)[out_n % 4]
        text = f"out {out_n}" + (LONG if out_n % 5 == 0 else " 🚰" if out_n % 7 == 0 else "")
        channel_of[text] = channel
        return channel, text

    def publish_request() -> None:
        channel, text = next_text()
        while channel == CLI:
            channel_of.pop(text)
            channel, text = next_text()
        if channel == MQTT_TOPIC:
            topic, payload = "smsgw/send/" + "00" + OUTSIDE[1:], text
        else:
            request: dict[str, Any] = {"to": OUTSIDE, "text": text}
            if channel == MQTT_ID:
                request["id"] = f"key-{out_n}"
            topic, payload = "smsgw/send", json.dumps(request)
        published.append((text, probe.client.publish(topic, payload, qos=1)))

    def start_cli() -> None:
        if sum(not task.done() for task in cli_runs) >= 2:
            return  # a loaded machine: do not pile up interpreters
        _, text = next_text()
        channel_of[text] = CLI
        cli_runs.append(asyncio.ensure_future(cli_send(config, text)))

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

    def message_rows() -> list[sqlite3.Row]:
        return connection(store).execute("SELECT id, text, state FROM message").fetchall()

    started = time.monotonic()
    startups: list[float] = []
    timers: list[asyncio.TimerHandle] = []
    while kills < KILLS:
        life += 1
        if life > 1:  # (before the first life the broker has no session to queue them in)
            for _ in range(rng.choice((0, 1, 2, 3))):
                publish_request()  # queued by the broker in the daemon's session while it is away
        if rng.random() < 0.5:
            start_cli()
        daemon = await DaemonProcess(config).start()
        if life == 1:  # the daemon's session and subscriptions exist before anything is published
            await daemon.wait_running(timeout=30)
            await async_wait_until(lambda: {"state": "online"} in probe.json("smsgw/bridge/state"), timeout=15,
                                   what="the first life online on the broker")
        if life % 5 == 0:
            run_for = rng.uniform(0.0, 0.25)  # somewhere in its start-up
        else:
            spawned = time.monotonic()
            await daemon.wait_running(timeout=30)
            startups.append(time.monotonic() - spawned)
            if rng.random() < 0.5:
                await async_wait_until(lambda d=daemon: not d.running or "MQTT connected" in d.log_text(d.log_offset),
                                       timeout=30, interval=0.005, what="MQTT connected")
            run_for = rng.uniform(0.02, 0.3)
        for _ in range(rng.choice((0, 1, 1, 2))):
            timers.append(loop.call_later(rng.uniform(0.0, run_for), inject))
        for _ in range(rng.choice((0, 1, 2))):
            timers.append(loop.call_later(rng.uniform(0.0, run_for), publish_request))
        await asyncio.sleep(run_for)  # the random moment of the kill
        assert daemon.running, daemon.log_text()[-3000:]
        await daemon.kill()
        kills += 1
        for timer in timers:
            timer.cancel()
        timers.clear()
        # which life committed each new row; this life's submissions: committed (TP-MR stored) or
        # inside the window
        rows = message_rows()
        for row in rows:
            row_life.setdefault(row["id"], life)
        sent_now = Counter(str(row["text"]) for row in rows if row["state"] in SENT)
        for text, count in Counter(t for when, t in submissions if when == life).items():
            window_allowance[text] += max(0, count - (sent_now[text] - sent_before[text]))
        sent_before = sent_now
        # what is not committed must still be on the SIM (or held by the network)
        inbox = committed_inbox()
        lost_in = [(m, t) for m, t in injected if t in single and t not in inbox and not sim_holds(m, t)]
        assert not lost_in, f"after kill {kills}: injected SMS neither committed nor on the SIM: {lost_in}"
        assert not violations, violations
        if kills % 100 == 0:
            print(f"after {kills} kills: {len(channel_of)} requests, {len(injected)} SMS injected, "
                  f"{(time.monotonic() - started) / kills * 1000:.0f} ms per cycle", flush=True)
    cycle = (time.monotonic() - started) / kills

    cli_results = await asyncio.gather(*cli_runs)
    refused = [(text, status, err) for text, status, err in cli_results if status != 0]
    assert not refused, f"smsgw send refused: {refused}"
    await async_wait_until(lambda: all(info.is_published() for _, info in published), timeout=30,
                           what="every MQTT request acknowledged by the broker")
    accepted = {text: channel for text, channel in channel_of.items()}

    # the last life runs to the end
    life += 1
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running(timeout=30)

        def all_sent() -> bool:
            rows = message_rows()
            return set(accepted) <= {str(r["text"]) for r in rows} and all(r["state"] in SENT for r in rows)

        await async_wait_until(all_sent, timeout=90, what="every accepted request queued and sent")
        await async_wait_until(lambda: {t for _, t in injected} <= committed_inbox(), timeout=60,
                               what="every injected SMS committed")
        await async_wait_until(lambda: all(sm.storage.used == 0 and not sm.waiting for sm in sim.modems),
                               timeout=30, what="SIMs emptied")
        await async_wait_until(lambda: {t for _, t in injected} <= {str(m["text"]) for m in probe.json("smsgw/received")},  # type: ignore[index]
                               timeout=30, what="every injected SMS published on B/received")
    finally:
        status = await daemon.stop()
        probe.close()
    assert status == 0

    rows = message_rows()
    for row in rows:
        row_life.setdefault(row["id"], life)
    queued: dict[str, list[int]] = {}
    for row in rows:
        queued.setdefault(str(row["text"]), []).append(row_life[row["id"]])
    assert set(queued) == set(accepted), f"queued but never requested: {set(queued) - set(accepted)}"
    twice = {t: lives for t, lives in queued.items() if len(lives) > 1 and accepted[t] not in WITHOUT_ID}
    assert not twice, f"a request with an id or from smsgw send queued more than once: {twice}"
    same_life = {t: lives for t, lives in queued.items() if len(lives) != len(set(lives))}
    assert not same_life, f"a request queued twice by one daemon life: {same_life}"

    journal = [json.loads(line) for line in (sim.directory / "network.jsonl").read_text().splitlines() if line]
    counts = Counter(str(record["text"]) for record in journal)
    missing = [text for text in accepted if counts[text] == 0]
    assert not missing, f"accepted but never sent: {missing}"
    unexplained = {text: n for text, n in counts.items() if n > len(queued[text]) + window_allowance[text]}
    assert not unexplained, f"duplicates outside the +CMGS-to-commit window: {unexplained}"
    inbox_counts = Counter(str(row["text"]) for row in store.inbox(100000))
    assert all(inbox_counts[t] == 1 for _, t in injected), "an injected SMS is missing or stored twice"
    published_in = Counter(str(m["text"]) for m in probe.json("smsgw/received"))  # type: ignore[index]
    assert not violations, violations
    split: dict[tuple[Any, ...], set[int]] = {}  # concatenation groups of one outbound message seen from more than one modem
    for part in sim.network.parts:
        if part["total"] > 1:
            split.setdefault((part["to"], part["concat_reference"], part["total"]), set()).add(part["modem"])
    assert all(len(modems) == 1 for modems in split.values()), f"multipart split over modems: {split}"
    store.close()
    left_on_sim = sum(sm.storage.used for sm in sim.modems)
    assert left_on_sim == 0

    redelivered = sum(len(lives) - 1 for lives in queued.values())
    duplicates = sum(n - 1 for n in counts.values())
    by_channel = Counter(accepted.values())
    print(f"\naccepted {len(accepted)} ({', '.join(f'{c} {n}' for c, n in sorted(by_channel.items()))}), "
          f"delivered to the network {sum(1 for t in accepted if counts[t])}, lost {len(missing)}, "
          f"duplicated {duplicates} ({redelivered} redelivered without an id, {duplicates - redelivered} "
          f"inside the AT+CMGS window), injected {len(injected)}, stored {sum(inbox_counts[t] for _, t in injected)}, "
          f"published {sum(1 for _, t in injected if published_in[t])} "
          f"({sum(published_in[t] for _, t in injected) - len(injected)} again after a kill), "
          f"left on the SIM {left_on_sim}")
    startup = sorted(startups)[len(startups) // 2] if startups else float("nan")
    print(f"\n{kills} kills, {cycle * 1000:.0f} ms per cycle, start-up median {startup * 1000:.0f} ms, "
          f"{len(accepted)} messages out, {len(injected)} in, "
          f"{sum(w.deleted for w in (sm.storage.slots for sm in sim.modems) if isinstance(w, DeleteWitness))} "
          "SIM deletions checked")
