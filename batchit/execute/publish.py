"""Putting a job's output in place: written beside its destination, checked, renamed into place.

A worker publishes an output in one of two ways: the bytes its pipeline returned (`write_output`),
or a copy batchit already holds, from the cache or a twin job (`restore_output`). Either way a reader,
or a crash, never sees half a file, and the output's BLAKE3 (for the state store) and SHA-256 (for
the provenance) come from the bytes that were written. A finished output is then copied into the
content-addressed cache (`copy_into_cache`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blake3 import blake3

from batchit.errors import OutputError, TransientError
from batchit.execute.contracts import check_contracts
from batchit.fsutil import publish_bytes, replacing
from batchit.hashing import CHUNK, hash_file_pair
from batchit.operators.base import InputFile


class CacheMiss(TransientError):
    """A cache entry (or a twin output) was missing or corrupted; the job must be run instead."""


def write_output(
    value: bytes | str | InputFile,
    dest: str,
    expect: dict[str, Any] | None,
    root: str,
    *,
    fsync: bool,
) -> tuple[str, str, int, bytes | None]:
    """Write a pipeline's result beside `dest`, check it against the rule's `expect:` contracts,
    then rename it into place.

    Returns the output's BLAKE3 and SHA-256, its size, and its bytes when they fit in memory (for
    the cache copy).
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    if isinstance(data, InputFile):
        data = _read_small(data)
    if isinstance(data, bytes):
        size = len(data)

        def check(tmp: Path) -> None:
            check_contracts(expect, tmp, size, Path(root))

        with _writing(dest, root):
            publish_bytes(dest, data, fsync=fsync, check=check if expect else None)
        return blake3(data).hexdigest(), hashlib.sha256(data).hexdigest(), size, data
    b3, sha = blake3(), hashlib.sha256()
    size = 0
    with (
        open(data.absolute, "rb") as source,
        _writing(dest, root),
        replacing(Path(dest), fsync=fsync) as tmp,
    ):
        with open(tmp, "wb") as handle:
            while chunk := source.read(CHUNK):
                handle.write(chunk)
                b3.update(chunk)
                sha.update(chunk)
                size += len(chunk)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        check_contracts(expect, tmp, size, Path(root))
    return b3.hexdigest(), sha.hexdigest(), size, None


def restore_output(
    source: Path, dest: Path, expected: str | None, root: str, *, fsync: bool
) -> tuple[str, str, int]:
    """Put a known copy of the output in place, refusing it if its bytes are not the expected ones.

    A copy that is gone or unreadable (a cache entry deleted by hand, say) is a CacheMiss like a
    corrupted one: the job runs instead, and the input is not blamed.
    """
    try:
        reader = open(source, "rb")  # noqa: SIM115 - the `with` below closes it
    except OSError as exc:
        raise CacheMiss(f"{source} cannot be read: {exc.strerror or exc}") from exc
    with reader, _writing(dest, root), replacing(dest, fsync=fsync) as tmp:
        with open(tmp, "wb") as writer:
            shutil.copyfileobj(reader, writer)
        digest, sha, size = hash_file_pair(tmp)
        if expected is not None and digest != expected:
            raise CacheMiss(f"{source} does not hold the recorded bytes")
    return digest, sha, size


def copy_into_cache(entry: Path, dest: str | Path, data: bytes | None) -> None:
    """Keep a copy of the output `dest` (never a hard link: an output edited in place must not
    corrupt its cache entry) at the cache `entry`, unless one is there already."""
    if entry.exists():
        return
    if data is None:
        with replacing(entry) as tmp:
            shutil.copyfile(dest, tmp)
    else:
        publish_bytes(str(entry), data)


@contextlib.contextmanager
def _writing(dest: str | Path, root: str) -> Iterator[None]:
    """Turn an OSError while writing an output into an OutputError naming it: a file or directory in
    the way, a full or read-only disk is no fault of the job's input."""
    try:
        yield
    except OSError as exc:
        output = Path(dest).relative_to(root).as_posix()
        if exc.errno in _DISK_REFUSED:
            hint = "free space or fix the permissions there, then build again (a build resumes)"
        else:
            hint = f"clear the way to {output} (a file or directory batchit did not write?) and build again"
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}", hint=hint) from exc


_DISK_REFUSED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
"""Errors that say the disk refused the write (full, read-only, not permitted), not what is in the way."""


def _read_small(file: InputFile) -> bytes | InputFile:
    """The whole content of a file of at most CHUNK bytes; a larger one stays an InputFile (streamed).

    The read asks for the file's size plus one byte, not for CHUNK: a 1 MiB buffer per small file
    costs more than reading it. A file that grew meanwhile is streamed instead.
    """
    with open(file.absolute, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > CHUNK:
            return file
        data = handle.read(size + 1)
    return data if len(data) <= size else file
