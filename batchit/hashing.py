"""Content hashes and canonical JSON: the two things every key, record and signature is built from.

Files are hashed by reading them (never mmap: a file truncated while mapped kills the process with
SIGBUS); large files use BLAKE3's multithreaded mode, which pays off only above a few MiB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from blake3 import blake3

from batchit.errors import PermanentError

CHUNK = 1 << 20
"""Read size for hashing: large enough that syscalls are noise, small enough to stay in cache."""

THREADED_ABOVE = 16 << 20
"""Files larger than this are hashed with BLAKE3's thread pool."""


def blake3_hex(data: bytes) -> str:
    """The BLAKE3 hex digest of `data`."""
    return blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str], expected_size: int | None = None) -> str:
    """The BLAKE3 hex digest of a file's content.

    When `expected_size` is given (the size stat reported), a file that shrinks or grows while it is
    read raises PermanentError instead of yielding a hash of bytes that never existed together.
    """
    size = 0
    with _open_regular(path) as handle:
        if expected_size is not None and expected_size <= CHUNK:
            data = handle.read(expected_size + 1)  # one byte more tells a grown file; no 1 MiB buffer
            size = len(data)
            hasher = blake3(data)
        else:
            threads = blake3.AUTO if (expected_size or 0) > THREADED_ABOVE else 1
            hasher = blake3(max_threads=threads)
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                hasher.update(chunk)
    if expected_size is not None and size != expected_size:
        raise PermanentError(f"{os.fspath(path)} changed size while it was being hashed")
    return hasher.hexdigest()


def hash_file_pair(path: Path) -> tuple[str, str, int]:
    """BLAKE3 and SHA-256 hex digests and the size of a file, read once."""
    b3 = blake3()
    sha = hashlib.sha256()
    size = 0
    with _open_regular(path) as handle:
        while chunk := handle.read(CHUNK):
            size += len(chunk)
            b3.update(chunk)
            sha.update(chunk)
    return b3.hexdigest(), sha.hexdigest(), size


def _open_regular(path: str | os.PathLike[str]) -> io.FileIO:
    """Open a regular file for reading; anything else raises PermanentError, naming it.

    Non-blocking, so a FIFO is opened and refused instead of waiting forever for a writer.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermanentError(f"{os.fspath(path)} is not a regular file; batchit hashes only regular files")
    return open(fd, "rb", buffering=0)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace and UTF-8 text: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_string(text: str) -> str:
    """One string as a canonical JSON literal (for building canonical documents by concatenation)."""
    return json.dumps(text, ensure_ascii=False)


PLAIN_TEXT = re.compile(r'[^"\\\x00-\x1f]*')
"""Text that JSON writes as it is, between quotes: no quote, backslash or control character."""


def json_text(text: str) -> str:
    """`json_string`, with a fast path for the common text that needs no escaping (most paths)."""
    return f'"{text}"' if PLAIN_TEXT.fullmatch(text) else json_string(text)
