"""The project's own Python modules, as steps run them: found from the project root, imported as their
files are now, and keyed by their source.

A `python` step's function and a `markdown.render` extension may live in the project
(`tools.py`, `signing.py`). Either is imported from the project root however batchit was started
(the `batchit` script puts its own folder on the import path, `python -m batchit` the working
directory), is imported again in a long-lived process once its file changed, and enters the
action key with the project modules it imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from batchit.fsutil import StatTuple, stat_identity
from batchit.operators.imports import project_imports


def put_project_on_path(root: Path) -> None:
    """Make the project's modules importable, ahead of installed ones as a script's directory is, and
    never from bytecode that may predate their source (see `FreshProjectBytecode`)."""
    entry = str(root)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    if not any(isinstance(finder, FreshProjectBytecode) and finder.root == entry for finder in sys.meta_path):
        path_finder = importlib.machinery.PathFinder  # in sys.meta_path as the class itself
        at = sys.meta_path.index(path_finder) if path_finder in sys.meta_path else 0
        sys.meta_path.insert(at, FreshProjectBytecode(entry))


class FreshProjectBytecode:
    """Finds modules as Python's path finder does, first removing a project module's cached bytecode
    when the source may have changed after it was written.

    Python trusts a `.pyc` whose recorded source mtime, in whole seconds, and size match the source:
    a module rewritten to the same size within the second it was compiled in (a script, a checkout,
    a test) or given back its old mtime runs its old code, and the job's key, which holds the new
    source, would record that output as up to date. Bytecode written no later than the second of
    the source's last change (its ctime, which no tool sets back) is compiled again.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._inside = root.rstrip(os.sep) + os.sep

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """The path finder's spec for `fullname`, with a project module's doubtful bytecode removed."""
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        origin = spec.origin if spec is not None else None
        if origin and origin.startswith(self._inside) and origin.endswith(".py"):
            drop_doubtful_bytecode(origin)
        return spec


def drop_doubtful_bytecode(source: str) -> None:
    """Remove the cached bytecode of `source` unless it was written in a later second than the
    source's last change (see `FreshProjectBytecode`)."""
    with contextlib.suppress(OSError, NotImplementedError, ValueError):
        cached = Path(importlib.util.cache_from_source(source))
        if cached.stat().st_mtime_ns // 10**9 <= os.stat(source).st_ctime_ns // 10**9:
            cached.unlink()


def module_key_files(label: str, source: Path, root: Path) -> dict[str, Path]:
    """The files whose content decides what a project module does: its source, labelled `label`, and
    each project module it imports, labelled `<label> imports <path>`."""
    files = {label: source}
    for relative in project_imports(source, root):
        files[f"{label} imports {relative}"] = root / relative
    return files


_loaded: dict[str, tuple[ModuleType, StatTuple | None]] = {}
"""Project modules this process imported for steps, with their source file's stat then."""
_loading = threading.Lock()


def current_module(module_name: str) -> ModuleType:
    """The project module as its source file is now: imported the first time, and again after the
    file changed. A long-lived process (`batchit watch`) builds again after an edit, and the job's key
    already holds the new source: running the old code would record its output as up to date.
    One lock: a worker thread never sees a module another one is still importing.
    """
    with _loading:
        known = _loaded.get(module_name)
        if known is not None:
            module, seen = known
            origin = getattr(module, "__file__", None)
            now = stat_identity(origin) if origin else None
            if now == seen:
                return module
            module = importlib.reload(module)
        else:
            importlib.invalidate_caches()  # the module may have been written after this process started
            spec = importlib.util.find_spec(module_name)
            now = stat_identity(spec.origin) if spec is not None and spec.origin else None
            module = importlib.import_module(module_name)
        _loaded[module_name] = (module, now)
        return module


def stale_helpers(changed: Iterable[Path], root: Path) -> list[str]:
    """The modules this process imported from the `changed` files that a reload of the steps' own
    modules would not bring up to date: helpers no step names (they are not imported again), and a
    step's module that another step's module imports (a reload leaves the names the other copied
    with `from ... import` as they were). Either way the process would run old code, so
    `batchit watch` starts again instead."""
    files = {path.resolve() for path in changed if path.suffix == ".py"}
    if not files:
        return []
    steps = {name: Path(file) for name, (module, _) in _loaded.items() if (file := module.__file__)}
    stale = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if not origin or Path(origin).resolve() not in files:
            continue
        if name not in _loaded or _imported_by_another_step(Path(origin), name, steps, root):
            stale.append(name)
    return sorted(stale)


def _imported_by_another_step(file: Path, name: str, steps: Mapping[str, Path], root: Path) -> bool:
    """True when a step module other than `name` imports `file`, directly or through others."""
    try:
        relative = file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return False
    return any(relative in project_imports(other, root) for step, other in steps.items() if step != name)
