"""Modem supervision on the simulator (hang, unplug, power cycle) and the GPIO with gpiozero's MockFactory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin
from modem_fixtures import TEST_TIMEOUTS
from waiting import async_wait_until

from appliance.hardware import OFF_SETTLE, PowerControl, StatusLed
from appliance.health import ModemSupervisor
from appliance.store import Store
from drivers.modem import Modem
from drivers.profiles import PowerKey, load_profile
from drivers.simulator import Simulator

FAST = {"ping_interval": 0.1, "failures_allowed": 1, "backoff_base": 0.1, "backoff_max": 0.3, "port_wait": 3.0}


class Recorder:
    def __init__(self) -> None:
        self.health: list[bool] = []
        self.recovered = 0

    def on_healthy(self, _modem_id: str, healthy: bool) -> None:
        self.health.append(healthy)

    def on_recovered(self, _modem: Modem) -> None:
        self.recovered += 1


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic", control=False) as simulator:
        yield simulator


@pytest.fixture
def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "smsgw.db")
    yield s  # type: ignore[misc]
    s.close()


@pytest.fixture
async def supervise(sim: Simulator, store: Store) -> AsyncIterator[Callable[..., tuple[ModemSupervisor, Recorder]]]:
    made: list[tuple[ModemSupervisor, Modem]] = []

    def make(**kw: Any) -> tuple[ModemSupervisor, Recorder]:
        modem = Modem(sim.ports[0], modem_id="sim0", profile="generic",
                      timeouts={**TEST_TIMEOUTS, "command": 0.5, "sync": 0.2, "boot": 1.0})
        recorder = Recorder()
        supervisor = ModemSupervisor(modem, store, on_healthy=recorder.on_healthy,
                                     on_recovered=recorder.on_recovered, **{**FAST, **kw})
        made.append((supervisor, modem))
        supervisor.start()
        return supervisor, recorder

    yield make
    for supervisor, modem in made:
        await supervisor.stop()
        await modem.close()


def modem_state(store: Store) -> dict[str, Any]:
    return store.state_get("modem", "sim0") or {}


async def test_opens_the_modem_and_publishes_its_state(supervise: Callable[..., Any], store: Store) -> None:
    supervisor, recorder = supervise()
    await async_wait_until(lambda: modem_state(store).get("state") == "online", timeout=5)
    await async_wait_until(lambda: "signal" in modem_state(store), timeout=5, what="radio state")
    state = modem_state(store)
    assert state["healthy"] is True and state["profile"] == "generic" and state["imei"]
    assert state["registration"]["state"] in ("home", "roaming") and state["sim"] == "READY"
    assert isinstance(state["signal"]["dbm"], int) and state["operator"]["name"]
    assert recorder.health == [True] and recorder.recovered == 1
    events = [e for e in store.events_pending(100) if e.topic == "modem/sim0"]
    assert events and events[-1].retain and events[-1].payload["state"] == "online"


async def test_a_hung_modem_is_unhealthy_until_it_answers_again(supervise: Callable[..., Any], store: Store,
                                                                sim: Simulator) -> None:
    supervisor, recorder = supervise()
    await async_wait_until(lambda: supervisor.healthy, timeout=5)
    sim.fault(0, "hang")
    await async_wait_until(lambda: recorder.health == [True, False], timeout=5, what="declared unhealthy")
    await async_wait_until(lambda: modem_state(store).get("state") == "offline", timeout=10,
                           what="ladder exhausted (reset and reopen both fail while hung)")
    assert modem_state(store)["last_error"]
    sim.fault(0, "recover")
    await async_wait_until(lambda: supervisor.healthy, timeout=10, what="back after recover")
    assert recorder.health == [True, False, True] and supervisor.recoveries >= 1
    assert modem_state(store)["state"] == "online"


async def test_the_error_clears_on_recovery_and_the_last_error_keeps_its_time(
        supervise: Callable[..., Any], store: Store, sim: Simulator) -> None:
    """``error`` is the modem's problem now (None when healthy); ``last_error`` and ``last_error_at``
    keep the last one seen, also in the retained ``modem/<id>`` published after the recovery."""
    supervisor, recorder = supervise()
    await async_wait_until(lambda: supervisor.healthy, timeout=5)
    assert modem_state(store)["error"] is None and modem_state(store)["last_error"] is None
    sim.fault(0, "hang")
    await async_wait_until(lambda: modem_state(store).get("error"), timeout=10, what="error published")
    down = modem_state(store)
    assert down["last_error"] == down["error"] and isinstance(down["last_error_at"], float)
    sim.fault(0, "recover")
    await async_wait_until(lambda: modem_state(store).get("state") == "online", timeout=10, what="back online")
    up = modem_state(store)
    assert up["error"] is None
    assert up["last_error"] and up["last_error_at"] >= down["last_error_at"]
    published = [e.payload for e in store.events_pending(1000) if e.topic == "modem/sim0"][-1]
    assert published["state"] == "online" and published["error"] is None and published["last_error"]


async def test_an_unplugged_modem_is_reopened_when_its_port_reappears(supervise: Callable[..., Any],
                                                                      store: Store, sim: Simulator) -> None:
    supervisor, recorder = supervise()
    await async_wait_until(lambda: supervisor.healthy, timeout=5)
    sim.fault(0, "unplug")
    await async_wait_until(lambda: not supervisor.healthy, timeout=5, what="unplug noticed")
    await asyncio.sleep(0.3)  # several recovery attempts while the port is gone
    assert not supervisor.healthy
    sim.fault(0, "replug")
    await async_wait_until(lambda: supervisor.healthy, timeout=10, what="reopened after replug")
    assert recorder.recovered >= 2 and modem_state(store)["recoveries"] >= 1


async def test_a_modem_that_never_opens_is_retried_with_backoff(supervise: Callable[..., Any], store: Store,
                                                                sim: Simulator) -> None:
    sim.fault(0, "unplug")
    supervisor, recorder = supervise(port_wait=0.1)
    await async_wait_until(lambda: modem_state(store).get("state") == "offline", timeout=5)
    await async_wait_until(lambda: supervisor.rounds >= 2, timeout=5, what="several rounds")
    sim.fault(0, "replug")
    await async_wait_until(lambda: supervisor.healthy, timeout=10)
    assert recorder.health == [True] and supervisor.rounds == 0


# --- power key and LED -------------------------------------------------------------------------


class WiredPin(MockPin):
    """A mock GPIO wired to the simulated modem's power key: press = high, release = low."""

    listeners: list[Callable[[int, bool], None]] = []

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        for listener in WiredPin.listeners:
            listener(self._number, value)
        return changed


