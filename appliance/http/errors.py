"""Error answers of the HTTP API: ``{"error": "…", "field": "…"}`` with the status that fits.

A handler raises :class:`ApiError`; the middleware turns it, aiohttp's own HTTP errors (404, 405,
413) and anything unforeseen (500, logged) into that JSON shape, so every answer a client gets is
JSON it can read the reason from.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from appliance.payload import dump_json

LOG = logging.getLogger("appliance.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, the reason, the request field it is about."""

    def __init__(self, status: int, error: str, *, field: str | None = None, kind: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.kind = kind
        self.headers = dict(headers or {})


def json_response(document: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dump_json(document).encode(), status=status, headers=headers,
                        content_type="application/json")


def error_response(exc: ApiError) -> web.Response:
    document: dict[str, object] = {"error": exc.error}
    if exc.field is not None:
        document["field"] = exc.field
    if exc.kind is not None:
        document["kind"] = exc.kind
    return json_response(document, exc.status, exc.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = {404: f"no such resource: {request.method} {request.path}",
                  405: f"method {request.method} is not allowed on {request.path}",
                  413: "request body too large"}.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ApiError(exc.status, reason, headers=headers))
    except Exception as exc:  # one broken request never takes the server with it
        LOG.exception("HTTP %s %s failed", request.method, request.path)
        return error_response(ApiError(500, f"internal error ({type(exc).__name__})"))
