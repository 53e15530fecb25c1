"""The OpenAPI 3.1 description of `batchit serve`'s API, served at `/openapi.json`, and the limits it
publishes, which the server (batchit.serve.api) enforces."""

from __future__ import annotations

from typing import Any

from batchit import __version__

LARGEST_BODY = 64 * 1024
"""A run request is a few rule names and flags; a larger body is refused unread."""
LONGEST_WAIT = 300.0
"""The most `?wait=` may ask for, in seconds: a client waits longer by asking again."""
IDLE_SECONDS = 30.0
"""How long a connection may send nothing before it is dropped (a body that stalls is answered
408): otherwise a client that stops mid-request would hold a thread for ever."""

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR = {
    "description": "what went wrong",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_REQUEST_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "batchit serve",
        "version": __version__,
        "description": "Queue builds of one batchit project and read their signed records. Builds run one "
        "at a time, in the order they were asked for.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/runs": {
            "post": {
                "summary": "Queue a build",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the same key with the same body returns the first request again",
                    }
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Build"}}},
                },
                "responses": {
                    "202": {"description": "queued", "content": _REQUEST_JSON},
                    "200": {
                        "description": "this Idempotency-Key was seen: the first request",
                        "content": _REQUEST_JSON,
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "408": {
                        **_ERROR,
                        "description": f"the body stalled: nothing arrived for {IDLE_SECONDS:g} s",
                    },
                    "413": {**_ERROR, "description": f"the body is over {LARGEST_BODY} bytes"},
                    "411": {**_ERROR, "description": "a chunked body: send it with a Content-Length"},
                    "422": {**_ERROR, "description": "the Idempotency-Key came before with another body"},
                },
            },
            "get": {
                "summary": "This server's requests and the runs recorded in the project",
                "responses": {"200": {"description": "requests and runs"}, "401": _ERROR},
            },
        },
        "/runs/{id}": {
            "get": {
                "summary": "A request (req-...) or a recorded run",
                "parameters": [
                    _ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": LONGEST_WAIT},
                        "description": "for a request: wait up to this many seconds for it to finish",
                    },
                ],
                "responses": {"200": {"description": "the request or run"}, "401": _ERROR, "404": _ERROR},
            }
        },
        "/runs/{id}/manifest": {
            "get": {
                "summary": "The run's manifest.json (by run id, or by the id of the request that made it)",
                "parameters": [_ID],
                "responses": {"200": {"description": "the manifest"}, "401": _ERROR, "404": _ERROR},
            }
        },
        "/runs/{id}/report": {
            "get": {
                "summary": "The run's self-contained HTML report",
                "parameters": [_ID],
                "responses": {"200": {"description": "the report"}, "401": _ERROR, "404": _ERROR},
            }
        },
        "/healthz": {
            "get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "up"}}}
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Build": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "rules": {"type": "array", "items": {"type": "string"}},
                    "flags": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                    },
                },
            },
            "Request": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {
                        "enum": [
                            "queued",
                            "running",
                            "succeeded",
                            "failed",
                            "error",
                            "interrupted",
                            "cancelled",
                        ]
                    },
                    "rules": {"type": "array", "items": {"type": "string"}},
                    "flags": {"type": "object"},
                    "queued": {"type": "string"},
                    "started": {"type": ["string", "null"]},
                    "finished": {"type": ["string", "null"]},
                    "exit_code": {"type": ["integer", "null"]},
                    "run_id": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]},
                },
            },
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    },
}
"""Without a token configured the server listens on loopback only, and `security` is not enforced."""
