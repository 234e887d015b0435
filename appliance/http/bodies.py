"""Request bodies within limits: at most ``[http] max_body`` bytes, read within ``body_timeout``
seconds, one JSON object whose fields are all known.

Too large → 413 (refused from ``Content-Length`` before reading, or when the chunks pass the limit),
too slow → 408, not UTF-8 / not JSON / not an object → 400, an unknown field → 400 naming it. The
JSON is read with :func:`appliance.payload.load_json`, as MQTT payloads are (no nesting bombs, no
lone surrogates, no 10 000-digit integers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from aiohttp import web

from appliance.http.errors import ApiError
from appliance.intake import json_type
from appliance.payload import PayloadError, load_json


async def read_body(request: web.Request, max_body: int, timeout: float) -> bytes:
    length = request.content_length
    if length is not None and length > max_body:
        raise ApiError(413, f"request body of {length} bytes is over the limit of {max_body} bytes",
                       kind="too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > max_body:
                    raise ApiError(413, f"request body is over the limit of {max_body} bytes", kind="too_large",
                                   headers={"Connection": "close"})
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s", kind="timeout",
                       headers={"Connection": "close"}) from None
    return b"".join(chunks)


async def read_object(request: web.Request, *, max_body: int, timeout: float,
                      known: Collection[str]) -> dict[str, Any]:
    """The body as a JSON object with only ``known`` fields; ApiError naming the problem."""
    body = await read_body(request, max_body, timeout)
    if not body.strip():
        raise ApiError(400, "the request body is empty: send a JSON object", kind="bad_json")
    try:
        document = load_json(body)
    except PayloadError as exc:
        raise ApiError(400, exc.reason.replace("payload", "request body", 1), kind="bad_json") from None
    if not isinstance(document, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {json_type(document)}",
                       kind="bad_json")
    unknown = [name for name in document if name not in known]
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; known fields: {', '.join(known)}",
                       field=unknown[0], kind="unknown_field")
    return document
