"""The files this process's output ends up in, which `batchit watch` must not take for changes.

Each line the watch prints lands in them: were they in the project, each rebuild would change a
file and start the next rebuild, for ever. Redirected (`batchit watch > watch.log`), stdout is the
file itself; piped (`batchit watch | tee watch.log`), it is what the processes reading the pipe
write, and so on from pipe to pipe (`| tee a.log | grep x > b.log`). Linux tells through /proc
what each process has open; elsewhere none are known.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class _Open:
    """What a process has open (the `readlink` of each descriptor: a path, or `pipe:[N]`)."""

    reads: frozenset[str]
    writes: frozenset[str]


def own_output_files(root: Path) -> list[str]:
    """The project-relative files stdout and stderr end up in, directly or through pipes."""
    reached = {target for fd in (1, 2) if (target := _target(PROC / "self" / "fd" / str(fd)))}
    pipes = {target for target in reached if target.startswith("pipe:")}
    if pipes:
        others = [opened for pid, opened in _processes() if pid != os.getpid()]
        while True:  # what a process reading a reached pipe writes is reached too
            more = {target for opened in others if opened.reads & pipes for target in opened.writes} - reached
            if not more:
                break
            reached |= more
            pipes |= {target for target in more if target.startswith("pipe:")}
    return sorted(relative for target in reached if (relative := _inside(root, target)) is not None)


def _processes() -> Iterator[tuple[int, _Open]]:
    """Each process this user may look into, with what it has open."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:  # gone meanwhile, or another user's
            continue
        reads: set[str] = set()
        writes: set[str] = set()
        for link in descriptors:
            target, mode = _target(link), _access_mode(entry / "fdinfo" / link.name)
            if target is not None and mode is not None:
                (writes if mode != os.O_RDONLY else reads).add(target)
                if mode == os.O_RDWR:
                    reads.add(target)
        yield int(entry.name), _Open(frozenset(reads), frozenset(writes))


def _access_mode(info: Path) -> int | None:
    """O_RDONLY, O_WRONLY or O_RDWR: how a descriptor was opened; None when it is closed."""
    try:
        flags = info.read_text().partition("flags:")[2].split()
    except OSError:
        return None
    return int(flags[0], 8) & os.O_ACCMODE if flags else None


def _target(link: Path) -> str | None:
    try:
        return str(link.readlink())
    except OSError:
        return None


def _inside(root: Path, target: str) -> str | None:
    """`target`'s path relative to the project; None when it is no file of the project."""
    if not target.startswith("/"):
        return None
    try:
        return Path(target).resolve().relative_to(root.resolve()).as_posix()
    except (OSError, ValueError):
        return None
