"""Webhooks: each event POSTed as JSON to the configured ``[[webhooks]]``, signed, retried until delivered.

The deliveries are rows of the store (``webhook_delivery``), written in the transaction that commits
the event they describe (a received SMS, an outbound message's state change), so an event that is
committed is delivered even if the process dies the next instant. Here one :class:`WebhookSender`
per webhook takes its oldest pending delivery, POSTs it and commits the outcome:

- a 2xx answer: delivered;
- anything else (no answer, a timeout, a redirect, 4xx, 5xx): tried again after ``retry_base``
  seconds, doubling up to ``retry_max``, until ``expire_after`` has passed since the event;
- in order: a webhook's next delivery waits until the one before it is delivered or expired;
  webhooks do not wait for each other.

A process that dies between the POST and the commit of its outcome sends the same delivery again
after the restart, with the same ``X-Smsgw-Delivery`` id: receivers drop repeats by that id.

Every request carries ``X-Smsgw-Event`` (``received`` or ``message``), ``X-Smsgw-Delivery`` and
``X-Smsgw-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``; the body is
the JSON document MQTT publishes on ``B/received`` / ``B/message/<id>``. The format and a
verification snippet: docs/webhooks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from appliance import __version__
from appliance.config import WebhookConfig, webhook_display_url
from appliance.store import StoreError

if TYPE_CHECKING:
    import aiohttp

    from appliance.store import Store, WebhookDelivery

LOG = logging.getLogger(__name__)

#: Seconds an idle sender sleeps before looking at the store again, in case a wake-up was missed.
POLL_INTERVAL = 5.0
#: Seconds a sender waits after the store refused a write (a full disk) before trying again.
STORE_RETRY = 5.0
#: Bytes of a refusing receiver's answer kept as the delivery's last error.
ERROR_EXCERPT = 200
#: The longest 2xx answer read (to keep the connection alive); a longer one is left unread.
MAX_ANSWER = 65536

EVENT_HEADER = "X-Smsgw-Event"
DELIVERY_HEADER = "X-Smsgw-Delivery"
SIGNATURE_HEADER = "X-Smsgw-Signature"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Smsgw-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff(attempts: int, base: float, maximum: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: base, 2 base, 4 base ... maximum."""
    return min(base * 2.0 ** max(attempts - 1, 0), maximum)


def headers(delivery: WebhookDelivery, secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"smsgw/{__version__}",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: delivery.delivery_id,
        SIGNATURE_HEADER: signature(secret, body),
    }


