"""The status page's history (schema 11): the sampler writes one sample a minute of each modem's
signal and of the queue, on a real SQLite file, driven by an injected clock so no test waits a minute;
the samples leave with the store's retention; the chart query uses its index; the daemon samples."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from http_fixtures import GatewayFactory
from store_helpers import T0, Clock, connection
from test_store_plans import plan
from waiting import async_wait_until

from appliance.history import HistorySampler, signal_dbm
from appliance.store import OutboundRequest, Store

pytest_plugins = ["store_fixtures", "daemon_helpers", "http_fixtures"]

MINUTE = 60.0
START = (T0 // MINUTE) * MINUTE + 20.0  # 20 s into a minute


class Sleeper:
    """``asyncio.sleep`` for the sampler that moves the test's clock instead of waiting; it stops the
    sampler's loop (by blocking) after ``wakes`` sleeps."""

    def __init__(self, clock: Clock, wakes: int, extra: float = 0.0) -> None:
        self.clock = clock
        self.wakes = wakes
        self.extra = extra  # seconds the "machine" oversleeps on each wake (a suspend, a loaded loop)
        self.asked: list[float] = []
        self.done = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if len(self.asked) > self.wakes:
            self.done.set()
            await asyncio.Event().wait()  # until cancelled by stop()
        self.clock.advance(seconds + self.extra)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


async def test_the_sampler_writes_one_sample_a_minute_at_the_minute(store: Store, clock: Clock) -> None:
    radio = {"sim0": -71.0, "sim1": None}
    sleeper = Sleeper(clock, wakes=3)
    sampler = HistorySampler(store, lambda: radio, clock=clock, sleep=sleeper)
    store.enqueue([OutboundRequest(to="+4915112345678", text=f"m{n}", source="cli") for n in range(3)])
    await sampler.start()
    await asyncio.wait_for(sleeper.done.wait(), 5)
    await sampler.stop()
    minute = START - 20.0
    assert sleeper.asked[0] == pytest.approx(40.0)  # to the next minute, then a minute each
    assert sleeper.asked[1:3] == [pytest.approx(MINUTE)] * 2
    history = store.history(minute - 1)
    times = [minute + n * MINUTE for n in range(4)]
    assert history[("signal", "sim0")] == [(t, -71.0) for t in times]
    assert history[("signal", "sim1")] == [(t, None) for t in times]  # no reading: a gap in the chart
    assert history[("queue", "queued")] == [(t, 3.0) for t in times]
    assert history[("queue", "sending")] == [(t, 0.0) for t in times]
    assert set(history) == {("signal", "sim0"), ("signal", "sim1"), ("queue", "queued"), ("queue", "sending")}


async def test_a_clock_that_jumps_gives_one_sample_not_a_burst(store: Store, clock: Clock) -> None:
    sleeper = Sleeper(clock, wakes=2, extra=3.5 * MINUTE)
    sampler = HistorySampler(store, lambda: {"sim0": -80.0}, clock=clock, sleep=sleeper)
    await sampler.start()
    await asyncio.wait_for(sleeper.done.wait(), 5)
    await sampler.stop()
    samples = store.history(0)[("signal", "sim0")]
    assert len(samples) == 3
    assert all(t % MINUTE == 0 for t, _ in samples)
    assert [b[0] - a[0] for a, b in zip(samples, samples[1:], strict=False)] == [4 * MINUTE, 4 * MINUTE]


def test_a_minute_is_sampled_once_even_across_a_restart(store: Store, clock: Clock) -> None:
    first = HistorySampler(store, lambda: {"sim0": -90.0}, clock=clock)
    assert first.sample() is True and first.sample(START + 30) is False
    again = HistorySampler(store, lambda: {"sim0": -60.0}, clock=clock)  # a restarted daemon, same minute
    assert again.sample(START + 35) is True
    assert store.history(0)[("signal", "sim0")] == [(START - 20.0, -60.0)]  # replaced, not added


async def test_a_failed_write_is_logged_and_the_next_minute_samples_again(store: Store, clock: Clock,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    conn = connection(store)
    conn.execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON history_sample "
                 "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    sleeper = Sleeper(clock, wakes=1)
    sampler = HistorySampler(store, lambda: {"sim0": -75.0}, clock=clock, sleep=sleeper)

    original = sleeper.__call__

    async def heal(seconds: float) -> None:
        conn.execute("DROP TRIGGER IF EXISTS refuse")
        await original(seconds)

    sampler.sleep = heal
    await sampler.start()
    await asyncio.wait_for(sleeper.done.wait(), 5)
    await sampler.stop()
    assert "history sample not recorded: disk on fire" in caplog.text
    assert store.history(0)[("signal", "sim0")] == [(START - 20.0 + MINUTE, -75.0)]


def test_samples_leave_with_the_retention(store: Store, clock: Clock) -> None:
    day = 86400.0
    for age_days in (40, 31, 29, 1):
        store.record_samples(START - age_days * day, [("queue", "queued", 1.0), ("signal", "sim0", -70.0)])
    totals = store.prune(START, retention_days=30)
    assert totals["history_samples"] == 4
    assert [t for t, _ in store.history(0)[("queue", "queued")]] == [START - 29 * day, START - day]
    assert store.prune(START, retention_days=0).get("history_samples", 0) == 0  # 0: kept forever


def test_the_chart_query_and_the_pruning_use_the_time_index(store: Store) -> None:
    conn = connection(store)
    steps = plan(conn, "SELECT at, kind, key, value FROM history_sample WHERE at >= 0 ORDER BY at")
    assert any("USING INDEX history_sample_at" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps
    steps = plan(conn, "SELECT id FROM history_sample WHERE at < 0 ORDER BY at LIMIT 10")
    assert any("history_sample_at" in step for step in steps), steps


def test_signal_readings_of_the_supervisor() -> None:
    assert signal_dbm({"signal": {"dbm": -73, "percent": 65}}) == -73.0
    assert signal_dbm({"signal": {"dbm": None}}) is None and signal_dbm({}) is None
    assert signal_dbm({"signal": {"dbm": True}}) is None


async def test_the_daemon_samples_while_http_is_on(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gateway = await gateway_factory()

    async def sampled() -> bool:
        with Store(gateway.db) as store:
            history = store.history(0)
        return ("queue", "queued") in history and {("signal", "sim0"), ("signal", "sim1")} <= set(history)

    await async_wait_until(sampled, timeout=15, interval=0.1, what="the first sample at start")
