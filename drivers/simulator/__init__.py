"""Simulated modems on real ptys, joined by a simulated network and SMSC (see docs/simulator.md).

    async with Simulator(Path("/tmp/sim"), modems=2, profile="sim800") as sim:
        sim.ports        # ["/tmp/sim/modem0", "/tmp/sim/modem1"], symlinks to the pty slaves
        sim.inject(1, "+4917012345", "hello")
        sim.fault(0, "hang")
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from drivers.profiles import load_profile
from drivers.simulator.calls import RING_INTERVAL, RINGS
from drivers.simulator.control import SOCKET_NAME, ControlServer
from drivers.simulator.flavours import flavour_for
from drivers.simulator.modem import FAULTS, SimModem, Storage, StoredSms
from drivers.simulator.network import REPORT_DELAY, Network

__all__ = ["FAULTS", "Network", "SimModem", "Simulator", "Storage", "StoredSms"]


class Simulator:
    def __init__(
        self,
        directory: Path | str,
        *,
        modems: int = 1,
        profile: str = "generic",
        send_delay: float = 0.0,
        sim_slots: int = 30,
        pin: str | None = None,
        report_delay: float = REPORT_DELAY,
        control: bool = True,
        report_status: int = 0,
        ring_interval: float = RING_INTERVAL,
    ) -> None:
        if modems < 1:
            raise ValueError(f"modems must be at least 1, not {modems}")
        if send_delay < 0:
            raise ValueError(f"send_delay must be >= 0 seconds, not {send_delay}")
        if ring_interval <= 0:
            raise ValueError(f"ring_interval must be > 0 seconds, not {ring_interval}")
        self.directory = Path(directory)
        self.ring_interval = ring_interval
        self.profile = load_profile(profile)
        self.flavour = flavour_for(self.profile.name, self.profile.vendor_class)
        self.network = Network(self.directory, report_delay=report_delay)
        self.modems: list[SimModem] = [
            SimModem(i, self.directory / f"modem{i}", self.network, self.flavour, send_delay=send_delay,
                     sim_slots=sim_slots, pin=pin)
            for i in range(modems)
        ]
        self.network.modems = self.modems
        for modem in self.modems:
            modem.report_status = report_status
        self._control = ControlServer(self, self.directory / SOCKET_NAME) if control else None
        self._started = False

    @property
    def ports(self) -> list[str]:
        return [str(modem.link) for modem in self.modems]

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for modem in self.modems:
                await modem.start()
            if self._control is not None:
                await self._control.start()
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        for modem in self.modems:
            with contextlib.suppress(Exception):
                await modem.stop()
        if self._control is not None:
            await self._control.stop()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _modem(self, index: int) -> SimModem:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.modems):
            raise IndexError(f"no modem {index!r}: the simulator has modems 0..{len(self.modems) - 1}")
        return self.modems[index]

    def inject(self, modem: int, sender: str, text: str, parts: Sequence[int] | None = None) -> int:
        """An SMS from ``sender`` arrives at ``modem`` (long texts as several parts); the parts delivered.

        ``parts``: only these parts (1-based), in this order (``[3, 1]``).
        """
        return self.network.inject(self._modem(modem), sender, text, parts)

    def call(self, modem: int, caller: str | None, rings: int = RINGS) -> dict[str, Any]:
        """``caller`` (None: a withheld number) calls ``modem``: it rings ``rings`` times, every
        ``ring_interval`` seconds, unless answered or hung up first; the call's state."""
        return self._modem(modem).incoming_call(caller, rings=rings, interval=self.ring_interval).describe()

    def end_call(self, modem: int) -> dict[str, Any]:
        """The caller hangs up: the modem reports NO CARRIER. ValueError when nothing rings."""
        call = self._modem(modem).call
        if call is None:
            raise ValueError(f"modem {modem} has no call to end")
        call.give_up()
        return call.describe()

    def fault(self, modem: int, kind: str) -> None:
        """Inject a fault: one of ``FAULTS`` (``cms-error:CODE`` with a number)."""
        self._modem(modem).fault(kind)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "modem": m.index, "port": str(m.link), "number": m.number, "imei": m.imei, "imsi": m.imsi,
                "iccid": m.iccid, "plugged": m.plugged, "hung": m.hung, "registered": m.registered,
                "stored": m.storage.used, "waiting": len(m.waiting),
                "pin_entries": m.pin_entries, "pin_attempts": m.pin_attempts, "pin_locked": m.pin_locked,
                "report_status": m.report_status,
                "call": m.call.describe() if m.call is not None else None,
            }
            for m in self.modems
        ]

    def ready_line(self) -> str:
        ports = " ".join(f"{m.link} ({m.number})" for m in self.modems)
        return f"simulator ready: {ports} profile={self.profile.name} control={self.directory / SOCKET_NAME}"
