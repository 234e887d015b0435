"""The ``smsgw run`` daemon: wires the store, the modems, the dispatcher, inbound, health and MQTT.

Start-up: open the store (migrating it), give back messages a previous process left mid-send
(``Store.resume_interrupted``, through ``Dispatcher.start``), then one ``ModemSupervisor`` per
configured modem opens its modem in the background; a modem is handed to the dispatcher as
unhealthy and becomes healthy once open, so one dead modem never delays the others. The inbound
side sweeps each modem's storage as soon as it is open.

Shutdown (``stop``): the supervisors stop first (no reopen races), then the dispatcher lets the
``AT+CMGS`` in progress finish and commits its TP-MR, the inbound side finishes the
commit-and-delete in progress, MQTT and rules stop, the modems close and the store closes.

Tuning (all optional) in the ``[health]`` table of the config file:
``ping_interval``, ``failures_allowed``, ``backoff_base``, ``backoff_max``, ``port_wait``,
``sweep_interval``, ``poll_interval`` (dispatcher safety-net poll), ``watch_interval`` (how often
the daemon polls for commits by other processes, e.g. ``smsgw send``, where inotify is missing), ``flush_interval``
(reassembly timeout check), ``retry_base`` / ``retry_max`` (the dispatcher's backoff after a
transient send error), ``multipart_wait`` (how long the rest of a multipart SMS waits for the modem
that sent its first parts before another modem sends it all again; default 600) and ``timeouts`` (modem timeouts in seconds, e.g.
``{ command = 5, send = 60 }``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from appliance import store_watch, systemd
from appliance.config import AUTO_PORT, Config
from appliance.dispatcher import Dispatcher, ModemLimits
from appliance.health import ModemSupervisor
from appliance.inbound import Inbound
from appliance.store import MULTIPART_WAIT, Store
from appliance.wal_checkpoint import WalCheckpointer

if TYPE_CHECKING:
    from appliance.component import Component
    from appliance.hardware import PowerControl, StatusLed
    from drivers.modem import Modem

LOG = logging.getLogger("appliance.daemon")

#: Seconds between two retention runs (Store.prune); the first runs at start.
PRUNE_INTERVAL = 3600.0
#: Seconds a clean stop waits for the broker to take the modems' offline states.
STOP_PUBLISH_TIMEOUT = 3.0


class Daemon:
    def __init__(self, config: Config, *, pin_factory: Any = None) -> None:
        self.config = config
        self.settings = config.health
        self.pin_factory = pin_factory
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.inbound: Inbound | None = None
        self.modems: dict[str, Modem] = {}
        self.supervisors: dict[str, ModemSupervisor] = {}
        self.power: dict[str, PowerControl] = {}
        self.led: StatusLed | None = None
        self.bridge: Any = None
        self.rules: Any = None
        self.calls: Any = None
        self.discovery: Any = None
        self.ussd: Any = None
        self.control: Any = None
        self.balance: Any = None
        self.heartbeat: Any = None
        self.checkpointer: WalCheckpointer | None = None
        self.http: Any = None
        self.webhooks: Any = None
        self.self_alerts: Any = None
        self.history: Any = None
        self.schedules: Any = None
        self._mqtt_ussd: Any = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._data_version: int | None = None
        self._locate_lock = asyncio.Lock()

    # --- construction ------------------------------------------------------------------------

    def _make_modems(self) -> None:
        from drivers.modem import Modem

        timeouts = dict(self.settings.timeouts)
        state_dir = self.config.store.path.parent  # pin-rejections.json, shared with `smsgw doctor`
        for mc in self.config.modems:
            self.modems[mc.id] = Modem(mc.port, profile=mc.profile, pin=mc.pin, modem_id=mc.id,
                                       baudrate=mc.baudrate, timeouts=timeouts or None, state_dir=state_dir,
                                       expect_imei=mc.imei, expect_iccid=mc.iccid)

    def _locator(self, modem_id: str) -> Callable[[], Awaitable[str | None]]:
        """For ``port = "auto"``: search the candidate ports for this modem's IMEI/ICCID.

        One search at a time (two probes on one port garble each other); ports that another
        configured modem names or has open, or another program holds (a serial console's getty,
        ModemManager), are never probed.
        """
        from appliance.port_holders import users
        from drivers.locate import find_port

        mc = self.config.modem(modem_id)
        previous = self._last_port(modem_id)  # read before the supervisor records its first state

        def taken(port: str) -> bool:
            real = os.path.realpath(port)
            for other_id, other in self.modems.items():
                if other_id == modem_id:
                    continue
                other_mc = self.config.modem(other_id)
                if (not other_mc.auto or other.is_open) and os.path.realpath(other.port) == real:
                    return True
            return bool(users(port))

        async def locate() -> str | None:
            modem = self.modems[modem_id]
            last = modem.port if modem.port != AUTO_PORT else previous
            async with self._locate_lock:
                return await find_port(self.config.modems_auto.globs, imei=mc.imei, iccid=mc.iccid, skip=taken,
                                       prefer=last)

        return locate

    def _last_port(self, modem_id: str) -> str | None:
        """The port a ``port = "auto"`` modem was found on in the previous run (its recorded state)."""
        if self.store is None:
            return None
        try:
            port = (self.store.state_get("modem", modem_id) or {}).get("port")
        except Exception:  # noqa: BLE001 - only a hint where to look first
            return None
        return port if isinstance(port, str) and port != AUTO_PORT else None

    def _make_hardware(self) -> None:
        needs_gpio = self.config.hardware.status_led_gpio is not None or any(
            mc.power_gpio is not None for mc in self.config.modems)
        if not needs_gpio:
            return
        from appliance.hardware import PowerControl, StatusLed

        for mc in self.config.modems:
            if mc.power_gpio is not None:
                timing = self.modems[mc.id].profile.power_key
                self.power[mc.id] = PowerControl(mc.power_gpio, timing, pin_factory=self.pin_factory)
        if self.config.hardware.status_led_gpio is not None:
            self.led = StatusLed(self.config.hardware.status_led_gpio, pin_factory=self.pin_factory)

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        self.store = store = Store(config.store.path, migrate_in_child=True)
        from appliance.rules.commands import text_filter

        store.shown_text = text_filter(config)  # PINs withheld in B/received (and so in HA)
        # without [mqtt] nothing publishes events: none is written (webhook deliveries still are)
        store.events_published = config.mqtt is not None
        self.checkpointer = WalCheckpointer(store)  # the WAL's checkpoints off the event loop
        self.checkpointer.start()
        if store.migrated_from is not None and store.migrated_from != store.schema_version:
            LOG.info("store %s migrated from schema %s", config.store.path, store.migrated_from)
        await self._start_webhooks()  # before anything commits an event: this config's webhooks get it
        self._make_modems()
        self._make_hardware()
        s = self.settings
        limits = {mc.id: ModemLimits(mc.rate_per_minute, mc.daily_cap) for mc in config.modems}
        self.dispatcher = dispatcher = Dispatcher(
            store, self.modems.values(), limits=limits, recipient_interval=config.limits.recipient_interval,
            max_attempts=config.limits.max_attempts, poll_interval=s.poll_interval,
            backoff_base=s.retry_base, backoff_max=s.retry_max,
            reports={mc.id for mc in config.modems if mc.report}, on_sim_error=self._sim_error,
            national_language=config.sms.national_language,
            multipart_wait=MULTIPART_WAIT if s.multipart_wait is None else s.multipart_wait,
        )
        for modem_id in self.modems:
            dispatcher.set_modem_healthy(modem_id, False)  # healthy once its supervisor opened it
        from appliance.calls import CallTriggers

        self.calls = CallTriggers(config, store, self.modems, bridge=lambda: self.bridge)
        self.inbound = Inbound(store, sweep_interval=s.sweep_interval, on_closed=self._port_closed,
                               on_call=self.calls.on_call)
        # the baseline for the watch on commits by other processes, before anything can be enqueued
        self._data_version = store.data_version()
        await dispatcher.start()
        resumed = store.stats()
        LOG.info("store %s open: outbox=%s", config.store.path, resumed.get("outbox"))
        for modem_id, modem in self.modems.items():
            supervisor = ModemSupervisor(
                modem, store, on_healthy=self._on_healthy, on_recovered=self._on_recovered,
                power=self.power.get(modem_id), ping_interval=s.ping_interval,
                failures_allowed=s.failures_allowed, backoff_base=s.backoff_base, backoff_max=s.backoff_max,
                port_wait=s.port_wait, radio_interval=s.radio_interval, extra_status=self._modem_extra,
                locate=self._locator(modem_id) if config.modem(modem_id).auto else None,
            )
            self.supervisors[modem_id] = supervisor
            supervisor.start()
        await self._start_control()
        self._tasks.append(asyncio.create_task(self._watch_store(), name="store-watch"))
        self._tasks.append(asyncio.create_task(self._flush_partial(), name="reassembly"))
        self._tasks.append(asyncio.create_task(self._prune(), name="retention"))
        await self._start_schedules()
        await self._start_mqtt()
        await self._start_http()
        await self._start_self_alerts()
        if self.balance is not None:
            self.balance.start()  # after MQTT: a low balance reaches the alert rules
        self._update_led()
        LOG.info("smsgw running with %d modem(s)%s", len(self.modems),
                 " and MQTT" if self.bridge is not None else "")
        systemd.notify("READY=1", f"STATUS=running with {len(self.modems)} modem(s)")
        interval = systemd.watchdog_interval()
        if interval is not None:
            self._tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))

    async def _start_schedules(self) -> None:
        """The ``[[schedules]]`` (they queue SMS through the intake, with or without MQTT)."""
        if not self.config.rules.schedules:
            return
        from appliance.rules.schedules import Schedules

        assert self.store is not None
        self.schedules = Schedules(self.config, self.store)
        await self.schedules.start()

    async def _start_mqtt(self) -> None:
        if self.config.mqtt is None:
            return
        from appliance.mqtt import MqttBridge
        from appliance.rules.engine import RulesEngine

        assert self.store is not None
        from appliance.discovery import Discovery
        from appliance.ussd import UssdMqtt

        # the bridge with its own components (B/send through the intake, store events out), then the
        # components that use it; discovery is a no-op when [mqtt] discovery = false
        self.bridge = MqttBridge(self.config, self.store, status=self.status)
        self.rules = RulesEngine(self.config, self.store, self.bridge, status=self.status)
        self.discovery = Discovery(self.config, self.bridge, status=self.status)
        self._mqtt_ussd = UssdMqtt(self.ussd, self.bridge)
        components: tuple[Component, ...] = (self.bridge, self.rules, self.discovery, self._mqtt_ussd)
        for component in components:
            await component.start()
        if self.balance is not None:
            self.balance.attach(self.bridge, self.rules)

    async def _start_http(self) -> None:
        """The HTTP API (appliance.http) when ``[http]`` is configured."""
        if self.config.http is None:
            return
        from appliance.history import HistorySampler, signal_dbm
        from appliance.http.server import HttpServer

        assert self.store is not None
        self.history = HistorySampler(self.store, lambda: {
            modem_id: signal_dbm(supervisor.radio) if supervisor.healthy else None
            for modem_id, supervisor in self.supervisors.items()})
        await self.history.start()  # the status page's charts: one sample a minute

        http = HttpServer(self)
        try:
            await http.start()
        except OSError as exc:  # the modems and MQTT still work; `smsgw doctor` and the log say why
            LOG.error("HTTP API not started: cannot listen on %s: %s", self.config.http.listen, exc.strerror or exc)
            return
        self.http = http

    async def _start_self_alerts(self) -> None:
        """``[self_alerts]`` (appliance.self_alerts): the gateway texts its installer about itself."""
        settings = self.config.self_alerts
        if settings is None:
            return
        from appliance.intake import Intake, IntakePolicy
        from appliance.self_alerts.facts import daemon_facts
        from appliance.self_alerts.monitor import SelfAlerts

        assert self.store is not None
        intake = Intake(IntakePolicy.from_config(self.config), self.store)
        self.self_alerts = SelfAlerts(settings, self.store, intake, lambda: daemon_facts(self))
        await self.self_alerts.start()

    async def _start_webhooks(self) -> None:
        """The ``[[webhooks]]`` senders (and, with none configured, the store told so)."""
        from appliance.webhooks import Webhooks

        assert self.store is not None
        self.webhooks = Webhooks(self.config.webhooks, self.store)
        await self.webhooks.start()

    def modem_ready(self, modem_id: str) -> bool:
        supervisor = self.supervisors.get(modem_id)
        return supervisor is not None and supervisor.healthy

    async def _start_control(self) -> None:
        """USSD for every channel, the control socket beside the store, the balance checks."""
        from appliance.balance import BalanceChecker
        from appliance.control import ControlServer, socket_path
        from appliance.liveness import Heartbeat
        from appliance.ussd import UssdService

        assert self.store is not None
        self.ussd = UssdService(self.modems, self.modem_ready)
        self.control = ControlServer(socket_path(self.config.store.path), self.modems, self.modem_ready, self.ussd)
        try:
            await self.control.start()
        except OSError as exc:  # the daemon still runs; the CLI tools say the socket is missing
            LOG.error("control socket %s: %s", self.control.path, exc)
            self.control = None
        self.heartbeat = Heartbeat(self.store, self.started_at)
        self.heartbeat.start()
        checks = {mc.id: mc.balance for mc in self.config.modems if mc.balance is not None}
        if checks:
            self.balance = BalanceChecker(self.store, self.ussd, checks, self.modem_ready)

    async def stop(self) -> None:
        """Finish the AT exchange in progress, commit, close everything."""
        LOG.info("stopping")
        systemd.notify("STOPPING=1", "STATUS=stopping: finishing the AT exchange in progress")
        await self._stop_work()
        await self._stop_mqtt()
        await self._close()
        LOG.info("stopped")

    async def _stop_work(self) -> None:
        """Stop what talks to the modems: the self-alerts, the control socket, balance checks, USSD, the supervisors,
        the dispatcher (its AT+CMGS in progress finishes and commits), the inbound side, the tasks."""
        for component in (self.self_alerts, self.http, self.history, self.control, self.balance, self._mqtt_ussd,
                          self.webhooks, self.schedules):
            if component is not None:
                with contextlib.suppress(Exception):
                    await component.stop()
        for supervisor in self.supervisors.values():
            await supervisor.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.inbound is not None:
            await self.inbound.stop()
        if self.calls is not None:
            await self.calls.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _stop_mqtt(self) -> None:
        # the retained B/modem/<id> states say offline before the bridge goes (its last will covers
        # only B/bridge/state)
        for supervisor in self.supervisors.values():
            supervisor.healthy = False
            supervisor.state = "offline"
            supervisor.publish()
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                await self.bridge.drain_events(STOP_PUBLISH_TIMEOUT)
        mqtt: tuple[Component | None, ...] = (self.discovery, self.rules, self.bridge)
        for component in mqtt:
            if component is not None:
                try:
                    await component.stop()
                except Exception:
                    LOG.exception("stopping %s failed", type(component).__name__)

    async def _close(self) -> None:
        """Close the modems, the GPIO lines and the store."""
        for modem in self.modems.values():
            with contextlib.suppress(Exception):
                await modem.close()
        for power in self.power.values():
            power.close()
        if self.led is not None:
            self.led.close()
        if self.store is not None:
            if self.heartbeat is not None:
                self.heartbeat.stopped()
            if self.checkpointer is not None:
                self.checkpointer.stop()
            self.store.close()

    # --- wiring ------------------------------------------------------------------------------

    def _on_healthy(self, modem_id: str, healthy: bool) -> None:
        if self.dispatcher is not None:
            self.dispatcher.set_modem_healthy(modem_id, healthy)
        self._update_led()

    def _on_recovered(self, modem: Modem) -> None:
        if self.inbound is not None:
            self.inbound.add_modem(modem)
            self.inbound.request_sweep(modem.modem_id)

    def _sim_error(self, modem_id: str, error: str) -> None:
        supervisor = self.supervisors.get(modem_id)
        if supervisor is not None:
            supervisor.sim_suspect(error)

    def _port_closed(self, modem_id: str, error: str | None) -> None:
        supervisor = self.supervisors.get(modem_id)
        if supervisor is not None:
            supervisor.port_closed(error)

    def _modem_extra(self, modem_id: str) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.inbound is not None and modem_id in self.inbound.storage_full:
            extra["storage_full"] = self.inbound.storage_full[modem_id]
        return extra

    def _update_led(self) -> None:
        if self.led is None:
            return
        healthy = [s.healthy for s in self.supervisors.values()]
        self.led.show("ok" if healthy and all(healthy) else "degraded" if any(healthy) else "down")

    async def _watch_store(self) -> None:
        """Wake the dispatcher, the event publisher and the rules when another process (``smsgw send``)
        committed to the store: on an inotify event for the store's files (``store_watch``), or
        where inotify is missing, by polling every ``watch_interval``."""
        assert self.store is not None
        watch = store_watch.open_watch(self.store.path) if str(self.store.path) != ":memory:" else None
        if watch is None:
            while True:
                await asyncio.sleep(self.settings.watch_interval)
                self._check_data_version()
        try:
            await store_watch.follow(watch, self._check_data_version)
        finally:
            watch.close()

    def _check_data_version(self) -> bool:
        """Wake the dispatcher (and what else waits for the store) when another process committed
        since the last look; whether it had."""
        assert self.store is not None and self.dispatcher is not None
        try:
            version = self.store.data_version()
        except Exception:
            LOG.exception("store watch failed")
            return False
        if version == self._data_version:
            return False
        LOG.debug("store changed by another process (data_version %d); waking the dispatcher", version)
        self._data_version = version
        self.dispatcher.wake()
        if self.webhooks is not None:
            self.webhooks.wake()
        self.store.notify_changed()
        return True

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog while the event loop turns and the store answers.

        A wedged loop or a store that no longer answers stops the pings, and systemd restarts
        the service (``WatchdogSec=`` in the unit); everything queued is in the store.
        """
        assert self.store is not None
        while True:
            try:
                self.store.ping()
            except Exception:
                LOG.exception("store check for the watchdog failed; not pinging")
            else:
                healthy = sum(s.healthy for s in self.supervisors.values())
                systemd.notify("WATCHDOG=1", f"STATUS=running; {healthy}/{len(self.supervisors)} modem(s) healthy")
            await asyncio.sleep(interval)

    async def _flush_partial(self) -> None:
        assert self.store is not None
        timeout = self.config.store.reassembly_timeout
        interval = self.settings.flush_interval or min(max(timeout / 4, 0.25), 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                flushed = self.store.flush_partial(time.time(), timeout)
            except Exception:
                LOG.exception("reassembly timeout check failed")
                continue
            if flushed:
                LOG.info("delivered %d incomplete multipart message(s) after %.0fs", len(flushed), timeout)

    async def _prune(self) -> None:
        """Retention (``Store.prune``) at start and every ``PRUNE_INTERVAL``; a loop turn between batches.

        Without ``[mqtt]`` nothing publishes events: each run deletes the pending ones.
        """
        assert self.store is not None
        cfg = self.config.store
        publisher = self.config.mqtt is not None
        while True:
            try:
                for _totals in self.store.prune_steps(time.time(), retention_days=cfg.retention_days,
                                                      audit_retention_days=cfg.audit_retention_days,
                                                      publisher=publisher):
                    await asyncio.sleep(0)
            except Exception:
                LOG.exception("pruning the store failed")
            await asyncio.sleep(PRUNE_INTERVAL)

    def status(self) -> dict[str, Any]:
        """The daemon's view for MQTT status requests and ``smsgw status``."""
        dispatch = self.dispatcher.modem_status() if self.dispatcher is not None else {}
        modems = {}
        for modem_id, supervisor in self.supervisors.items():
            entry = supervisor.status()
            entry["dispatch"] = dispatch.get(modem_id, {})
            modems[modem_id] = entry
        status: dict[str, Any] = {
            "started_at": self.started_at,
            "modems": modems,
            "store": self.store.stats() if self.store is not None else {},
        }
        if self.self_alerts is not None:
            status["self_alerts"] = self.self_alerts.status()
        return status


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (the signal handlers set it)."""
    daemon = Daemon(config)
    try:
        await daemon.start()
        await stop.wait()
    finally:
        await daemon.stop()
