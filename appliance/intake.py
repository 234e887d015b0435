"""The one send intake: a send request in, the accepted messages or a typed refusal out.

Every channel that queues an SMS (``B/send`` on MQTT, ``smsgw send``, and the rules) hands its
request here; none of them speaks SQL. The intake applies, in this order: the request's own fields
(text, ``id``, priority, ``valid_for``, language), the length limit (``[limits].max_parts``, parts
counted as the dispatcher will encode them), the number policy (``[numbers]``), the opt-out list,
the source's daily cap (``[sources."<source>"] daily_cap``), and commits (``Store.enqueue``).

    policy = IntakePolicy.from_config(config)
    intake = Intake(policy, store)
    accepted = intake.submit(SendRequest(to=("+4917612345678",), text="Freezer 3 is warm", source="cli"))

A refusal is an :class:`IntakeError`; its ``reason`` is machine-readable and its ``field`` names the
request field concerned (``None`` when it is not one field). The kinds a transport tells apart:

==========================  =====================  =============================================
class                       ``reason``             what it means (HTTP status an API would give)
==========================  =====================  =============================================
:class:`InvalidField`       ``invalid``            a field is missing or malformed (400)
:class:`BadDestination`     ``bad_destination``    ``to`` is refused by the number policy (422)
:class:`TextTooLong`        ``too_long``           more parts than ``[limits].max_parts`` (422)
:class:`RecipientOptedOut`  ``opted_out``          a recipient sent STOP, priority not critical (422)
:class:`StoreRefused`       ``refused``            the store refused the request itself (422)
:class:`OverDailyCap`       ``over_cap``           the source used its daily cap (429)
:class:`StoreUnavailable`   ``store_unavailable``  disk full, locked or failing: try again (503)
:class:`InternalError`      ``internal``           something no check foresaw (500)
==========================  =====================  =============================================

A request with an ``id`` (idempotency key) already queued for a recipient is not refused: its
:class:`Accepted` is the existing message, with ``duplicate`` true; it is not counted against a cap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime

from appliance import numbers
from appliance.caps import CapTally, DailyCapExceeded, DailyCaps
from appliance.config import Config, NumbersConfig
from appliance.deferred_log import get_logger
from appliance.frozen import field, frozen
from appliance.store_types import PRIORITIES, InvalidRequest, OptedOut, OutboundRequest, store_failure
from appliance.timeofday import QuietHours, read_quiet_hours
from drivers.gsm7_languages import KNOWN_LANGUAGES, LANGUAGE_IDS
from drivers.text_parts import PduError, count_parts, split_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import ClassVar

    from appliance.store_cli import QueueStore

LOG = get_logger(__name__)

#: The fields of a send request, as a transport names them (JSON keys of ``B/send``); ``request`` is
#: the request as a whole (not a JSON object).
FIELDS = ("request", "to", "text", "id", "priority", "report", "valid_for", "language", "class", "send_at")

#: A ``send_at`` up to this many seconds in the past is due at once (the sender's clock may be a
#: little behind the gateway's); further in the past it is refused.
SEND_AT_PAST_TOLERANCE = 300.0
#: The latest ``send_at`` accepted, in seconds from now (a year: beyond is a typo more likely than a plan).
SEND_AT_HORIZON = 366 * 86400.0
#: Destinations an IntakePolicy keeps checked, at most (emptied when full).
DESTINATION_CACHE = 4096


# --- refusals -------------------------------------------------------------------------------


class IntakeError(Exception):
    """A send request was refused; nothing of it was queued. ``str(e)`` names the problem."""

    reason: ClassVar[str] = "refused"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request field the refusal concerns (one of FIELDS), or None.
        self.field = field


class InvalidField(IntakeError):
    """A field of the request is missing, of the wrong type or out of range."""

    reason = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class BadDestination(IntakeError):
    """A recipient is not a number, or the ``[numbers]`` policy refuses it."""

    reason = "bad_destination"

    def __init__(self, cause: numbers.NumberError) -> None:
        super().__init__(f"destination {cause}", field="to")
        self.cause = cause


class TextTooLong(IntakeError):
    """The text needs more SMS parts than allowed: ``limit`` is ``[limits].max_parts``, or None when
    no concatenated SMS can carry it (more than 255 parts)."""

    reason = "too_long"

    def __init__(self, text: str, parts: int | None, limit: int | None, encoding: str,
                 cause: PduError | None = None) -> None:
        if limit is None:
            message = f"text too long: {len(text)} characters ({cause})"
        else:
            message = (f"text too long: {len(text)} characters need {parts} SMS parts, the limit is {limit} "
                       "(limits.max_parts)")
        super().__init__(message, field="text")
        self.characters, self.parts, self.limit, self.encoding, self.cause = len(text), parts, limit, encoding, cause


class RecipientOptedOut(IntakeError):
    """A recipient is on the opt-out list (it sent STOP) and the priority is not ``critical``."""

    reason = "opted_out"

    def __init__(self, cause: OptedOut) -> None:
        super().__init__(str(cause), field="to")
        self.number = cause.number


class StoreRefused(IntakeError):
    """The store refused the request on its own (``InvalidRequest``)."""

    reason = "refused"


class OverDailyCap(IntakeError):
    """The source has used its daily cap (``[sources]``); ``cause`` holds the cap and the usage."""

    reason = "over_cap"

    def __init__(self, cause: DailyCapExceeded) -> None:
        super().__init__(str(cause))
        self.cause = cause


class StoreUnavailable(IntakeError):
    """The store failed (disk full, locked, I/O): the request was not refused, only not committed;
    the same request may be submitted again. ``cause`` is the store's exception."""

    reason = "store_unavailable"

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class InternalError(IntakeError):
    """Handling the request raised something no check foresaw."""

    reason = "internal"

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the request could not be handled ({type(cause).__name__}: {str(cause)[:200]})")
        self.cause = cause