async def test_power_cycle_through_the_power_key_brings_a_dead_modem_back(
    supervise: Callable[..., Any], store: Store, sim: Simulator
) -> None:
    presses: list[float] = []
    loop = asyncio.get_running_loop()
    pressed_at: list[float] = []

    def wiring(_pin: int, high: bool) -> None:
        if high:
            pressed_at.append(loop.time())
            return
        if not pressed_at:  # the initial low when the output is set up
            return
        presses.append(loop.time() - pressed_at[-1])
        if len(presses) == 1:  # the off-pulse: the module powers down
            sim.fault(0, "unplug")
        elif len(presses) == 2:  # the on-pulse: it boots again, answering
            sim.fault(0, "recover")
            sim.fault(0, "replug")

    WiredPin.listeners = [wiring]
    factory = MockFactory(pin_class=WiredPin)
    try:
        timing = PowerKey(on_pulse=0.05, off_pulse=0.08, boot_time=0.05)
        power = PowerControl(17, timing, pin_factory=factory)
        supervisor, recorder = supervise(power=power)
        await async_wait_until(lambda: supervisor.healthy, timeout=5)
        sim.fault(0, "hang")  # hung for good: only the power key helps
        await async_wait_until(lambda: len(presses) == 2, timeout=15, what="power cycle")
        await async_wait_until(lambda: supervisor.healthy, timeout=10, what="back after the power cycle")
        assert presses[0] == pytest.approx(0.08, abs=0.05) and presses[1] == pytest.approx(0.05, abs=0.05)
        assert factory.pin(17).state is False  # released
        power.close()
    finally:
        WiredPin.listeners = []


async def test_power_key_pulses_follow_the_profile_timing_and_always_release() -> None:
    factory = MockFactory()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    timing = load_profile("sim800").power_key
    assert timing is not None
    power = PowerControl(4, timing, pin_factory=factory, sleep=sleep)
    await power.power_cycle()
    assert waits == [timing.off_pulse, OFF_SETTLE, timing.on_pulse, timing.boot_time]
    assert [s.state for s in factory.pin(4).states] == [False, True, False, True, False]
    waits.clear()
    await power.power_on()
    assert waits == [timing.on_pulse, timing.boot_time]

    async def interrupted(seconds: float) -> None:
        raise asyncio.CancelledError

    power.sleep = interrupted
    with pytest.raises(asyncio.CancelledError):
        await power.press(1.0)
    assert factory.pin(4).state is False  # a cancelled press never leaves the key held
    power.close()


def test_status_led_shows_ok_degraded_down() -> None:
    factory = MockFactory()
    led = StatusLed(27, pin_factory=factory)
    led.show("ok")
    assert factory.pin(27).state is True
    led.show("down")
    led.show("off")
    assert factory.pin(27).state is False
    led.close()
