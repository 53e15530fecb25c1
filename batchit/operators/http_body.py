"""An `http.enrich` answer's body, read with a cap on its size once decoded (a gzip bomb, a huge answer).

httpx would decode a `Content-Encoding: gzip` body a whole network read at a time: 64 KiB of
gzip can inflate to 64 MB at once, and a body encoded twice (`gzip, gzip`) to gigabytes. So the
raw bytes are read here and inflated in pieces of at most `PIECE` bytes, each counted as it comes:
no more than the cap and one piece is ever held. The codings are httpx's own (gzip, and deflate
with or without its zlib wrapper); a coding it would not decode is passed on undecoded, as httpx does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from batchit.errors import PermanentError

PIECE = 65_536
"""The most bytes one inflating step produces before it is counted."""

CODINGS = ("gzip", "deflate")
"""The content codings decoded here; `identity` and any other are passed on as they are."""

ACCEPTED = ", ".join(CODINGS)
"""The request's Accept-Encoding: only codings this module can decode under the cap."""


class TooLarge(Exception):
    """The body is over the cap; `size` is its declared length when the server said it."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


def read_body(response: httpx.Response, url: str, limit: int) -> bytes:
    """The decoded body of a streamed `response` to GET `url`; TooLarge as soon as more than
    `limit` bytes of it would be held, PermanentError for a body its coding cannot decode.
    Transport errors while reading (a timeout, a reset) are httpx's, raised as they come."""
    codings = [
        coding
        for value in response.headers.get_list("content-encoding", split_commas=True)
        if (coding := value.strip().lower()) in CODINGS
    ]
    declared = response.headers.get("content-length", "")
    if not codings and declared.isdigit() and int(declared) > limit:
        raise TooLarge(int(declared))
    pieces: Iterator[bytes] = response.iter_raw()
    for coding in reversed(codings):  # the last coding listed was applied last
        pieces = _inflated(pieces, coding, url)
    body = bytearray()
    for piece in pieces:
        body += piece
        if len(body) > limit:
            raise TooLarge(None)
    return bytes(body)


def _inflated(pieces: Iterator[bytes], coding: str, url: str) -> Iterator[bytes]:
    """`pieces` inflated from `coding`, in pieces of at most PIECE bytes. Data after the end of the
    compressed stream is ignored, as httpx ignores it, and not even read."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS)
    first = True
    for piece in pieces:
        data = piece
        while data and not inflater.eof:
            try:
                out = inflater.decompress(data, PIECE)
            except zlib.error as exc:
                if coding == "deflate" and first:  # a raw deflate stream, without the zlib wrapper
                    inflater, first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise _undecodable(url, coding, exc) from None
            first = False
            data = inflater.unconsumed_tail
            if out:
                yield out
        if inflater.eof:
            break
    try:
        rest = inflater.flush()
    except zlib.error as exc:
        raise _undecodable(url, coding, exc) from None
    if rest:
        yield rest


def _undecodable(url: str, coding: str, exc: zlib.error) -> PermanentError:
    return PermanentError(f"GET {url}: the answer's {coding} body cannot be decoded: {exc}")
