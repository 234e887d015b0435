"""Per-modem supervision: open, ping, and the recovery ladder with backoff.

A ``ModemSupervisor`` owns one modem's life: it opens it, pings it every ``ping_interval``
seconds (``AT`` at HEALTH priority, ahead of queued sends) and, when pings fail
``failures_allowed`` times in a row or the port closes, marks the modem unhealthy for the
dispatcher (its work moves to other modems) and climbs the recovery ladder:

1. soft reset (the profile's reset command; the Modem waits for a re-enumerating port),
2. close and reopen: wait for the port path to reappear (USB re-enumeration), then ``open()``,
3. power cycle through the power key GPIO (only when ``power_gpio`` is configured).

A modem configured with ``port = "auto"`` is given a ``locate`` function: before every open the
supervisor asks it for the port whose modem has the configured IMEI/ICCID, and while waiting for a
vanished port it looks again, so a modem that comes back under another name (hot-plug, USB
re-enumeration) is found there. A modem or SIM that is not the configured one (``IdentityError``)
is kept out of rotation in the state "wrong modem" / "wrong sim", and tried again with backoff.

A SIM that is not READY (it asks for its PIN again after a brown-out, or is busy or gone) is
noticed by the ``AT+CPIN?`` that follows every ping, by the ``+CPIN:`` URCs modems send on a SIM
state change (``sim_changed``) and by a send refused with a SIM-state error (``sim_suspect``, from
the dispatcher). The modem leaves rotation at once and the PIN is entered again through the
Modem's PIN guard (``Modem.unlock_sim``: never a PIN the SIM rejected, never with fewer than
``MIN_PIN_ATTEMPTS`` attempts left). When the guard refuses, the modem stays out ("SIM locked")
and the state is looked at again with backoff (the SIM may be unlocked in a phone); the ladder
below is not climbed for a SIM that answers.

When a rung brings the modem back, it is healthy again, the dispatcher gets it back and the
inbound side sweeps its storage (SMS may have arrived while it was away). When the whole
ladder fails, the supervisor waits (exponential backoff, ``backoff_base`` doubling up to
``backoff_max``) and starts again from the reopen rung. Every state change is written to the
store (``state_set("modem", id, {...})``) and queued as the retained event ``modem/<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from appliance.store import Store
from drivers.at import Priority
from drivers.errors import AtError, IdentityError, PinError, is_sim_state_error
from drivers.parsers import access_technology

if TYPE_CHECKING:
    from appliance.hardware import PowerControl
    from drivers.modem import Modem

LOG = logging.getLogger("appliance.health")

PING_INTERVAL = 15.0
#: Seconds between two readings of signal, registration and operator (published when they change).
RADIO_INTERVAL = 60.0
FAILURES_ALLOWED = 2
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
#: Seconds to wait for a vanished port path to come back before giving up on this rung.
PORT_WAIT = 30.0
PORT_POLL = 0.1
#: Seconds between two searches for a ``port = "auto"`` modem while it is away (each probes ports).
LOCATE_POLL = 0.5

ONLINE = "online"
SIM_NOT_READY = "SIM not ready"
SIM_LOCKED = "SIM locked"
#: States logged at info level; the others (trouble and recovery) at warning level.
QUIET_STATES = (ONLINE, "starting", "opening", "stopped")


def port_exists(port: str) -> bool:
    return "://" in port or os.path.exists(port)


class ModemSupervisor:
    def __init__(
        self,
        modem: Modem,
        store: Store,
        *,
        on_healthy: Callable[[str, bool], None],
        on_recovered: Callable[[Modem], None] | None = None,
        power: PowerControl | None = None,
        ping_interval: float = PING_INTERVAL,
        failures_allowed: int = FAILURES_ALLOWED,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        port_wait: float = PORT_WAIT,
        radio_interval: float = RADIO_INTERVAL,
        extra_status: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        locate: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self.modem = modem
        self.locate = locate
        self._identity_state: str | None = None  # "wrong sim" / "wrong modem" after an IdentityError
        self.store = store
        self.on_healthy = on_healthy
        self.on_recovered = on_recovered
        self.power = power
        self.ping_interval = ping_interval
        self.failures_allowed = max(1, failures_allowed)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.port_wait = port_wait
        self.radio_interval = radio_interval
        self.radio: dict[str, Any] = {}  # signal, registration, operator, sim: the last reading
        self._radio_due = 0.0
        self.extra_status = extra_status
        self.clock = clock
        self.state = "starting"
        self.healthy = False
        #: the current error (None while the modem is healthy) and the last one seen, with its time
        self.error: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.failures = 0
        self.recoveries = 0
        self.recoveries_by_rung: dict[str, int] = {}  # "soft reset", "reopening", "power cycle", "entering PIN"
        self.rounds = 0  # failed ladder rounds since the last success
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sim_trouble = False  # the SIM is not READY: recovery enters the PIN, not the ladder
        self._check_sim = False  # a +CPIN: URC or a SIM-state send error: the next sleep is skipped
        self._last_failure: BaseException | None = None
        modem.on_sim_state = self.sim_changed

    @property
    def modem_id(self) -> str:
        return self.modem.modem_id

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"health-{self.modem_id}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def port_closed(self, error: str | None) -> None:
        """The Modem reported its port closed: check at once."""
        if self._stopping:
            return
        if error:
            self._note_error(error)
        self._wake.set()

    def sim_changed(self, state: str) -> None:
        """An unsolicited ``+CPIN: <state>``: check the SIM now (READY after trouble: recover now)."""
        if self._stopping:
            return
        self._check_sim = True
        self._wake.set()

    def sim_suspect(self, error: str) -> None:
        """A send failed with a SIM-state error (CMS 310-318, CME 10-18): check the SIM now."""
        if self._stopping:
            return
        self._note_error(error)
        self._check_sim = True
        self._wake.set()

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        identity = self.modem.identity
        status: dict[str, Any] = {
            "id": self.modem_id,
            "state": self.state,
            "healthy": self.healthy,
            "port": getattr(self.modem, "port", None),
            "profile": getattr(getattr(self.modem, "profile", None), "name", None),
            "model": " ".join(x for x in (identity.manufacturer, identity.model) if x) or None,
            "manufacturer": identity.manufacturer or None,
            "revision": identity.revision or None,
            "imei": identity.imei or None,
            "error": self.error,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "recoveries": self.recoveries,
            **self.radio,
            "at": self.clock(),
        }
        if self.extra_status is not None:
            status.update(self.extra_status(self.modem_id))
        return status

    def _set(self, state: str, *, healthy: bool | None = None, error: str | None = None) -> None:
        changed = state != self.state or (healthy is not None and healthy != self.healthy)
        self.state = state
        if error is not None:
            self._note_error(error)
        if healthy is not None and healthy != self.healthy:
            self.healthy = healthy
            self.on_healthy(self.modem_id, healthy)
        if changed:
            LOG.log(logging.INFO if state in QUIET_STATES else logging.WARNING, "modem %s %s%s", self.modem_id,
                    state, f" error={error}" if error else "")
            self.publish()

    def _note_error(self, error: str) -> None:
        self.error = self.last_error = error
        self.last_error_at = self.clock()

    def publish(self) -> None:
        status = self.status()
        try:
            self.store.state_set("modem", self.modem_id, status)
            self.store.add_event(f"modem/{self.modem_id}", status, retain=True)
        except Exception:
            LOG.exception("writing the state of %s failed", self.modem_id)

    # --- the loop ----------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        if self._check_sim:  # a +CPIN: URC or a SIM-state send error came while busy: look now
            self._check_sim = False
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))

    async def _run(self) -> None:
        try:
            await self._attempt("opening", self._open)
            while not self._stopping:
                if not self.healthy:
                    await self._recover()
                    continue
                await self._sleep(self.ping_interval)
                if self._stopping:
                    break
                if not self.modem.is_open:
                    self._set("port closed", healthy=False)
                    continue
                try:
                    await self.modem.ping()
                    self.failures = 0
                    sim = await self._sim_state()
                    if sim != "READY":
                        self.sim_trouble = True
                        self._set(SIM_NOT_READY, healthy=False, error=f"the SIM says {sim}")
                        continue
                    if asyncio.get_running_loop().time() >= self._radio_due:
                        await self.read_radio()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    LOG.warning("modem %s ping failed (%d/%d): %s", self.modem_id, self.failures,
                                self.failures_allowed, exc)
                    self._note_error(str(exc) or type(exc).__name__)
                    if self.failures >= self.failures_allowed:
                        self._set("not answering", healthy=False)
                    else:
                        self._wake.set()  # ping again at once rather than after a full interval
        except asyncio.CancelledError:
            raise
        except Exception:
            LOG.exception("supervisor of %s failed", self.modem_id)

    async def _sim_state(self) -> str:
        """``AT+CPIN?`` after the ping: "READY", "SIM PIN", ... A SIM-state error (``+CME ERROR: 10``
        SIM not inserted, 14 SIM busy) is a state too; a modem that answers AT+CPIN? with another
        error counts as READY (the ping decides its health)."""
        try:
            return await self.modem.sim_state(priority=Priority.HEALTH)
        except AtError as exc:
            if is_sim_state_error(exc):
                return getattr(exc, "text", None) or str(exc)
            LOG.debug("modem %s: AT+CPIN? not answered: %s", self.modem_id, exc)
            return "READY"

    async def _attempt(self, state: str, action: Callable[[], Awaitable[None]]) -> bool:
        self._set(state)
        self._last_failure = None
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            LOG.warning("modem %s: %s failed: %s", self.modem_id, state, error)
            self._note_error(error)
            self._last_failure = exc
            if isinstance(exc, PinError):
                self.sim_trouble = True  # open() met a locked SIM: the PIN path, not the ladder
            if isinstance(exc, IdentityError):
                self._identity_state = exc.state
                self._set(exc.state, healthy=False, error=error)
            else:
                self._identity_state = None
            return False
        self._identity_state = None
        self.failures = 0
        self.rounds = 0
        self.sim_trouble = False
        if state != "opening":
            self.recoveries += 1
            self.recoveries_by_rung[state] = self.recoveries_by_rung.get(state, 0) + 1
        self.error = None  # healthy again: the error is history (last_error, last_error_at)
        self._set(ONLINE, healthy=True)
        if self.on_recovered is not None:
            self.on_recovered(self.modem)
        await self.read_radio()
        return True

    async def read_radio(self) -> None:
        """Read signal, registration, operator, SIM state and PIN attempts left; publish the modem's state
        if they changed.

        A query the modem does not answer leaves the last reading in place: ping decides health.
        """
        self._radio_due = asyncio.get_running_loop().time() + self.radio_interval
        radio = dict(self.radio)
        modem = self.modem
        try:
            signal = await modem.signal()
            radio["signal"] = {"rssi": signal.rssi, "dbm": signal.dbm, "percent": signal.percent, "ber": signal.ber}
            registration = await modem.registration()
            radio["registration"] = {"state": registration.state, "lac": registration.lac,
                                     "cell_id": registration.cell_id, "act": registration.act}
            operator = await modem.operator()
            radio["operator"] = {"name": operator.name, "numeric": operator.numeric}
            radio["technology"] = access_technology(registration.act if registration.act is not None
                                                    else operator.act)
            sim = await modem.sim_status()
            radio["sim"], radio["pin_attempts"] = sim.state, sim.pin_attempts
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            LOG.debug("modem %s: radio state not read: %s", self.modem_id, exc)
        if radio != self.radio:
            self.radio = radio
            self.publish()

    async def _open(self) -> None:
        if self.locate is not None:
            await self._find_port(wait=0.0)
        await self.modem.open()

    async def _find_port(self, wait: float) -> None:
        """Point the modem at the port where its IMEI/ICCID is found, looking for up to ``wait`` seconds."""
        assert self.locate is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            port = await self.locate()
            if port is not None:
                if port != self.modem.port:
                    LOG.info("modem %s found on %s", self.modem_id, port)
                self.modem.port = port
                return
            if loop.time() >= deadline:
                imei = self.modem.expect_imei
                wanted = f"IMEI {imei}" if imei else f"ICCID {self.modem.expect_iccid}"
                raise ConnectionError(f"no port has the modem with {wanted}")
            if self.state != "waiting for port":
                self._set("waiting for port")
            await asyncio.sleep(LOCATE_POLL)

    async def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            await self.modem.close()
        await self._wait_port()
        await self.modem.open()

    async def _wait_port(self) -> None:
        """A USB modem that re-enumerates: wait for its port path to reappear (or, for "auto", any port
        with its identity)."""
        if self.locate is not None:
            await self._find_port(wait=self.port_wait)
            return
        port = str(getattr(self.modem, "port", ""))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.port_wait
        if not port_exists(port):
            self._set("waiting for port")
        while not port_exists(port):
            if loop.time() > deadline:
                raise ConnectionError(f"port {port} did not reappear within {self.port_wait:.0f}s")
            await asyncio.sleep(PORT_POLL)

    async def _power_cycle(self) -> None:
        assert self.power is not None
        with contextlib.suppress(Exception):
            await self.modem.close()
        if self.rounds % 2 == 0:
            await self.power.power_cycle()
        else:
            await self.power.power_on()  # the module may have been off: a single pulse switches it on
        await self._wait_port()
        await self.modem.open()

    async def _backoff(self, state: str) -> None:
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** self.rounds)
        self.rounds += 1
        self._set(state)
        LOG.warning("modem %s %s; next recovery attempt in %.1fs", self.modem_id, state, delay)
        await self._sleep(delay)

    async def _recover_sim(self) -> bool:
        """The SIM is not READY on an open modem: enter the PIN through the guard. False: the
        modem itself failed (climb the ladder)."""
        if await self._attempt("entering PIN", self.modem.unlock_sim):
            return True
        if isinstance(self._last_failure, PinError):
            await self._backoff(SIM_LOCKED)  # the guard refused; nothing else can help: look again later
            return True
        return False

    async def _recover(self) -> None:
        """One round of the ladder; on failure, back off before the next round."""
        if self.sim_trouble and self.modem.is_open and await self._recover_sim():
            return
        if self.modem.is_open and self.rounds == 0:
            if await self._attempt("soft reset", self.modem.soft_reset):
                return
        if await self._attempt("reopening", self._reopen):
            return
        locked = isinstance(self._last_failure, PinError)  # a power cycle does not unlock a SIM
        if self.power is not None and not locked and await self._attempt("power cycle", self._power_cycle):
            return
        await self._backoff(SIM_LOCKED if isinstance(self._last_failure, PinError) else self._identity_state or "offline")
