"""The one protocol of the daemon's long-running parts: ``await start()`` and ``await stop()``.

The MQTT bridge (with its request and event components), the rules engine, Home Assistant discovery,
USSD over MQTT and the control socket each start their work in ``start`` and
end it in ``stop``; the daemon starts them in order and stops them the other way round
(zigbee2mqtt's controller and its extensions). ``stop`` may be called on a part that never started.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """End a component's task (``stop``): cancel it and wait until it has finished; None is nothing."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
