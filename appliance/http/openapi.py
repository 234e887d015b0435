"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/v1/openapi.json``.

Written as data beside the routes it describes; ``tests/test_http_openapi.py`` keeps it true: every
route of ``routes.ROUTES`` is here with its scope and no other, the document passes an OpenAPI 3.1
validator, and real answers of a running server match the schemas of their status codes.
"""

from __future__ import annotations

from typing import Any

from appliance import __version__
from appliance.http.config import SCOPES, HttpConfig
from appliance.store import PRIORITIES, STATES

_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed request: bad JSON, a wrong type or an unknown field (named in `field`)",
            401: "No token, or an unknown one", 403: "The token lacks the scope",
            404: "Not found", 408: "The request body did not arrive in time", 409: "Busy",
            413: "The request body is over the limit", 422: "Refused: number policy, length, opt-out",
            429: "Over a daily cap, the token's request rate, or too many failed attempts (Retry-After)",
            500: "Internal error", 502: "The network or the modem failed", 503: "Not available now (disk full, store closed, no modem)",
            504: "No answer from the network in time"}
    return {str(status): _error(text[status]) for status in statuses}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What is wrong, in words"},
            "field": {"type": "string", "description": "The request field (or query parameter) concerned"},
            "kind": {"type": "string", "description": "A machine-readable kind: invalid, bad_destination, "
                     "too_long, opted_out, over_cap, store_unavailable, unknown_field, bad_json, too_large, "
                     "unauthorized, forbidden, rate_limited, auth_rate, not_found, ..."},
        },
    },
    "SendRequest": {
        "type": "object", "required": ["to", "text"], "additionalProperties": False,
        "properties": {
            "to": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                   "description": "A number (+4917…, or national with [numbers] default_country) or a list"},
            "text": {"type": "string", "minLength": 1},
            "id": {"type": ["string", "integer"], "description": "Idempotency key: the same id again is the "
                   "same message (also the Idempotency-Key header); shared with MQTT B/send"},
            "priority": {"enum": list(PRIORITIES)},
            "report": {"type": "boolean", "description": "Ask for a delivery report"},
            "valid_for": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds it may wait to be sent"},
            "language": {"type": "string", "description": "National language shift tables (3GPP TS 23.038)"},
            "class": {"enum": [0], "description": "0: a flash SMS (TP-DCS message class 0, 3GPP TS 23.038 §4), "
                      "shown at once and not stored by the phone"},
            "send_at": {"type": "string", "description": "ISO 8601 time not to send before, with an offset "
                        "(2026-12-24T07:00:00+01:00, …Z) or without (the gateway's local time); at most 5 min in "
                        "the past (then sent at once) and a year ahead"},
        },
    },
    "Accepted": {
        "type": "object", "required": ["id", "to", "state", "parts", "duplicate"],
        "description": "A committed message; with `duplicate` true, the existing message (fields of Message)",
        "properties": {
            "id": {"type": "integer"}, "to": {"type": "string"}, "state": {"enum": list(STATES)},
            "parts": {"type": "integer", "minimum": 1}, "duplicate": {"type": "boolean"},
        },
    },
    "SendAnswer": {
        "description": "One recipient: its message (a duplicate carries the whole existing message). Several: "
                       "`messages`, one per distinct recipient.",
        "oneOf": [
            _ref("Accepted"),
            {"type": "object", "required": ["messages"],
             "properties": {"messages": {"type": "array", "items": _ref("Accepted"), "minItems": 2}}},
        ],
    },
    "DeliveryPart": {
        "type": "object", "required": ["sequence", "total", "state"],
        "properties": {
            "sequence": {"type": "integer"}, "total": {"type": "integer"}, "state": {"type": "string"},
            "modem": _NULLABLE_STRING, "message_reference": {"type": ["integer", "null"]},
            "sent_at": _TIME, "delivered_at": _TIME,
            "status": {"type": ["integer", "null"], "description": "TP-ST of the last status report"},
        },
    },
    "Message": {
        "type": "object", "required": ["id", "to", "state", "parts"],
        "properties": {
            "id": {"type": "integer"}, "client_id": _NULLABLE_STRING, "to": {"type": "string"},
            "text": _NULLABLE_STRING, "state": {"enum": list(STATES)}, "priority": {"type": ["string", "null"]},
            "source": _NULLABLE_STRING, "parts": {"type": "integer"}, "modem": _NULLABLE_STRING,
            "error": _NULLABLE_STRING, "attempts": {"type": ["integer", "null"]}, "report": {"type": "boolean"},
            "created_at": _TIME, "updated_at": _TIME, "valid_until": _TIME,
            "send_at": {**_TIME, "description": "Held until then (send_at or quiet hours); null: sent at once"},
            "class": {"type": ["integer", "null"], "description": "TP-DCS message class; 0: flash SMS"},
            "delivery": {"type": "array", "items": _ref("DeliveryPart"),
                         "description": "Per part: sent, delivered (GET /api/v1/messages/{id} only)"},
        },
    },
    "MessageList": {
        "type": "object", "required": ["messages"],
        "properties": {"messages": {"type": "array", "items": _ref("Message")},
                       "next_before": {"type": "integer", "description": "Pass as `before` for the next page"}},
    },
    "Received": {
        "type": "object", "required": ["id", "received_at", "modem"],
        "properties": {
            "id": {"type": "integer"}, "from": _NULLABLE_STRING, "text": _NULLABLE_STRING,
            "state": {"enum": ["received", "undecodable"]}, "sent_at": _NULLABLE_STRING, "received_at": _TIME,
            "modem": _NULLABLE_STRING, "parts": {"type": ["integer", "null"]}, "partial": {"type": "boolean"},
            "missing": {"type": "array", "items": {"type": "integer"}}, "error": {"type": "string"},
            "raw": _NULLABLE_STRING,
        },
    },
    "InboxList": {
        "type": "object", "required": ["messages", "last_id"],
        "properties": {"messages": {"type": "array", "items": _ref("Received")},
                       "last_id": {"type": ["integer", "null"], "description": "Pass as `since` to poll on"}},
    },
    "Modem": {
        "type": "object", "required": ["id", "state"],
        "properties": {
            "id": {"type": "string"}, "state": {"type": "string"}, "healthy": {"type": ["boolean", "null"]},
            "signal": {"type": ["object", "null"], "properties": {
                "dbm": {"type": ["integer", "null"]}, "percent": {"type": ["integer", "null"]},
                "rssi": {"type": ["integer", "null"]}, "ber": {"type": ["integer", "null"]}}},
            "operator": {"type": ["object", "null"], "properties": {
                "name": _NULLABLE_STRING, "numeric": _NULLABLE_STRING}},
            "registration": _NULLABLE_STRING, "technology": _NULLABLE_STRING, "sim": _NULLABLE_STRING,
            "pin_attempts": {"type": ["integer", "null"]}, "model": _NULLABLE_STRING, "imei": _NULLABLE_STRING,
            "port": _NULLABLE_STRING, "error": _NULLABLE_STRING, "last_error": _NULLABLE_STRING,
            "last_error_at": _TIME, "recoveries": {"type": "integer"}, "updated_at": _TIME,
            "balance": {"type": ["object", "null"], "properties": {
                "amount": {"type": ["number", "null"]}, "unit": _NULLABLE_STRING,
                "below_low": {"type": ["boolean", "null"]}, "error": _NULLABLE_STRING,
                "read_at": _TIME, "checked_at": _TIME}},
        },
    },
    "ModemList": {"type": "object", "required": ["modems"],
                  "properties": {"modems": {"type": "array", "items": _ref("Modem")}}},
    "Status": {
        "type": "object", "description": "The document of `smsgw status --json`",
        "required": ["modems", "outbox", "inbox", "daemon", "sources_today"],
        "properties": {
            "modems": {"type": "array", "items": {"type": "object"}},
            "outbox": {"type": "object", "additionalProperties": {"type": "integer"}},
            "inbox": {"type": "object"}, "events_pending": {"type": "integer"}, "daemon": {"type": "object"},
            "mqtt": {"type": ["object", "null"]},
            "sources_today": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "accepted": {"type": "integer"}, "sent": {"type": "integer"}, "cap": {"type": ["integer", "null"]},
                "remaining": {"type": ["integer", "null"]}}}},
            "alerts": {"type": "object", "description": "Escalating alerts: the rules with `escalate`, counts per "
                       "state and `active`, the active alerts (as on `B/alert/<id>`, with `alerted_names`)",
                       "properties": {"rules": {"type": "array", "items": {"type": "string"}},
                                      "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                                      "active": {"type": "array", "items": {"type": "object"}}}},
            "last_errors": {"type": "array"},
        },
    },
    "UssdRequest": {
        "type": "object", "additionalProperties": False,
        "description": "Start with `code` (and `modem`); answer an open session with `session` and `reply`; "
                       "end it with `session` and `cancel: true`",
        "properties": {
            "code": {"type": "string", "examples": ["*100#"]}, "modem": {"type": "string"},
            "session": {"type": "string"}, "reply": {"type": "string"}, "cancel": {"type": "boolean"},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
        },
    },
    "UssdAnswer": {
        "type": "object", "required": ["modem"],
        "properties": {"modem": {"type": "string"}, "code": {"type": "string"}, "text": _NULLABLE_STRING,
                       "network_status": {"type": "integer", "description": "+CUSD <m>: 0 done, 1 a question"},
                       "dcs": {"type": ["integer", "null"]}, "session": _NULLABLE_STRING,
                       "session_open": {"type": "boolean"}, "cancelled": {"type": "boolean"}},
    },
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"const": "ok"}, "store_ms": {"type": "number"}}},
}

_LIMIT = {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}


def _secured(scope: str) -> list[dict[str, list[str]]]:
    return [{"bearer": [scope]}]


def paths() -> dict[str, Any]:
    read, auth_errors = _secured("read"), _errors(401, 403, 429)
    return {
        "/api/v1/messages": {
            "post": {
                "operationId": "sendMessage", "summary": "Queue an SMS (the same request as MQTT B/send)",
                "security": _secured("send"),
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string"}, "description": "The request's `id`"}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SendRequest")}}},
                "responses": {
                    "202": _json(_ref("SendAnswer"), "Committed to the store: it will be sent"),
                    "200": _json(_ref("SendAnswer"), "The `id` was queued before: the existing message, "
                                 "`duplicate` true"),
                    **_errors(400, 401, 403, 408, 413, 422, 429, 503),
                },
            },
            "get": {
                "operationId": "listMessages", "summary": "Outbound messages, newest first", "security": read,
                "parameters": [
                    {"name": "state", "in": "query", "required": False, "schema": {"enum": list(STATES)}},
                    _LIMIT,
                    {"name": "before", "in": "query", "required": False, "schema": {"type": "integer"},
                     "description": "Only messages with a smaller id (the next page)"},
                ],
                "responses": {"200": _json(_ref("MessageList"), "The messages"), **_errors(400), **auth_errors},
            },
        },
        "/api/v1/messages/{id}": {
            "get": {
                "operationId": "getMessage", "summary": "One message: state, parts, modem, error, delivery",
                "security": read,
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json(_ref("Message"), "The message"), **_errors(400, 404), **auth_errors},
            },
        },
        "/api/v1/inbox": {
            "get": {
                "operationId": "listInbox", "summary": "Received messages, oldest first", "security": read,
                "parameters": [
                    {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "The id of the last message seen (returns the newer ones), or an RFC 3339 "
                                    "time (received at or after it)"},
                    _LIMIT,
                ],
                "responses": {"200": _json(_ref("InboxList"), "The messages"), **_errors(400), **auth_errors},
            },
        },
        "/api/v1/modems": {
            "get": {"operationId": "listModems", "summary": "Each modem: state, signal, operator, SIM, balance",
                    "security": read, "responses": {"200": _json(_ref("ModemList"), "The modems"), **auth_errors}},
        },
        "/api/v1/status": {
            "get": {"operationId": "getStatus", "summary": "The gateway's status (as `smsgw status --json`)",
                    "security": read, "responses": {"200": _json(_ref("Status"), "The status"), **auth_errors}},
        },
        "/api/v1/ussd": {
            "post": {
                "operationId": "ussd", "summary": "A USSD request or session step (e.g. *100#)",
                "security": _secured("admin"),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("UssdRequest")}}},
                "responses": {"200": _json(_ref("UssdAnswer"), "The network's answer"),
                              **_errors(400, 404, 409, 413, 502, 503, 504), **auth_errors},
            },
        },
        "/api/v1/openapi.json": {
            "get": {"operationId": "openapi", "summary": "This document", "security": [],
                    "responses": {"200": {"description": "The OpenAPI 3.1 document",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}}},
        },
        "/metrics": {
            "get": {"operationId": "metrics", "summary": "Prometheus metrics (text format 0.0.4)", "security": read,
                    "responses": {"200": {"description": "The metrics",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}},
                                  **auth_errors}},
        },
        "/healthz": {
            "get": {"operationId": "health", "summary": "200 while the event loop and the store answer",
                    "security": [],
                    "responses": {"200": _json(_ref("Health"), "Alive"), **_errors(503)}},
        },
    }


def document(http: HttpConfig | None = None) -> dict[str, Any]:
    scheme = "https" if http is not None and http.tls is not None else "http"
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "smsgw HTTP API", "version": __version__,
                 "description": "Send and read SMS through the smsgw gateway. The same intake and guarantees as "
                                "MQTT: 202 only after the commit; the same `id` over HTTP and MQTT is one message."},
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": f"An API token (smsgw token create NAME --scopes …); scopes: {', '.join(SCOPES)} "
                               "(admin includes the others)"}},
        },
        "security": [{"bearer": []}],
    }
    if http is not None:
        doc["servers"] = [{"url": f"{scheme}://{http.listen}"}]
    return doc
