"""`http.enrich`: GET a URL made from the record, and merge the JSON answer into it (SPEC 11, 12).

The value is a record, a mapping such as `data.load` gives for a JSON object. Its fields fill the
`url`'s placeholders that are neither output placeholders nor matrix keys (`{id}`), percent-encoded,
as the input's path placeholders are (`{stem}`; `fill_params`).
What the service cannot help (a refused connection, a timeout, an answer of 429 or 5xx) raises
`ServiceUnreachable`: the build retries it as the rule's `retry:` says, honouring a Retry-After, and
defers the job when the last attempt fails too. Any other 4xx is the record's fault (a permanent
error: the input is quarantined); an answer that is not JSON, or a `${env:NAME}` in `headers` whose
variable is not set, is the rule's (a `RecipeError`: the job fails, the input stays).

Secrets stay out of every record: `${env:NAME}` is read only here, as the request is made, and no
message, cache entry or action key holds the value (the key and the cache name hold the header as
written). Requests to one host share the project's rate limit (batchit.operators.rate_limit);
answers are kept in the response cache (batchit.operators.http_cache).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from batchit.errors import PermanentError, RecipeError, ServiceUnreachable
from batchit.operators.base import LARGEST_COUNT, InputKind, JobContext, Operator
from batchit.operators.data_formats import loads_json
from batchit.operators.http_body import ACCEPTED, TooLarge, read_body
from batchit.operators.http_cache import Answer, cache_key, entry_path, read_entry, write_entry
from batchit.operators.rate_limit import HostLimiter, limiter_for
from batchit.placeholders import PATH_PLACEHOLDERS, UnknownPlaceholder, substitute, text

ENV_VALUE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${env:NAME}` in a header value: the environment variable NAME, read as the request is made."""

_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may hold (RFC 9110: control characters but HTAB). The library would
refuse such a value with a message quoting it escaped (`\\r`), which no mask finds: batchit refuses
it first, naming only the variable."""

TRANSIENT_STATUS = frozenset({429}) | frozenset(range(500, 600))
"""Answers that say "not now": retried, then the job is deferred."""
MAX_REDIRECTS = 20
"""Redirects followed before the request fails, as httpx's own default."""
DEFAULT_PORTS = {"http": 80, "https": 443}

WEEK = 604_800
TEN_YEARS = 315_360_000

MAX_BYTES = 10_000_000
"""The default cap on an answer's size once decoded (10 MB): far above any record's enrichment,
far below what a worker can hold."""


