"""GPIO: a modem's power key (PWRKEY) and the status LED, through gpiozero.

The power key of SIM800/SIM7600/EC25 modules is a toggle: holding it for ``on_pulse`` seconds
switches a module on, holding it for ``off_pulse`` seconds switches it off; the serial port is
usable ``boot_time`` seconds after power-on (the profile's ``[power_key]`` table). The GPIO drives
the key through a transistor, so "pressed" is the GPIO active (``active_high`` by default).

gpiozero is imported only when a GPIO is configured; tests pass gpiozero's ``MockFactory`` as
``pin_factory``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.profiles import PowerKey

LOG = logging.getLogger("appliance.hardware")

#: Used when a profile has no [power_key] table (generic modems): long enough for most modules.
DEFAULT_POWER_KEY = PowerKey(on_pulse=1.2, off_pulse=1.6, boot_time=5.0)
#: Seconds between the power-off pulse and the power-on pulse of a power cycle.
OFF_SETTLE = 2.0


def _output(pin: int, *, active_high: bool, pin_factory: Any) -> Any:
    from gpiozero import DigitalOutputDevice

    return DigitalOutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)


class PowerControl:
    """Presses a modem's power key via a GPIO."""

    def __init__(
        self,
        pin: int,
        timing: PowerKey | None = None,
        *,
        active_high: bool = True,
        pin_factory: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pin = pin
        self.timing = timing or DEFAULT_POWER_KEY
        self.sleep = sleep
        self._device = _output(pin, active_high=active_high, pin_factory=pin_factory)
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._device.off()
        self._device.close()

    async def press(self, seconds: float) -> None:
        """Hold the key for ``seconds``; the key is always released, even when cancelled."""
        async with self._lock:
            self._device.on()
            try:
                await self.sleep(seconds)
            finally:
                self._device.off()

    async def power_on(self) -> None:
        """One on-pulse, then wait for the module to boot."""
        LOG.warning("power key GPIO%d: power-on pulse (%.1fs)", self.pin, self.timing.on_pulse)
        await self.press(self.timing.on_pulse)
        await self.sleep(self.timing.boot_time)

    async def power_cycle(self) -> None:
        """Off-pulse, settle, on-pulse, wait for the boot."""
        LOG.warning("power key GPIO%d: power cycle (off %.1fs, on %.1fs, boot %.1fs)", self.pin,
                    self.timing.off_pulse, self.timing.on_pulse, self.timing.boot_time)
        await self.press(self.timing.off_pulse)
        await self.sleep(OFF_SETTLE)
        await self.press(self.timing.on_pulse)
        await self.sleep(self.timing.boot_time)


class StatusLed:
    """The appliance's status LED: on when every modem is healthy, blinking when one is not."""

    def __init__(self, pin: int, *, pin_factory: Any = None) -> None:
        from gpiozero import LED

        self.pin = pin
        self._led = LED(pin, pin_factory=pin_factory)
        self.state = "off"

    def show(self, state: str) -> None:
        """``"ok"`` (steady on), ``"degraded"`` (slow blink), ``"down"`` (fast blink), ``"off"``."""
        if state == self.state:
            return
        self.state = state
        if state == "ok":
            self._led.on()
        elif state == "degraded":
            self._led.blink(on_time=1.0, off_time=1.0)
        elif state == "down":
            self._led.blink(on_time=0.2, off_time=0.2)
        else:
            self._led.off()

    def close(self) -> None:
        self._led.off()
        self._led.close()