# --- requests -------------------------------------------------------------------------------


@frozen
class SendRequest:
    """One send request as a channel received it: recipients as written (national numbers are
    normalised by the policy), the text, the options and who sent it (``source``: ``cli``,
    ``mqtt``, ``mqtt:<client>``, ``rule:<name>``...)."""

    to: tuple[str, ...]
    text: str
    source: str
    #: Idempotency key: a request with the same ``client_key`` and recipient queues nothing new.
    client_key: str | None = None
    priority: str = "normal"
    report: bool = False
    #: Seconds the message may wait to be sent; None: ``[limits].validity``.
    valid_for: float | None = None
    #: ISO 639-1 code of a national language whose shift tables the SMS may use; None: ``[sms]``'s.
    language: str | None = None
    #: Modem ids that must not send the message (the self-alerts' failed modem); the others may.
    avoid_modems: tuple[str, ...] = ()
    #: TP-DCS message class; 0 is a flash SMS (shown at once, not stored). None: no class.
    message_class: int | None = None
    #: Epoch seconds before which the message is not sent; None: at once.
    send_at: float | None = None
    #: The quiet hours of the channel (an alert rule's own); None: the policy's.
    quiet_hours: QuietHours | None = None
    #: True for an answer to the recipient's own SMS (command replies): never held by quiet hours.
    answer: bool = False


@frozen
class IntakePolicy:
    """What the intake applies, from the config: number policy, limits, national language, caps."""

    numbers: NumbersConfig
    max_parts: int | None = None
    #: Default lifetime in seconds of a request without ``valid_for`` (``[limits].validity``).
    validity: float | None = None
    national_language: str | None = None
    #: The ``[sources]`` daily caps (``config.caps``).
    caps: DailyCaps = field(default_factory=DailyCaps)
    #: ``[quiet_hours]`` with ``hold = true``: non-critical messages due inside are held until the end.
    quiet_hours: QuietHours | None = None
    #: Destinations checked under this policy: as written -> normalised (at most DESTINATION_CACHE;
    #: sensors send to the same few numbers). A refused one is checked again each time.
    destinations: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: Config) -> IntakePolicy:
        """The policy of ``config``; ``ConfigError`` for a bad ``[sources]`` or ``[quiet_hours]`` table."""
        return cls(numbers=config.numbers, max_parts=config.limits.max_parts, validity=config.limits.validity,
                   national_language=config.sms.national_language, caps=config.caps,
                   quiet_hours=held_quiet_hours(config))

    def check_cap_open(self, source: str) -> None:
        """OverDailyCap if ``source``'s daily cap is 0 (nothing can be queued for it); needs no store."""
        if self.caps.cap_for(source) == 0:
            raise OverDailyCap(DailyCapExceeded(source, 0, 0, 1))


