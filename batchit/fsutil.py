"""File-system helpers every layer needs: atomic writes and project-relative path checks.

Every file batchit writes goes to a temporary name beside its destination and is renamed into place,
so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from blake3 import blake3

StatTuple = tuple[int, int, int, int]
"""(size, mtime_ns, ctime_ns, inode): the cheap identity of a file version."""

TEMP_MARK = ".batchit-tmp-"
"""Temporary files carry this in their name so a later run can recognise and remove leftovers."""

TEMP_NAME = re.compile(r"\.batchit-tmp-[0-9a-f]{12}-[0-9]+-")
"""How every temporary name `temp_name_for` makes begins: the sweep removes only those, never a
user's file that merely starts with TEMP_MARK."""

FINE_TICK_NS = 20_000_000
"""The longest a timestamp tick lasts on a filesystem that keeps nanoseconds (the kernel's clock
ticks every 1 to 10 ms), with room to spare."""

COARSE_TICK_NS = 3_000_000_000
"""The same for a filesystem whose timestamps are whole milliseconds or coarser (FAT's are 2 s)."""

NAME_MAX = 255
"""The longest file name, in bytes, that Linux and macOS file systems take."""


_TEMP_NUMBERS = itertools.count()
_process_token = secrets.token_hex(6)


def _new_process_token() -> None:
    """Give a forked child its own token, so parent and child never name the same temporary file."""
    global _process_token
    _process_token = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_process_token)


def temp_name_for(name: str) -> str:
    """A temporary file name for a file called `name`, unique to this process and call.

    A random token per process (not the pid, which another host sharing the file system under Dask,
    or a process after a reboot, may reuse) and a counter: no random draw per file. The end of
    `name` is kept (its extension, which some writers choose a format by), shortened from the
    front when the whole would be longer than a file name may be.
    """
    prefix = f"{TEMP_MARK}{_process_token}-{next(_TEMP_NUMBERS)}-"
    encoded = name.encode("utf-8", "surrogateescape")
    room = NAME_MAX - len(prefix)
    if len(encoded) > room:
        name = encoded[-room:].decode("utf-8", "ignore")
    return prefix + name


def companion_name(path: str, suffix: str) -> str:
    """The name of a file batchit keeps for `path` (its job's log, a quarantined input's reason):
    `path` + `suffix`, unless its last part would then be too long for a file name; that part is
    then cut short and ends in a hash of the whole, so two long names keep two companions."""
    head, _, last = path.rpartition("/")
    whole = (last + suffix).encode("utf-8", "surrogateescape")
    if len(whole) <= NAME_MAX:
        return path + suffix
    mark = "~" + blake3(whole).hexdigest()[:16]
    room = NAME_MAX - len(mark.encode()) - len(suffix.encode())
    short = last.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{head}/{short}{mark}{suffix}" if head else f"{short}{mark}{suffix}"


def temp_path_for(dest: Path) -> Path:
    """A fresh temporary path in `dest`'s directory (same file system, so the rename is atomic)."""
    return dest.with_name(temp_name_for(dest.name))