class WebhookSender:
    """Delivers one webhook's pending deliveries, oldest first, one at a time."""

    def __init__(self, config: WebhookConfig, store: Store, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time, poll_interval: float = POLL_INTERVAL) -> None:
        self.config = config
        self.store = store
        self.session = session
        self.clock = clock
        self.poll_interval = poll_interval
        self.url = webhook_display_url(config.url)
        self._wake = asyncio.Event()
        self._ssl: ssl.SSLContext | None = None
        if config.ca is not None:
            self._ssl = ssl.create_default_context(cafile=str(config.ca))

    def wake(self) -> None:
        self._wake.set()

    async def _idle(self, seconds: float) -> None:
        """Until woken (a commit added deliveries) or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(seconds, 0.0))
        self._wake.clear()

    async def run(self) -> None:
        while True:
            try:
                wait = await self.step()
            except StoreError as exc:  # a full disk: nothing is lost, the delivery stays pending
                LOG.error("webhook %s: %s", self.config.name, exc)
                wait = STORE_RETRY
            except Exception:  # the store is locked, or a bug: the delivery stays pending, try again
                LOG.exception("webhook %s: delivery failed", self.config.name)
                wait = STORE_RETRY
            if wait:
                await self._idle(wait)

    async def step(self) -> float:
        """Deliver (or expire, or wait for) the oldest pending delivery; the seconds to wait, 0 for none."""
        self._wake.clear()  # what was committed before this look is seen by it
        delivery = self.store.next_delivery(self.config.name)
        if delivery is None:
            return self.poll_interval
        now = self.clock()
        if delivery.expires_at <= now:
            expired = self.store.expire_deliveries(self.config.name, now)
            LOG.warning("webhook %s: %d delivery(ies) expired undelivered after %g s", self.config.name,
                        expired, self.config.expire_after)
            return 0.0
        if delivery.next_attempt_at > now:
            return min(delivery.next_attempt_at, delivery.expires_at) - now
        status, error = await self.post(delivery)
        now = self.clock()
        if error is None:
            self.store.delivery_done(delivery.id, status or 200, now)
            return 0.0
        retry = backoff(delivery.attempts + 1, self.config.retry_base, self.config.retry_max)
        self.store.delivery_failed(delivery.id, error, now + retry, status=status, now=now)
        log = LOG.warning if delivery.attempts == 0 else LOG.info
        log("webhook %s: delivery %s (%s) failed: %s; retry in %g s", self.config.name, delivery.delivery_id,
            delivery.event, error, retry)
        return 0.0

    async def post(self, delivery: WebhookDelivery) -> tuple[int | None, str | None]:
        """POST the delivery once: (status, None) on a 2xx answer, else (status or None, the reason)."""
        import aiohttp

        body = delivery.body.encode("utf-8")
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self.session.post(self.config.url, data=body, headers=headers(delivery, self.config.secret, body),
                                         timeout=timeout, allow_redirects=False,
                                         ssl=self._ssl if self._ssl is not None else True) as response:
                if 200 <= response.status < 300:
                    length = response.content_length
                    if length is not None and length <= MAX_ANSWER:  # read: the connection is kept alive
                        await response.read()
                    return response.status, None  # a longer answer is not read: the connection closes
                excerpt = (await response.content.read(ERROR_EXCERPT)).decode("utf-8", "replace")
                reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
                excerpt = " ".join(excerpt.split())
                return response.status, f"{reason}: {excerpt}" if excerpt else reason
        except TimeoutError:
            return None, f"no answer within {self.config.timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            text = str(exc).replace(self.config.url, self.url)  # no credentials in the store or the log
            return None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Webhooks:
    """The daemon's webhook component: records the configured webhooks in the store and runs one
    :class:`WebhookSender` per webhook."""

    def __init__(self, webhooks: Sequence[WebhookConfig], store: Store, *,
                 clock: Callable[[], float] = time.time, poll_interval: float = POLL_INTERVAL) -> None:
        self.configs = tuple(webhooks)
        self.store = store
        self.clock = clock
        self.poll_interval = poll_interval
        self.senders: list[WebhookSender] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._remove_listener: Callable[[], None] | None = None

    async def start(self) -> None:
        try:
            dropped = self.store.configure_webhooks(
                [(hook.name, hook.events, hook.expire_after) for hook in self.configs], self.clock())
        except StoreError as exc:  # a full disk: the webhooks recorded by the last start stay
            LOG.error("recording the configured webhooks failed: %s", exc)
            dropped = {}
        for name, count in dropped.items():
            LOG.warning("webhook %s is no longer configured: %d pending delivery(ies) expired", name, count)
        if not self.configs:
            return
        import aiohttp  # only with webhooks: the import costs a daemon without them its start-up time

        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=4))
        for hook in self.configs:
            sender = WebhookSender(hook, self.store, self._session, clock=self.clock,
                                   poll_interval=self.poll_interval)
            self.senders.append(sender)
            self._tasks.append(asyncio.create_task(sender.run(), name=f"webhook-{hook.name}"))
            LOG.info("webhook %s: %s for %s", hook.name, sender.url, ", ".join(hook.events))
        self._remove_listener = self.store.add_listener(self.wake)

    def wake(self) -> None:
        """A commit added events (in this process, or another one: the daemon's store watch)."""
        for sender in self.senders:
            sender.wake()

    async def stop(self) -> None:
        """Cancel the senders (a POST cut off is sent again, with the same delivery id, next time)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.senders.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
