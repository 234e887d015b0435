"""The AT engine: one command in flight, a priority lock, final results as data, a URC registry.

Every line from the modem goes through the same steps, in this order (ModemManager's
``parse_unsolicited`` before the reply parser):

1. lines owed to a two-line URC (``+CMT: ,23`` then the PDU) go to that URC;
2. the echo of the command in flight (echo on) and of the PDU after the prompt are skipped;
3. registered URCs (regex -> handler) are cut out, whether or not a command is in flight;
4. vendor noise (``^RSSI``, ``RDY``, ``+CFUN: 1`` ...) from ``drivers.parsers.BASE_NOISE_URCS`` and
   the profile's ``ignore_urcs`` is dropped - unless the command in flight asked for that very
   prefix (``AT+CFUN?`` wants its ``+CFUN: 1``);
5. what is left belongs to the command in flight: a final result (:data:`FINAL_RESULTS`, plus the
   profile's ``final_without_ok``) ends it, anything else is a reply line. With no command in
   flight the line goes to ``on_unsolicited`` or is logged and dropped.

A read or query command (``AT+CPIN?``, ``AT+CSQ``) whose expected information line has come but
no final result within :data:`REPLY_GRACE` ends with that reply (Wavecom modems answer
``AT+CPIN?`` with ``+CPIN: READY`` and no ``OK``), for every modem, not only named profiles.

Nothing the modem sends raises out of the reader: bad bytes and unknown lines are logged with
their ``repr`` and dropped; a URC handler that raises is logged.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from drivers.errors import AtError, AtTimeout, TransportError, error_from_final, error_kind
from drivers.framing import AtFramer, Item, Line, Prompt
from drivers.parsers import BASE_NOISE_URCS
from drivers.secrets import mask_secrets
from drivers.transport import Transport, open_transport

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a command may take to reach its final result."""
PROMPT_TIMEOUT = 10.0
"""Seconds to wait for the ``> `` prompt after ``AT+CMGS=n``."""
CANCEL_GRACE = 1.0
"""After ESC cancels PDU entry, seconds to wait for the modem's final result to that cancel."""
STRAY_OK_GRACE = 0.2
"""After a reply that ends without OK (``final_without_ok``), seconds to wait for a stray OK."""
REPLY_GRACE = 0.5
"""After the information line a read/query command expects (``+CPIN: READY`` for ``AT+CPIN?``), seconds
to wait for a final result before the reply counts as complete without one (and a late OK is dropped)."""
LOCK_TIMEOUT = 600.0
"""Backstop: seconds a command may wait for its turn behind other commands."""
MAX_URC_LINES = 40
"""The most lines a URC of variable length (``add_urc(more=...)``) may take after its first."""

CTRL_Z = b"\x1a"
ESC = b"\x1b"


class Priority(IntEnum):
    """Who gets the port first when several commands wait: lower runs first; FIFO within one."""

    RESET = 0
    HEALTH = 1
    SEND = 2
    POLL = 3


@dataclass(frozen=True)
class AtResponse:
    """A completed command: its information lines (no echo, no URCs) and its final result line."""

    command: str
    lines: list[str]
    final: str


# Final result codes, as data. ``True``: success; ``False``: the command failed and
# ``drivers.errors.error_from_final`` turns the line into the typed error.
FINAL_RESULTS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"OK"), True),
    (re.compile(r"ERROR"), False),
    (re.compile(r"\+CME ERROR:.*"), False),
    (re.compile(r"\+CMS ERROR:.*"), False),
    (re.compile(r"NO CARRIER"), False),
    (re.compile(r"BUSY"), False),
    (re.compile(r"NO ANSWER"), False),
    (re.compile(r"NO DIALTONE"), False),
    (re.compile(r"COMMAND NOT SUPPORT"), False),  # Huawei
    (re.compile(r"TOO MANY PARAMETERS"), False),  # Huawei
)

_PREFIX = re.compile(r"[+^*][A-Z0-9]+")
_COMMAND_PREFIX = re.compile(r"AT([+^*][A-Z0-9]+)", re.IGNORECASE)
# Commands that ask for one information reply: read (AT+CPIN?) and parameterless action (AT+CSQ).
_QUERY_COMMAND = re.compile(r"AT[+^*][A-Z0-9]+\??", re.IGNORECASE)

UrcHandler = Callable[[re.Match[str], list[str]], None]


