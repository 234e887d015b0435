"""``POST /api/v1/messages``: a ``B/send`` request over HTTP, through the send intake.

The body is the JSON of ``B/send`` (``to``, ``text``, ``id``, ``priority``, ``report``, ``valid_for``,
``language``, ``class``, ``send_at``; any other field is a 400 naming it); the ``Idempotency-Key`` header is the ``id``. The
request is checked by ``appliance.intake`` (number policy, length, opt-outs, the daily cap of the
token's source ``http:<name>``) and committed; the answer comes only after the commit:

- ``202`` ``{"id", "to", "state": "queued", "parts", "duplicate": false}`` (several recipients:
  ``{"messages": [...]}``, one per distinct number);
- ``200`` with the existing message and ``"duplicate": true`` when the ``id`` was queued before, by
  HTTP, MQTT or ``smsgw send`` alike (the store's idempotency key is the same);
- the intake's refusals: 400 (a field), 422 (number policy, too long, opted out), 429 (over the daily
  cap), 503 (the store failed: disk full; nothing was committed, the same request may be sent again).

Requests that arrive together are committed together (``Intake.submit_many``: one transaction, one
fsync), as the MQTT bridge does with a batch of ``B/send`` messages; each still gets its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance.http import views
from appliance.http.bodies import read_object
from appliance.http.config import HttpConfig, TokenConfig
from appliance.http.errors import ApiError, json_response
from appliance.intake import Accepted, Intake, IntakeError, InternalError, Prepared, request_from_json

if TYPE_CHECKING:
    from appliance.store_cli import QueueStore

LOG = logging.getLogger("appliance.http")

#: The body's fields (``transaction`` is MQTT's and has no place here).
FIELDS = ("to", "text", "id", "priority", "report", "valid_for", "language", "class", "send_at")
#: HTTP status of each IntakeError reason.
STATUS = {"invalid": 400, "bad_destination": 422, "too_long": 422, "opted_out": 422, "refused": 422,
          "over_cap": 429, "store_unavailable": 503, "internal": 500}
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: A commit waits for at most MAX_DEFER more loop turns while requests keep coming, and takes at most
#: about MAX_BATCH requests: one fsync for many, without holding any of them up for long.
MAX_DEFER = 4
MAX_BATCH = 256


def refusal(exc: IntakeError) -> ApiError:
    return ApiError(STATUS.get(exc.reason, 500), exc.message, field=exc.field, kind=exc.reason)


class SendIntake:
    """Reads, checks and commits send requests (see the module docstring)."""

    def __init__(self, intake: Intake, http: HttpConfig) -> None:
        self.intake = intake
        self.http = http
        self._pending: list[tuple[Prepared, asyncio.Future[list[Accepted] | IntakeError]]] = []
        self._deferred = 0

    @property
    def store(self) -> QueueStore:
        return self.intake.store

    async def handle(self, request: web.Request, token: TokenConfig) -> web.StreamResponse:
        body = await read_object(request, max_body=self.http.max_body, timeout=self.http.body_timeout, known=FIELDS)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            key = key.strip()
            if not key:
                raise ApiError(400, f"the {IDEMPOTENCY_HEADER} header is empty", field="id", kind="invalid")
            if "id" in body and str(body["id"]) != key:
                raise ApiError(400, f"'id' ({body['id']!r}) and the {IDEMPOTENCY_HEADER} header ({key!r}) differ",
                               field="id", kind="invalid")
            body["id"] = key
        try:
            prepared, accepted = await self.submit(body, token.source)
        except IntakeError as exc:
            raise refusal(exc) from None
        return self._answer(prepared, accepted)

    async def submit(self, body: dict[str, Any], source: str) -> tuple[Prepared, list[Accepted]]:
        """Check and commit one request (the JSON of ``B/send``) from ``source``; IntakeError when refused.
        The status page's test SMS comes this way too."""
        now = self.store.clock()
        prepared = self.intake.prepare(request_from_json(body, source=source, now=now), now)
        outcome = await self._submit(prepared)
        if isinstance(outcome, IntakeError):
            if outcome.reason == "store_unavailable":
                LOG.error("HTTP send from %s not committed: %s", source, outcome.message)
            raise outcome
        return prepared, outcome

    def _answer(self, prepared: Prepared, accepted: list[Accepted]) -> web.Response:
        entries: list[dict[str, Any]] = []
        for result in accepted:
            if result.duplicate:
                row = self.store.message(result.id)
                entry = views.message(row) if row is not None else {"id": result.id, "to": result.to,
                                                                    "state": result.state, "parts": prepared.parts}
                entry["duplicate"] = True
            else:
                entry = {"id": result.id, "to": result.to, "state": result.state, "parts": prepared.parts,
                         "duplicate": False}
            entries.append(entry)
        status = 200 if all(result.duplicate for result in accepted) else 202
        return json_response(entries[0] if len(entries) == 1 else {"messages": entries}, status)

    # --- group commit ------------------------------------------------------------------------

    def _submit(self, prepared: Prepared) -> asyncio.Future[list[Accepted] | IntakeError]:
        """Queue ``prepared`` for the next commit (once a loop turn has brought no more requests)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Accepted] | IntakeError] = loop.create_future()
        if not self._pending:
            self._deferred = 0
            loop.call_soon(self._commit, 0)
        self._pending.append((prepared, future))
        return future

    def _commit(self, seen: int) -> None:
        if len(self._pending) > seen and len(self._pending) < MAX_BATCH and self._deferred < MAX_DEFER:
            # requests came in during the last loop turn: one more turn lets the rest of them in
            self._deferred += 1
            asyncio.get_running_loop().call_soon(self._commit, len(self._pending))
            return
        batch, self._pending = self._pending, []
        try:
            outcomes = self.intake.submit_many([prepared for prepared, _ in batch])
        except Exception as exc:  # submit_many answers every request itself; this is the last guard
            LOG.exception("committing %d HTTP send request(s) failed", len(batch))
            outcomes = [InternalError(exc) for _ in batch]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # the client may have gone (its handler was cancelled)
                future.set_result(outcome)