@contextlib.contextmanager
def replacing(dest: Path, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside `dest` to write; renamed over `dest` when the block ends normally.

    If the block raises, the temporary file is removed and `dest` keeps its old content: no reader
    ever sees a partial file. With `fsync`, the rename is made durable too (the caller syncs the file).
    """
    if not dest.parent.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(dest.parent)


def publish_bytes(
    dest: str, data: bytes, *, fsync: bool = False, check: Callable[[Path], None] | None = None
) -> None:
    """Put `data` at `dest` atomically, as `replacing` does, in the fewest system calls a file allows.

    Every job's output and cache entry goes through here, so it avoids what a buffered `open` and
    a `pathlib` path cost per file. `check` may inspect the finished temporary file (and
    raise) before it is renamed into place.
    """
    directory, _, name = dest.rpartition("/")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    made: list[Path] = []
    while True:
        tmp = f"{directory}/{temp_name_for(name)}"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileNotFoundError:
            made = _make_directories(Path(directory))
        except FileExistsError:
            continue  # a leftover that happens to share the name: take the next number
        except OSError as exc:  # a read-only or full disk: named after the file the user knows
            raise naming(exc, dest, instead_of=tmp) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, dest)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        for folder in made:  # deepest first; one another job wrote into meanwhile stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):  # named after the file the user knows, not its temporary twin
            raise naming(exc, dest, instead_of=tmp) from exc
        raise
    if fsync:
        fsync_dir(Path(directory))


def _make_directories(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; the ones this call made, deepest first, so that a
    failed write can take them away again instead of leaving empty folders in `out`."""
    missing = []
    folder = directory
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    directory.mkdir(parents=True, exist_ok=True)
    return missing


def naming(exc: OSError, path: str | os.PathLike[str], instead_of: str | None = None) -> OSError:
    """`exc`, naming `path` when it names no file (or names `instead_of`): a write to an open file
    that fails (a full disk) says only what went wrong, and the user needs to know where."""
    if exc.filename is not None and exc.filename != instead_of:
        return exc
    return type(exc)(exc.errno, exc.strerror, os.fspath(path))


def atomic_write_bytes(dest: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `dest` so that `dest` holds either its old content or all of `data`."""
    publish_bytes(str(dest), data, fsync=fsync)


def atomic_write_text(dest: Path, text: str, *, fsync: bool = False) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(dest, text.encode("utf-8"), fsync=fsync)


def stat_identity(path: str) -> StatTuple | None:
    """The stat identity of the file at `path`, or None when there is none (nor its directory)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def is_racy(stat: StatTuple, read_from: int) -> bool:
    """True when a file with `stat`, read at or after `read_from` (ns since the epoch), may have
    been rewritten since in the same timestamp tick, so its stat could not tell."""
    _, mtime_ns, ctime_ns, _ = stat
    tick = COARSE_TICK_NS if mtime_ns % 1_000_000 == 0 else FINE_TICK_NS
    return max(mtime_ns, ctime_ns) >= read_from - tick


def is_utf8_name(path: str) -> bool:
    """False for a name whose bytes are not UTF-8 (Python holds them as lone surrogates): no key,
    record or report can hold it."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path: str) -> str:
    """A path as a message can print it: bytes that are not UTF-8 written as `\\xff`."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cache_entry(cache_dir: str | Path, key: str) -> Path:
    """Where the content-addressed cache keeps the output of action key `key`.

    Entries fan out over 256 directories by the key's first two hex digits, so no directory grows
    past a few thousand entries however large the cache gets.
    """
    return Path(cache_dir, key[:2], key)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable against power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_relative_clean(path: str) -> bool:
    """True for a relative POSIX path with no `..` segment: one that stays inside the folder it is
    joined to. A backslash is an ordinary character of a POSIX file name, not a separator."""
    if not path or path.startswith("/"):
        return False
    return ".." not in PurePosixPath(path).parts


def normalise_relative(path: str) -> str:
    """Collapse empty and `.` segments of a relative POSIX path (`a//./b` -> `a/b`)."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def resolves_inside(root: Path, candidate: Path) -> bool:
    """True when `candidate`, with every symlink followed, stays inside `root` (itself resolved)."""
    try:
        candidate.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def not_a_file(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> str | None:
    """What stands at `path` when it is neither a regular file nor nothing ("a directory", "a FIFO",
    ..., and "a symlink" when symlinks are not followed); None for a regular file or a missing one.

    batchit reads, replaces and removes only regular files: opening a FIFO blocks forever, and a
    directory at an output path holds a user's files.
    """
    try:
        mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return kind_of(mode)


def kind_of(mode: int) -> str | None:
    """What a file of `mode` (from a stat) is when it is not a regular file; None for one."""
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a device"


def remove_output(out_dir: Path, path: str) -> str | None:
    """Remove the output batchit wrote at `path` (relative to `out_dir`) and its emptied parent
    directories; return why it was left alone instead, None when it is removed or already gone.

    SPEC section 8: batchit deletes only inside `out`, and only what it can have written there: a
    folder replaced by a symlink leading out of `out` is followed by no delete, and a directory,
    symlink or FIFO found where an output was is not batchit's file.
    """
    refused = removal_refused(out_dir, path)
    if refused is None:
        target = out_dir / path
        target.unlink(missing_ok=True)
        remove_empty_parents(target, out_dir)
    return refused


def removal_refused(out_dir: Path, path: str) -> str | None:
    """Why `remove_output` would leave `path` alone, or None when it would remove it (or it is gone):
    what `clean --dry-run` reports without removing anything."""
    target = out_dir / path
    if not resolves_inside(out_dir.resolve(), target.parent):
        return "its folder leads outside `out` through a symlink (remove the symlink, then run again)"
    kind = not_a_file(target, follow_symlinks=False)
    return None if kind is None else f"it is {kind}, not a regular file batchit wrote (move it away yourself)"


def remove_outputs(out_dir: Path, paths: list[str]) -> tuple[list[str], dict[str, str]]:
    """`remove_output` for each path: (the paths removed or already gone, path -> why it was kept)."""
    removed: list[str] = []
    kept: dict[str, str] = {}
    for path in paths:
        refused = remove_output(out_dir, path)
        if refused is None:
            removed.append(path)
        else:
            kept[path] = refused
    return removed, kept


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove `path`'s empty parent directories up to, but not including, `stop`."""
    parent = path.parent
    while parent != stop and stop in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def sweep_temp_files(directory: Path, *, deep: bool = True) -> list[Path]:
    """Remove temporary files a killed run left under `directory` (`deep`: in its folders too, else
    in it alone); return what was removed."""
    removed: list[Path] = []
    for parent, folders, names in os.walk(directory):
        if not deep:
            folders.clear()
        for name in names:
            if TEMP_NAME.match(name):
                path = Path(parent, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