@dataclass(eq=False)
class _Urc:
    pattern: re.Pattern[str]
    handler: UrcHandler
    extra_lines: int
    #: For a URC of variable length (a quoted string with line breaks, as in +CUSD): whether it needs
    #: another line, given its first line and the lines so far.
    more: Callable[[str, list[str]], bool] | None = None
    unless_asked: bool = False


@dataclass(eq=False)
class _PendingUrc:
    urc: _Urc
    match: re.Match[str]
    extra: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _InFlight:
    """The command being executed: what the reader fills in."""

    command: str
    done: asyncio.Future[AtResponse]
    prompt: asyncio.Future[None] | None = None
    payload_echo: str | None = None
    lines: list[str] = field(default_factory=list)
    echo_seen: bool = False
    prefix: str | None = None  # "+CFUN" for AT+CFUN?: lines with it are replies, never noise
    query: bool = False  # a read/query command: may end after its information line (REPLY_GRACE)
    grace: asyncio.TimerHandle | None = None


class PriorityLock:
    """A lock granted by priority (lower first), FIFO within a priority. Not reentrant."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    def try_acquire(self) -> bool:
        """Take the lock if it is free and nobody waits for it (no await, no timer)."""
        if self._locked or self._waiters:
            return False
        self._locked = True
        return True

    async def acquire(self, priority: int) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (int(priority), next(self._counter), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # Granted just as we were cancelled: pass the lock on.
                self.release()
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # ownership passes on: stays locked
                return
        self._locked = False

    @asynccontextmanager
    async def hold(self, priority: int) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


class AtEngine:
    """Talks AT to one modem port. See the module docstring for how lines are routed."""

    def __init__(
        self,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        name: str = "",
        ignore_urcs: Sequence[str] = (),
        final_without_ok: Sequence[str] = (),
        prompt_timeout: float = PROMPT_TIMEOUT,
        cancel_grace: float = CANCEL_GRACE,
        stray_ok_grace: float = STRAY_OK_GRACE,
        lock_timeout: float = LOCK_TIMEOUT,
        reply_grace: float = REPLY_GRACE,
        error_counts: Counter[tuple[str, str]] | None = None,
    ) -> None:
        self.default_timeout = default_timeout
        #: Failed commands by (kind, code) (``drivers.errors.error_kind``); the modem passes one
        #: counter to each engine it opens, so the counts outlive a reopened port.
        self.error_counts: Counter[tuple[str, str]] = Counter() if error_counts is None else error_counts
        self.name = name
        self.prompt_timeout = prompt_timeout
        self.cancel_grace = cancel_grace
        self.stray_ok_grace = stray_ok_grace
        self.lock_timeout = lock_timeout
        self.reply_grace = reply_grace
        self.ignored_urcs: tuple[re.Pattern[str], ...] = tuple(
            re.compile(p) for p in (*BASE_NOISE_URCS, *ignore_urcs))
        self._ignored_any = _any_of(self.ignored_urcs)
        self.final_without_ok: list[re.Pattern[str]] = [re.compile(p) for p in final_without_ok]
        self.on_closed: Callable[[BaseException | None], None] | None = None
        self.on_unsolicited: Callable[[str], None] | None = None
        self._urcs: list[_Urc] = []
        self._urc_any: re.Pattern[str] | None = None  # matches where one of _urcs does (None: ask each)
        self._framer = AtFramer(name=name)
        self._transport: Transport | None = None
        self._lock = PriorityLock()
        self._in_flight: _InFlight | None = None
        self._pending_urc: _PendingUrc | None = None
        self._stray_ok: asyncio.Future[None] | None = None
        self._closed_reported = True
        self._close_error: BaseException | None = None
        self._generation = 0
        self.url = ""

    # -- connection -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._transport.is_open

    @property
    def queued(self) -> int:
        """Commands waiting for their turn (not counting the one in flight)."""
        return self._lock.waiting

    async def open(self, url: str, *, baudrate: int = 115200) -> None:
        """Open ``url`` (``/dev/ttyUSB2`` or ``socket://host:port``). Raises TransportError."""
        if self.is_open:
            raise TransportError(f"{self._label()}already open on {self.url}")
        self.url = url
        self._framer.reset()
        self._pending_urc = None
        self._stray_ok = None
        self._close_error = None
        self._closed_reported = False
        self._generation += 1
        generation = self._generation

        def on_data(data: bytes) -> None:
            if generation == self._generation:
                self._data_received(data)

        def on_closed(exc: BaseException | None) -> None:
            if generation == self._generation:
                self._transport_closed(exc)

        try:
            self._transport = await open_transport(url, baudrate, on_data=on_data, on_closed=on_closed)
        except BaseException:
            self._closed_reported = True
            raise

    async def close(self) -> None:
        """Close the port. A command in flight fails with TransportError; ``on_closed(None)`` runs once."""
        transport = self._transport
        self._transport_closed(None)
        if transport is not None:
            transport.close()
            await transport.wait_closed()

    def add_urc(self, pattern: str, handler: UrcHandler, *, extra_lines: int = 0,
                more: Callable[[str, list[str]], bool] | None = None,
                unless_asked: bool = False) -> Callable[[], None]:
        """Route lines matching ``pattern`` (from the start of the line) to ``handler``.

        ``handler(match, extra)`` runs in the reader, synchronously; ``extra`` holds the
        ``extra_lines`` lines that follow (the PDU of ``+CMT``/``+CDS``), or, with ``more``, the lines
        that follow while ``more(first_line, extra)`` says the URC is not complete (at most
        ``MAX_URC_LINES``). It must not await modem commands (schedule a task). ``unless_asked``: a
        URC whose form is also a reply (``+CPIN: SIM PIN``) is left to the command in flight when that
        command asked for its prefix (``AT+CPIN?``). Returns a function that removes the registration.
        """
        urc = _Urc(re.compile(pattern), handler, extra_lines, more, unless_asked)
        self._urcs.append(urc)
        self._urcs_changed()

        def remove() -> None:
            if urc in self._urcs:
                self._urcs.remove(urc)
                self._urcs_changed()

        return remove

    # -- commands ---------------------------------------------------------------------------------

    async def command(
        self, cmd: str, *, timeout: float | None = None, priority: Priority = Priority.POLL
    ) -> AtResponse:
        """Send ``cmd`` (CR is added) and return its reply once the final result arrives.

        Raises AtError/CmeError/CmsError for a failed final result, AtTimeout when none arrives
        within ``timeout`` seconds, TransportError when the port is or becomes closed.
        """
        cmd = _clean_command(cmd)
        async with self._turn(priority, cmd):
            return await self._execute(cmd, None, timeout)

    async def command_with_prompt(
        self,
        cmd: str,
        payload: str,
        *,
        timeout: float | None = None,
        priority: Priority = Priority.SEND,
        ready: Callable[[], Awaitable[None]] | None = None,
        written: Callable[[], None] | None = None,
    ) -> AtResponse:
        """Send ``cmd`` (``AT+CMGS=n``), wait for ``> ``, send ``payload`` + Ctrl-Z, await the result.

        If the prompt does not come within ``prompt_timeout``, ESC cancels the entry and AtTimeout is
        raised. A final result instead of the prompt (``+CMS ERROR``) raises at once.
        ``ready`` is awaited after ``cmd`` is written and before the payload (the modem works on the
        prompt meanwhile): the dispatcher commits the previous part's TP-MR there. If it raises, ESC
        cancels the entry and its exception is raised. ``written`` is called right after the payload
        is written (the modem then submits it: the dispatcher claims its next message meanwhile).
        """
        cmd = _clean_command(cmd)
        if any(c in payload for c in "\r\n\x1a\x1b"):
            raise ValueError(f"payload for {cmd} must not contain CR, LF, Ctrl-Z or ESC")
        async with self._turn(priority, cmd):
            return await self._execute(cmd, payload, timeout, ready, written)

    @asynccontextmanager
    async def _turn(self, priority: Priority, cmd: str) -> AsyncIterator[None]:
        self._check_open(cmd)
        try:
            if not self._lock.try_acquire():  # a free port takes no timer
                async with asyncio.timeout(self.lock_timeout):
                    await self._lock.acquire(priority)
        except TimeoutError:
            raise AtTimeout(
                f"{self._label()}{cmd}: waited {self.lock_timeout}s for the port", command=cmd, reply=[]
            ) from None
        try:
            if self._stray_ok is not None:
                # The last reply ended without OK; give a stray OK a moment to arrive and be dropped.
                try:
                    async with asyncio.timeout(self.stray_ok_grace):
                        await asyncio.shield(self._stray_ok)
                except TimeoutError:
                    pass
                finally:
                    self._stray_ok = None
            self._check_open(cmd)
            yield
        finally:
            self._lock.release()

    async def _execute(self, cmd: str, payload: str | None, timeout: float | None,
                       ready: Callable[[], Awaitable[None]] | None = None,
                       written: Callable[[], None] | None = None) -> AtResponse:
        loop = asyncio.get_running_loop()
        timeout = self.default_timeout if timeout is None else timeout
        job = _InFlight(command=cmd, done=loop.create_future(), prefix=_command_prefix(cmd),
                        query=payload is None and _QUERY_COMMAND.fullmatch(cmd) is not None)
        if payload is not None:
            job.prompt = loop.create_future()
            job.payload_echo = payload
        self._in_flight = job  # registered before writing: the reply can never arrive unseen
        try:
            self._write(cmd.encode() + b"\r", cmd)
            if job.prompt is not None and payload is not None:
                if ready is not None:
                    try:
                        await ready()
                    except BaseException:
                        await self._cancel_entry(job)
                        raise
                await self._await_prompt(job, payload)
                if written is not None:
                    try:
                        written()
                    except Exception:  # the caller's business: the exchange goes on
                        log.exception("%s%s: the callback after the payload failed", self._label(), cmd)
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(job.done)
            except TimeoutError:
                error = AtTimeout(
                    f"{self._label()}{cmd}: no final result within {timeout}s (got {job.lines!r})",
                    command=cmd,
                    reply=list(job.lines),
                )
                self.error_counts[error_kind(error)] += 1
                raise error from None
        finally:
            self._in_flight = None
            if job.grace is not None:
                job.grace.cancel()
            if job.done.done() and not job.done.cancelled():
                job.done.exception()  # mark retrieved
            else:
                job.done.cancel()

    async def _await_prompt(self, job: _InFlight, payload: str) -> None:
        assert job.prompt is not None
        try:
            async with asyncio.timeout(self.prompt_timeout):
                # the prompt's future, which a final result (or the port's close) also ends: one
                # future to wait on (asyncio.wait on both cost a send a waiter and four callbacks)
                await job.prompt
        except TimeoutError:
            log.warning("%s%s: no prompt within %ss, cancelling with ESC", self._label(), job.command,
                        self.prompt_timeout)
            lines = list(job.lines)
            await self._cancel_entry(job)
            raise AtTimeout(
                f"{self._label()}{job.command}: no '> ' prompt within {self.prompt_timeout}s",
                command=job.command,
                reply=lines,
            ) from None
        if job.done.done():
            # A final result came instead of the prompt (e.g. +CMS ERROR): raises, or an odd OK.
            response = job.done.result()
            log.warning("%s%s: final result %r before the prompt", self._label(), job.command, response.final)
            raise AtError(
                f"{self._label()}{job.command}: ended with {response.final!r} before the prompt",
                command=job.command,
                reply=response.lines,
                final=response.final,
            )
        self._write(payload.encode() + CTRL_Z, job.command)

    async def _cancel_entry(self, job: _InFlight) -> None:
        """ESC ends the message entry of ``job``; the modem's answer to it is swallowed so that it
        is not taken for the next reply."""
        if not self.is_open:
            return
        self._write(ESC, job.command)
        try:
            async with asyncio.timeout(self.cancel_grace):
                await asyncio.wait({job.done})
        except TimeoutError:
            pass

    def cancel_entry(self) -> None:
        """Write ESC when no command is in flight: it ends a message entry that another program, or
        a process that crashed, left open at ``> `` (in text mode the modem would otherwise take every
        following ``AT`` as message text). Outside message entry modems discard ESC."""
        if self._in_flight is None:
            self._write(ESC, "ESC")

    def _write(self, data: bytes, cmd: str) -> None:
        transport = self._transport
        if transport is None or not transport.is_open:
            raise self._closed_error(cmd)
        log.debug("%s-> %s", self._label(), mask_secrets(repr(data)))
        transport.write(data)

    def _check_open(self, cmd: str) -> None:
        if not self.is_open:
            raise self._closed_error(cmd)

    def _closed_error(self, cmd: str | None) -> TransportError:
        reason = f": {self._close_error}" if self._close_error is not None else ""
        return TransportError(f"{self._label()}port {self.url or '(none)'} is closed{reason}", command=cmd,
                              reply=[])

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    # -- the reader -------------------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        log.debug("%s<- %s", self._label(), mask_secrets(repr(data)))
        try:
            items = self._framer.feed(data)
        except Exception:  # the framer is total; this is a last line of defence
            log.exception("%sframing failed on %r", self._label(), data)
            self._framer.reset()
            return
        for item in items:
            try:
                self._route(item)
            except Exception:
                log.exception("%serror while handling %r", self._label(), item)

    def _route(self, item: Item) -> None:
        job = self._in_flight
        if isinstance(item, Prompt):
            if job is not None and job.prompt is not None and not job.prompt.done():
                job.prompt.set_result(None)
            else:
                log.info("%sunexpected '> ' prompt dropped", self._label())
            return
        self._route_line(item, job)

    def _route_line(self, item: Line, job: _InFlight | None) -> None:
        """One line, in order: owed to a two-line URC, our echo, a registered URC, vendor noise, the reply."""
        line = item.text
        if self._continue_urc(line, job) or self._is_echo(line, job):
            return
        asked_for = job is not None and job.prefix is not None and line.upper().startswith(job.prefix)
        if self._start_urc(line, job, asked_for):
            return
        if not asked_for and self._is_noise(line):
            log.debug("%signored unsolicited %r", self._label(), line)
            return
        if job is None or job.done.done():
            self._unsolicited(line)
            return
        self._reply_line(job, line)

    def _continue_urc(self, line: str, job: _InFlight | None) -> bool:
        """Take ``line`` as a line owed to a two-line URC, if one is pending; a final result for the
        command in flight drops the pending URC instead (and is routed on)."""
        pending = self._pending_urc
        if pending is None:
            return False
        if job is not None and not job.done.done() and _is_final(line):
            log.warning("%s%r announced %d more line(s) but %r came: URC dropped", self._label(),
                        pending.match.string, pending.urc.extra_lines, line)
            self._pending_urc = None
            return False
        pending.extra.append(line)
        more = pending.urc.more
        if more is not None:
            complete = len(pending.extra) >= MAX_URC_LINES or not more(pending.match.string, pending.extra)
        else:
            complete = len(pending.extra) >= pending.urc.extra_lines
        if complete:
            self._pending_urc = None
            self._call_urc(pending.urc, pending.match, pending.extra)
        return True

    def _is_echo(self, line: str, job: _InFlight | None) -> bool:
        """Whether ``line`` is the echo of the command in flight (or of its payload, after the prompt)."""
        if job is None or job.done.done():
            return False
        if not job.echo_seen and line.upper() == job.command.upper():
            job.echo_seen = True
            job.lines.clear()  # anything before our own echo was left over from earlier
            return True
        if job.payload_echo is not None and job.prompt is not None and job.prompt.done() \
                and line.upper() == job.payload_echo.upper():
            job.payload_echo = None
            return True
        return False

    def _start_urc(self, line: str, job: _InFlight | None, asked_for: bool) -> bool:
        """Hand ``line`` to the first registered URC it matches (or wait for the URC's further lines).
        An ``unless_asked`` URC leaves the line to the command in flight that asked for its prefix."""
        if self._urc_any is not None and self._urc_any.match(line) is None:
            return False  # none of them matches (one regular expression for all, most lines)
        in_flight = job is not None and not job.done.done()
        for urc in list(self._urcs):
            match = urc.pattern.match(line)
            if match is None or (urc.unless_asked and asked_for and in_flight):
                continue
            if urc.extra_lines > 0 or (urc.more is not None and urc.more(line, [])):
                self._pending_urc = _PendingUrc(urc, match)
            else:
                self._call_urc(urc, match, [])
            return True
        return False

    def _urcs_changed(self) -> None:
        self._urc_any = _any_of([u.pattern for u in self._urcs])

    def _is_noise(self, line: str) -> bool:
        if self._ignored_any is not None:
            return self._ignored_any.match(line) is not None
        return any(p.match(line) for p in self.ignored_urcs)

    def _reply_line(self, job: _InFlight, line: str) -> None:
        """A line of the reply to the command in flight: a final result ends it, else it is kept."""
        for pattern, success in FINAL_RESULTS:
            if pattern.fullmatch(line):
                self._finish(job, line, success)
                return
        if self._ends_without_ok(job, line):
            job.lines.append(line)
            self._stray_ok = asyncio.get_running_loop().create_future()
            self._finish(job, line, True)
            return
        job.lines.append(line)
        self._arm_reply_grace(job, line)

    def _arm_reply_grace(self, job: _InFlight, line: str) -> None:
        """(Re)start the grace after a query's expected information line (and any line after it)."""
        if not job.query or job.prefix is None or self.reply_grace <= 0:
            return
        if job.grace is None and not line.upper().startswith(job.prefix + ":"):
            return
        if job.grace is not None:
            job.grace.cancel()
        job.grace = asyncio.get_running_loop().call_later(self.reply_grace, self._reply_grace_expired, job)

    def _reply_grace_expired(self, job: _InFlight) -> None:
        if job is not self._in_flight or job.done.done() or not job.lines:
            return
        log.info("%s%s: no final result %ss after %r: the reply ends there", self._label(), job.command,
                 self.reply_grace, job.lines[-1])
        self._stray_ok = asyncio.get_running_loop().create_future()
        self._finish(job, job.lines[-1], True)

    def _ends_without_ok(self, job: _InFlight, line: str) -> bool:
        if not any(p.match(line) for p in self.final_without_ok):
            return False
        # "+CPIN: READY" ends AT+CPIN? on a Wavecom; the same line in the middle of AT+CSQ does not.
        prefix = _PREFIX.match(line)
        return prefix is None or prefix.group(0).upper() == job.prefix

    def _finish(self, job: _InFlight, final: str, success: bool) -> None:
        if job.grace is not None:
            job.grace.cancel()
            job.grace = None
        if success:
            job.done.set_result(AtResponse(job.command, list(job.lines), final))
        else:
            error = error_from_final(final, job.command, list(job.lines))
            self.error_counts[error_kind(error)] += 1
            job.done.set_exception(error)
        if job.prompt is not None and not job.prompt.done():
            job.prompt.set_result(None)  # no prompt after a final result: _await_prompt sees job.done

    def _unsolicited(self, line: str) -> None:
        if line == "OK" and self._stray_ok is not None:
            if not self._stray_ok.done():
                self._stray_ok.set_result(None)
            log.debug("%sstray OK after a reply without OK dropped", self._label())
            return
        if self.on_unsolicited is not None:
            try:
                self.on_unsolicited(line)
            except Exception:
                log.exception("%son_unsolicited failed for %r", self._label(), line)
            return
        log.info("%sunsolicited line with no command in flight dropped: %r", self._label(), line)

    def _call_urc(self, urc: _Urc, match: re.Match[str], extra: list[str]) -> None:
        try:
            urc.handler(match, extra)
        except Exception:
            log.exception("%sURC handler for %r failed on %r %r", self._label(), urc.pattern.pattern,
                          match.string, extra)

    def _transport_closed(self, exc: BaseException | None) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        self._close_error = exc
        self._transport = None
        job = self._in_flight
        if job is not None:
            error = self._closed_error(job.command)
            if not job.done.done():
                job.done.set_exception(error)
            if job.prompt is not None and not job.prompt.done():
                job.prompt.set_result(None)  # _await_prompt sees job.done
        if self._stray_ok is not None and not self._stray_ok.done():
            self._stray_ok.set_result(None)
        callback = self.on_closed
        if callback is not None:
            try:
                callback(exc)
            except Exception:
                log.exception("%son_closed callback failed", self._label())


#: What could make one alternation of several patterns match differently from each of them: a
#: numbered or named back reference, a conditional group, or flags in the middle of the whole.
_NOT_COMBINABLE = re.compile(r"\\[0-9]|\(\?P=|\(\?\(|\(\?[aiLmsux]")


def _any_of(patterns: Sequence[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern that matches (from the start of a line) where one of ``patterns`` does: a single
    ``match`` for a line none of them takes. None (ask each) when there are none, when they have
    flags, or when one cannot be put in an alternation unchanged (its group names clash with
    another's, or it refers to its own groups)."""
    if not patterns or any(p.flags & ~re.UNICODE or _NOT_COMBINABLE.search(p.pattern) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns))
    except re.error:
        return None


def _is_final(line: str) -> bool:
    return any(pattern.fullmatch(line) for pattern, _ in FINAL_RESULTS)


def _clean_command(cmd: str) -> str:
    cmd = cmd.rstrip("\r")
    if not cmd or any(c in cmd for c in "\r\n\x1a\x1b"):
        raise ValueError(f"bad AT command {cmd!r}: empty, or contains CR, LF, Ctrl-Z or ESC")
    return cmd


def _command_prefix(cmd: str) -> str | None:
    match = _COMMAND_PREFIX.match(cmd)
    return match.group(1).upper() if match else None
