"""The project's own modules a `python` step's module imports, found by reading their source.

A step's function usually leans on helpers of its project (`from helpers import slugify`). Editing
such a helper changes what the step computes, so its file must enter the job's key, like the
templates a template includes. Which files those are is read from the `import` statements of the
source (every one, also those inside functions), followed from module to module, and resolved
against the project root only: installed packages and the standard library never count, and the
answer depends on the files alone, never on what a process happened to import before.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from batchit.fsutil import StatTuple, stat_identity


def project_imports(module_file: Path, root: Path) -> list[str]:
    """The project-relative source files of every project module `module_file` imports, directly or
    through another one, and the `__init__.py` of the packages they live in (Python runs those too);
    the module's own file is not among them. A file that cannot be read or parsed imports nothing:
    running the step reports that error better."""
    root = root.resolve()
    start = module_file.resolve()
    seen = {start}
    pending = [start]
    while pending:
        current = pending.pop()
        for found in _imported_files(current, stat_identity(str(current)), root):
            if found not in seen:
                seen.add(found)
                pending.append(found)
    seen.discard(start)
    return sorted(path.relative_to(root).as_posix() for path in seen)


@cache
def _imported_files(source: Path, identity: StatTuple | None, root: Path) -> tuple[Path, ...]:
    """The project files `source` imports directly (cached per file version: `identity` is its stat)."""
    if identity is None:
        return ()
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return ()
    package = _package_of(source, root)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            if base is None:
                continue
            if base:
                names.append(base)
            names.extend(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    files: list[Path] = []
    for name in names:
        files.extend(_module_files(name, root))
    return tuple(dict.fromkeys(files))


def _package_of(source: Path, root: Path) -> list[str] | None:
    """The dotted package `source` belongs to, as parts (a package's `__init__.py` is its own
    package); None when the file is not under the project root."""
    try:
        parts = list(source.relative_to(root).parts)
    except ValueError:
        return None
    return parts[:-1]


def _absolute(module: str | None, level: int, package: list[str] | None) -> str | None:
    """The absolute name `from <level dots><module> import ...` refers to; None when it climbs out."""
    if level == 0:
        return module or None
    if package is None or level - 1 > len(package):
        return None
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def _module_files(name: str, root: Path) -> list[Path]:
    """The files Python runs for `import name` when the project root is first on the import path: each
    package's `__init__.py` and the module's own file, as far as they exist under the root."""
    files = []
    folder = root
    parts = name.split(".")
    for index, part in enumerate(parts):
        package = folder / part
        init = package / "__init__.py"
        if init.is_file():
            files.append(init)
            folder = package
            continue
        module = folder / f"{part}.py"
        if index == len(parts) - 1 and module.is_file():
            files.append(module)
        break
    return files