class HttpEnrich(Operator):
    """GET a URL made from the record; merge the JSON answer into a copy of the record."""

    name = "http.enrich"
    takes: ClassVar[frozenset[InputKind]] = frozenset()
    ends_with = "data.dump"  # its value is always a record
    version = "2"  # 2: an answer over max_bytes (10 MB by default) fails the job
    resources = "io"
    libraries = ("httpx",)
    record_params = frozenset({"url"})
    coordinator_only = True
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "GET url and merge the JSON answer into the record; an unreachable service "
        "defers the job.",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {
                "type": "string",
                "minLength": 1,
                "description": "http(s) URL to GET. {field} takes the record's field (percent-encoded) "
                "unless an output placeholder or matrix key has that name.",
            },
            "rate": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 10000,
                "description": "At most this many requests per second to the URL's host, across the "
                "whole run (below 1: one request every 1/rate seconds). Without it, no limit.",
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
                "default": 30,
                "description": "Seconds to wait for the service (connecting, then each read); a "
                "timeout is retried, then defers the job.",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                "description": "Request headers. ${env:NAME} in a value is the environment variable "
                "NAME, read at run time and never written anywhere.",
            },
            "cache_ttl": {
                "type": "number",
                "minimum": 0,
                "maximum": TEN_YEARS,
                "description": "Seconds an answer in .batchit/http/ is reused when the job runs again "
                "(0: never). Without it, forever.",
            },
            "max_bytes": {
                "type": "integer",
                "minimum": 1,
                "maximum": LARGEST_COUNT,
                "default": MAX_BYTES,
                "description": "The largest answer taken, in bytes once decompressed (a gzip answer "
                "is counted as it inflates); a larger one is a permanent error, never kept.",
            },
            "into": {
                "type": "string",
                "minLength": 1,
                "description": "Put the answer (any JSON) under this key of the record instead of "
                "merging its keys into the record's top level.",
            },
        },
    }

    @classmethod
    def fill_params(cls, params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters filled as every step's are, but in `url` the input's path placeholders
        (`{stem}`, `{path}`, ...) are percent-encoded as the record's fields are, keeping the `/`
        between folders: a file named `a#1.json` asks for `.../a%231`, not for `.../a` with the
        rest taken for a fragment. Matrix values stay as written: they may be pieces of URL."""
        encoded = {
            name: urllib.parse.quote(value, safe="/")
            if name in PATH_PLACEHOLDERS and isinstance(value, str)
            else value
            for name, value in values.items()
        }
        url = {name: value for name, value in params.items() if name == "url"}
        return {**super().fill_params(params, values), **super().fill_params(url, encoded)}

    def run(self, value: Any, ctx: JobContext, **params: Any) -> dict[str, Any]:
        """The record with the service's answer for it merged in (parameters: see `params_schema`)."""
        if not isinstance(value, Mapping):
            raise PermanentError(
                f"http.enrich needs a record (a mapping, as data.load gives for a JSON object), "
                f"got {type(value).__name__}"
            )
        target = request_url(params["url"], value)
        templates: dict[str, str] = dict(params.get("headers") or {})
        entry = entry_path(ctx.root, cache_key("GET", target, templates))
        max_bytes: int = params.get("max_bytes", MAX_BYTES)
        answer = read_entry(entry, params.get("cache_ttl"))
        if answer is not None:
            if len(answer.body) > max_bytes:  # kept before the cap was lowered: as if fetched now
                raise too_large(target, max_bytes, len(answer.body))
            return merge(value, parse_answer(target, answer), params.get("into"), target)
        limit = (limiter_for(ctx.root), params.get("rate"))
        answer = fetch(target, expand_headers(templates), params.get("timeout", 30), limit, max_bytes)
        # merged before it is kept: an answer the rule cannot use (no JSON, or no object to merge)
        # is not kept, so the next build asks the service again once it is fixed
        merged = merge(value, parse_answer(target, answer), params.get("into"), target)
        try:
            write_entry(entry, "GET", target, answer)
        except OSError as exc:  # the cache only saves requests: no job fails for it
            ctx.log.warning("could not keep the answer of %s in %s: %s", target, entry.parent, exc)
        return merged


def request_url(template: str, record: Mapping[str, Any]) -> str:
    """The URL to GET: `template`'s remaining placeholders filled from the record's fields."""
    fields: dict[str, str] = {}
    for key, field in record.items():
        if isinstance(key, str) and isinstance(field, str | int | float | bool):
            fields[key] = urllib.parse.quote(text(field), safe="")
    try:
        filled = substitute(template, fields)
    except UnknownPlaceholder as exc:
        what = "is not a text, number or boolean" if exc.name in record else "is missing"
        raise PermanentError(f"url {template!r}: the record's field {exc.name!r} {what}") from None
    target = str(filled)
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise PermanentError(f"url {target!r} is not an http(s) URL")
    return target


def expand_headers(templates: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The headers to send, each `${env:NAME}` replaced by the variable's value (unset: the rule's
    fault), and the values read, which no message may show."""
    expanded: dict[str, str] = {}
    secrets: list[str] = []
    for name, template in templates.items():
        for variable in ENV_VALUE.findall(template):
            if variable not in os.environ:
                raise RecipeError(
                    f"header {name!r} reads the environment variable {variable}, which is not set",
                    hint=f"set {variable} in the environment batchit runs in",
                )
            if _UNSENDABLE.search(os.environ[variable]):  # which the library's message would quote
                raise RecipeError(
                    f"header {name!r} reads the environment variable {variable}, which holds a "
                    "control character (a line end?) that no header can carry",
                    hint=f"set {variable} without it (a token read from a file keeps its CR or LF)",
                )
            secrets.append(os.environ[variable])
        expanded[name] = ENV_VALUE.sub(lambda match: os.environ[match.group(1)], template)
    return expanded, tuple(secret for secret in secrets if secret)


def fetch(
    url: str,
    headers: tuple[dict[str, str], tuple[str, ...]],
    timeout: float,
    limit: tuple[HostLimiter, float | None],
    max_bytes: int,
) -> Answer:
    """GET `url` with `headers` (and the secrets they hold) within the host's rate (`limit`: the
    project's limiter and the step's rate): a 2xx answer of at most `max_bytes` once decoded;
    anything else raises (see the module). No message quotes a secret, whatever the library says."""
    sent, secrets = headers
    limiter, rate = limit
    if not any(name.lower() == "accept-encoding" for name in sent):
        sent = {"Accept-Encoding": ACCEPTED, **sent}  # no coding read_body cannot count as it decodes
    body = b""
    try:
        with httpx.Client(timeout=timeout) as client:
            request = client.build_request("GET", url, headers=sent)
            for _ in range(MAX_REDIRECTS + 1):  # each hop is a request of its own to the rate
                with (
                    limiter.slot(host_of(str(request.url)), rate),
                    contextlib.closing(client.send(request, stream=True)) as response,
                ):
                    if response.next_request is None and 200 <= response.status_code < 300:
                        body = read_body(response, url, max_bytes)
                if response.next_request is None:
                    break
                request = response.next_request
            else:
                raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)
    except TooLarge as exc:
        raise too_large(url, max_bytes, exc.size) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as exc:
        raise PermanentError(f"GET {url}: {_told(exc, secrets)}") from None
    except httpx.TransportError as exc:  # refused, reset, timed out: the service cannot be reached
        raise ServiceUnreachable(f"GET {url}: {_told(exc, secrets)}") from None
    except (ValueError, TypeError) as exc:  # a header value no request can carry
        raise RecipeError(f"GET {url}: the headers cannot be sent: {_told(exc, secrets)}") from None
    status = response.status_code
    if status in TRANSIENT_STATUS:
        raise ServiceUnreachable(
            f"GET {url} answered {status} {response.reason_phrase}",
            retry_after=response.headers.get("Retry-After"),
        )
    if not 200 <= status < 300:
        raise PermanentError(f"GET {url} answered {status} {response.reason_phrase}")
    return Answer(status, response.headers.get("Content-Type", ""), body, time.time())


def too_large(url: str, max_bytes: int, size: int | None) -> PermanentError:
    """The error for an answer over `max_bytes`: `size` bytes when known, else more than the cap."""
    told = f"{size:,} bytes" if size is not None else f"more than {max_bytes:,} bytes once decompressed"
    return PermanentError(
        f"GET {url}: the answer is {told}, over the step's max_bytes ({max_bytes:,})",
        hint="raise the http.enrich step's max_bytes if answers this large are expected",
    )


def host_of(url: str) -> str:
    """The host a request goes to, as the rate counts hosts: `host:port`, with the scheme's default
    port written out, so `http://example.org` and `http://example.org:80` are one host."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # no port number: httpx refuses the URL
        return parts.netloc.lower()
    return f"{(parts.hostname or '').lower()}:{port}"


def _told(exc: Exception, secrets: tuple[str, ...]) -> str:
    """What a library's exception says, with every secret it might quote masked."""
    message = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def parse_answer(url: str, answer: Answer) -> Any:
    """The JSON an answer holds; one that holds none is the rule's fault (the URL asks the wrong thing)."""
    try:
        return loads_json(answer.body)
    except ValueError as exc:  # NaN, a key written twice and the like are no JSON either
        raise RecipeError(
            f"GET {url}: the answer ({answer.content_type or 'no Content-Type'}) is not JSON: {exc}",
            hint="point url at a JSON API",
        ) from None


def merge(record: Mapping[str, Any], answer: Any, into: str | None, url: str) -> dict[str, Any]:
    """A copy of `record` with the answer's keys added (replacing the record's), or under `into`."""
    merged = dict(record)
    if into is not None:
        merged[into] = answer
    elif isinstance(answer, dict):
        merged.update(answer)
    else:
        raise RecipeError(
            f"GET {url}: the answer is a JSON {type(answer).__name__}, not an object",
            hint="set `into: KEY` to keep it under a key of the record",
        )
    return merged