@frozen
class Prepared:
    """A request that passed its own checks and the number policy: one OutboundRequest per distinct
    recipient, in order, and the number of SMS parts each takes."""

    requests: tuple[OutboundRequest, ...]
    source: str
    parts: int


@frozen
class Accepted:
    """One committed message (one per distinct recipient); ``duplicate`` when its ``client_key`` was
    already queued for that recipient (``id`` and ``state`` are then the existing message's)."""

    id: int
    to: str
    state: str
    duplicate: bool


# --- field checks (shared by every channel) -------------------------------------------------


def json_type(value: object) -> str:
    """How ``value`` is called in a message about a JSON field."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_real_text(value: str, field: str) -> None:
    """InvalidField unless ``value`` is real text (a lone surrogate from a ``\\ud800`` escape or from
    argv bytes that are not UTF-8 is not: it cannot be encoded, stored or sent)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidField(field, f"'{field}' has a lone surrogate at character {exc.start} (not text)") from exc


def _check_text(text: str) -> None:
    if text == "":
        raise InvalidField("text", "'text' is empty")


def _check_client_key(key: str | None) -> None:
    if key is None:
        return
    if not key:
        raise InvalidField("id", "'id' is empty")
    _check_real_text(key, "id")


def _check_priority(priority: object) -> str:
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise InvalidField("priority", f"unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
    return priority


def _check_valid_for(valid_for: object) -> float | None:
    if valid_for is None:
        return None
    if isinstance(valid_for, bool) or not isinstance(valid_for, int | float) or not math.isfinite(valid_for) \
            or valid_for <= 0:
        raise InvalidField("valid_for", f"'valid_for' must be a positive number of seconds, got {valid_for!r}")
    return float(valid_for)


def _check_class(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value != 0:
        raise InvalidField("class", f"'class' must be 0 (a flash SMS, shown at once and not stored) or absent, "
                                    f"got {value!r}")
    return 0


def parse_send_at(value: object, now: float) -> float | None:
    """``send_at`` as epoch seconds: an ISO 8601 time with an offset (``2026-12-24T07:00:00+01:00``,
    ``...Z``) or without one (the appliance's local time); InvalidField if it is not one, if it is more
    than SEND_AT_PAST_TOLERANCE in the past or more than SEND_AT_HORIZON ahead."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("send_at", f"'send_at' must be an ISO 8601 time string, got {json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidField("send_at", f"'send_at' is not an ISO 8601 time ({value!r}; e.g. "
                                      "\"2026-12-24T07:00:00+01:00\")") from None
    try:
        moment = parsed.timestamp()
    except (ValueError, OverflowError, OSError):  # a local time at the ends of the calendar (year 1)
        raise InvalidField("send_at", f"'send_at' {value!r} is out of range") from None
    return _check_send_at(moment, now, value)


def _check_send_at(send_at: object, now: float, shown: object = None) -> float | None:
    if send_at is None:
        return None
    shown = send_at if shown is None else shown
    if isinstance(send_at, bool) or not isinstance(send_at, int | float) or not math.isfinite(send_at):
        raise InvalidField("send_at", f"'send_at' must be a time, got {shown!r}")
    if send_at < now - SEND_AT_PAST_TOLERANCE:
        raise InvalidField("send_at", f"'send_at' {shown!r} is {now - send_at:.0f} s in the past "
                                      f"(at most {SEND_AT_PAST_TOLERANCE:.0f} s are sent at once)")
    if send_at > now + SEND_AT_HORIZON:
        raise InvalidField("send_at", f"'send_at' {shown!r} is more than {SEND_AT_HORIZON / 86400:.0f} days ahead")
    return float(send_at)


def held_quiet_hours(config: Config) -> QuietHours | None:
    """``[quiet_hours]`` when it holds messages (``hold = true``), for every channel; else None."""
    quiet = read_quiet_hours(config.path, config.raw)
    return quiet.hours if quiet is not None and quiet.hold else None


def _check_language(language: object) -> str | None:
    if language is not None and (not isinstance(language, str) or language.lower() not in LANGUAGE_IDS):
        raise InvalidField("language", f"unknown 'language' {language!r} (one of {KNOWN_LANGUAGES})")
    return language.lower() if language else None


def _check_avoid_modems(modems: object) -> None:
    if not isinstance(modems, tuple) or not all(isinstance(m, str) and m for m in modems):
        raise InvalidField("request", f"avoid_modems must be a tuple of modem ids, not {modems!r}")


def check_destination(number: str, policy: NumbersConfig) -> str:
    """Normalise and police one destination (``appliance.numbers``); BadDestination if refused
    (``IntakePolicy.destinations`` keeps the results of the intake's own checks)."""
    try:
        return numbers.check_destination(number, policy)
    except numbers.NumberError as exc:
        raise BadDestination(exc) from exc


def request_from_json(payload: object, *, source: str, now: float | None = None) -> SendRequest:
    """The SendRequest of one JSON send request (``B/send``); InvalidField names what is wrong.

    ``{"to": number | [numbers], "text": str, "id"?: str | int, "priority"?: str, "report"?: bool,
    "valid_for"?: seconds, "language"?: code, "class"?: 0, "send_at"?: ISO time}``; other keys
    (``transaction``) are the transport's. ``now`` (default: the system clock) judges ``send_at``.
    """
    if not isinstance(payload, dict):
        raise InvalidField("request", f"request must be a JSON object, got {json_type(payload)}")
    if "to" not in payload:
        raise InvalidField("to", "missing 'to' (a phone number or a list of numbers)")
    if "text" not in payload:
        raise InvalidField("text", "missing 'text'")
    to = payload["to"]
    if isinstance(to, str):
        recipients: tuple[str, ...] = (to,)
    elif isinstance(to, list) and all(isinstance(item, str) for item in to):
        recipients = tuple(to)
        if not recipients:
            raise InvalidField("to", "'to' is an empty list")
    else:
        raise InvalidField("to", f"'to' must be a phone number string or a list of them, got {json_type(to)}")
    text = payload["text"]
    if not isinstance(text, str):
        raise InvalidField("text", f"'text' must be a string, got {json_type(text)}")
    _check_text(text)
    key = payload.get("id")
    if key is not None:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise InvalidField("id", f"'id' must be a string, got {json_type(key)}")
        key = str(key)
        _check_client_key(key)
    priority = _check_priority(payload.get("priority", "normal"))
    report = payload.get("report", False)
    if not isinstance(report, bool):
        raise InvalidField("report", f"'report' must be true or false, got {json_type(report)}")
    valid_for = _check_valid_for(payload.get("valid_for"))
    _check_real_text(text, "text")
    language = _check_language(payload.get("language"))
    message_class = _check_class(payload.get("class"))
    send_at = parse_send_at(payload.get("send_at"), time.time() if now is None else now)
    return SendRequest(to=recipients, text=text, source=source, client_key=key, priority=priority, report=report,
                       valid_for=valid_for, language=language, message_class=message_class, send_at=send_at)


def prepare(request: SendRequest, policy: IntakePolicy, now: float) -> Prepared:
    """Check ``request`` against its own rules, the length limit and the number policy (no store
    needed); the OutboundRequests it asks for, or an IntakeError."""
    if not request.to:
        raise InvalidField("to", "'to' is an empty list")
    _check_text(request.text)
    _check_client_key(request.client_key)
    _check_priority(request.priority)
    _check_valid_for(request.valid_for)
    _check_real_text(request.text, "text")
    _check_language(request.language)
    _check_avoid_modems(request.avoid_modems)
    _check_class(request.message_class)
    _check_send_at(request.send_at, now)
    return _prepare_checked(request, policy, now)


def prepare_json(payload: object, *, source: str, policy: IntakePolicy, now: float) -> Prepared:
    """:func:`prepare` of :func:`request_from_json` (whose fields are checked once)."""
    return _prepare_checked(request_from_json(payload, source=source, now=now), policy, now)


def due_time(request: SendRequest, policy: IntakePolicy, now: float) -> float:
    """When ``request`` may first be sent: its ``send_at`` (or now), past the end of the quiet hours
    (the request's own, else the policy's) when it is not critical and not an answer."""
    due = max(now, request.send_at) if request.send_at is not None else now
    quiet = request.quiet_hours or policy.quiet_hours
    if quiet is not None and request.priority != "critical" and not request.answer:
        due = quiet.end_after(due)
    return due


def _prepare_checked(request: SendRequest, policy: IntakePolicy, now: float) -> Prepared:
    """The length limit and the number policy for a request whose fields passed their checks."""
    text = request.text
    due = due_time(request, policy, now)
    lifetime = request.valid_for if request.valid_for is not None else policy.validity
    valid_until = due + lifetime if lifetime else None  # the lifetime counts from when it is due
    language = request.language.lower() if request.language else None
    priority = request.priority
    encode_language = language or policy.national_language  # as the dispatcher will encode it
    try:
        parts = count_parts(text, language=encode_language)
    except PduError as exc:  # more than 255 parts: no concatenated SMS can carry it
        raise TextTooLong(text, None, None, "", exc) from exc
    if policy.max_parts is not None and parts > policy.max_parts:
        encoding, _ = split_text(text, language=encode_language)
        raise TextTooLong(text, parts, policy.max_parts, encoding)
    requests: list[OutboundRequest] = []
    seen: set[str] = set()
    checked = policy.destinations
    for recipient in request.to:
        number = checked.get(recipient)
        if number is None:
            number = check_destination(recipient, policy.numbers)
            if len(checked) >= DESTINATION_CACHE:
                checked.clear()
            checked[recipient] = number
        if number in seen:
            continue
        seen.add(number)
        requests.append(OutboundRequest(to=number, text=text, source=request.source, client_key=request.client_key,
                                        priority=priority, valid_until=valid_until, report=request.report,
                                        language=language, avoid_modems=request.avoid_modems,
                                        message_class=request.message_class, send_at=due if due > now else None))
    return Prepared(tuple(requests), request.source, parts)


# --- the intake -----------------------------------------------------------------------------


class Intake:
    """Opt-outs, daily caps and the commit, on one store (see the module docstring)."""

    def __init__(self, policy: IntakePolicy, store: QueueStore) -> None:
        self.policy = policy
        self.store = store

    def prepare(self, request: SendRequest, now: float | None = None) -> Prepared:
        """:func:`prepare` with this intake's policy and the store's clock."""
        return prepare(request, self.policy, self.store.clock() if now is None else now)

    def prepare_json(self, payload: object, *, source: str, now: float | None = None) -> Prepared:
        """:func:`prepare_json` with this intake's policy and the store's clock."""
        return prepare_json(payload, source=source, policy=self.policy, now=self.store.clock() if now is None else now)

    def submit(self, request: SendRequest | Prepared, now: float | None = None) -> list[Accepted]:
        """Queue one request: one Accepted per distinct recipient, in order; or an IntakeError."""
        now = self.store.clock() if now is None else now
        prepared = request if isinstance(request, Prepared) else prepare(request, self.policy, now)
        (outcome,) = self.submit_many([prepared], now)
        if isinstance(outcome, IntakeError):
            raise outcome
        return outcome

    def submit_many(self, batch: Sequence[Prepared], now: float | None = None
                    ) -> list[list[Accepted] | IntakeError]:
        """Queue several requests, each on its own but committed in one transaction where it can be:
        for each, its Accepted list or its IntakeError, in order. Caps count the batch together, in
        order. When the store fails, every request not yet committed gets a StoreUnavailable."""
        now = self.store.clock() if now is None else now
        outcomes: list[list[Accepted] | IntakeError | None] = [None] * len(batch)
        try:
            listed: list[str] | None = self.store.optout_numbers()  # read once for the batch
        except Exception:
            listed = None  # each request's own check reads it again (and fails on its own)
        for index, prepared in enumerate(batch):
            try:
                self.store.check_optout(prepared.requests, listed)
            except OptedOut as exc:
                outcomes[index] = RecipientOptedOut(exc)
            except Exception as exc:
                outcomes[index] = StoreUnavailable(exc) if store_failure(exc) else InternalError(exc)
        if self.policy.caps.caps:
            self._charge_caps(batch, outcomes, now)
        good = [index for index, outcome in enumerate(outcomes) if outcome is None]
        self._commit(batch, good, outcomes, now)
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(batch), "every request has its outcome"
        return done

    def admit(self, request: SendRequest, now: float | None = None) -> Prepared:
        """Every check of :meth:`submit` but the commit, in the same order (fields, length, number
        policy, opt-outs, daily cap): for a change that commits its SMS in a transaction of its own
        together with other rows (a step of an escalating alert and its SMS, ``Store.alert_step``);
        the caller commits ``requests`` at once. Raises what :meth:`submit` would."""
        now = self.store.clock() if now is None else now
        prepared = prepare(request, self.policy, now)
        try:
            self.store.check_optout(prepared.requests)
            if self.policy.caps.caps:
                CapTally(self.policy.caps, self.store, now).charge(prepared.source, self._new_messages(prepared, set()))
        except OptedOut as exc:
            raise RecipientOptedOut(exc) from exc
        except DailyCapExceeded as exc:
            raise OverDailyCap(exc) from exc
        except Exception as exc:
            raise (StoreUnavailable(exc) if store_failure(exc) else InternalError(exc)) from exc
        return prepared

    def _new_messages(self, prepared: Prepared, seen: set[tuple[str, str]]) -> int:
        """How many of ``prepared``'s requests would be new messages (not duplicates of an ``id``
        already queued, nor of one in ``seen``, the keys taken earlier in the batch, which this adds to)."""
        count = 0
        for request in prepared.requests:
            key = request.client_key
            if key is not None:
                if (key, request.to) in seen:
                    continue
                seen.add((key, request.to))
                if self.store.queued_with_key(key, request.to) is not None:
                    continue
            count += 1
        return count

    def _charge_caps(self, batch: Sequence[Prepared], outcomes: list[list[Accepted] | IntakeError | None],
                     now: float) -> None:
        """Refuse, in order, the requests that would pass their source's daily cap; the requests of one
        batch are committed together, so they are counted together."""
        try:
            tally = CapTally(self.policy.caps, self.store, now)
        except Exception as exc:
            failure: IntakeError = StoreUnavailable(exc) if store_failure(exc) else InternalError(exc)
            for index, outcome in enumerate(outcomes):
                if outcome is None:
                    outcomes[index] = failure
            return
        seen: set[tuple[str, str]] = set()
        for index, prepared in enumerate(batch):
            if outcomes[index] is not None:
                continue
            taken = set(seen)
            try:
                tally.charge(prepared.source, self._new_messages(prepared, taken))
                seen = taken
            except DailyCapExceeded as exc:
                outcomes[index] = OverDailyCap(exc)
            except Exception as exc:
                LOG.exception("checking the daily cap of %s failed", prepared.source)
                outcomes[index] = StoreUnavailable(exc) if store_failure(exc) else InternalError(exc)

    def _commit(self, batch: Sequence[Prepared], good: list[int],
                outcomes: list[list[Accepted] | IntakeError | None], now: float) -> None:
        """Commit the requests at ``good`` in one transaction, or one by one if that fails for a
        reason other than the store failing."""
        if not good:
            return
        try:
            results = self.store.enqueue([r for index in good for r in batch[index].requests], now=now)
        except Exception as exc:
            if store_failure(exc):
                for index in good:
                    outcomes[index] = StoreUnavailable(exc)
                return
            LOG.warning("committing %d send request(s) together failed (%s); committing them one by one",
                        len(good), exc)
        else:
            at = 0
            for index in good:
                requests = batch[index].requests
                outcomes[index] = [Accepted(r.id, q.to, r.state, r.duplicate)
                                   for q, r in zip(requests, results[at:at + len(requests)], strict=True)]
                at += len(requests)
            return
        for index in good:
            requests = batch[index].requests
            try:
                results = self.store.enqueue(requests, now=now)
            except OptedOut as exc:
                outcomes[index] = RecipientOptedOut(exc)
            except InvalidRequest as exc:
                outcomes[index] = StoreRefused(str(exc))
            except Exception as exc:
                outcomes[index] = StoreUnavailable(exc) if store_failure(exc) else InternalError(exc)
            else:
                outcomes[index] = [Accepted(r.id, q.to, r.state, r.duplicate)
                                   for q, r in zip(requests, results, strict=True)]
