"""The project's own modules a `python` step's module imports, found by reading their source.

A step's function usually leans on helpers of its project (`from helpers import slugify`). Editing
such a helper changes what the step computes, so its file must enter the job's key, like the
templates a template includes. Which files those are is read from the `import` statements of the
source (every one, also those inside functions), followed from module to module, and resolved
against the project root only: installed packages and the standard library never count, and the
answer depends on the files alone, never on what a process happened to import before.

`function_source` finds a step's module as its job will import it, and reads its source the same
way, to tell before any job runs that the module is not there or surely does not define the function.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

from batchit.errors import RecipeError
from batchit.fsutil import StatTuple, stat_identity


def function_source(function: str, root: Path) -> Path | None:
    """The source file of the module of `function` (`module:name`), found as `import` will find
    it (the project root must be on the import path) but not run: only a dotted name's parent
    packages are imported, as `importlib.util.find_spec` does. None when it has no source file.

    A module that cannot be found, also once the finders' caches are cleared (it may have been
    written since they were filled), or whose source surely defines no such name (`may_define`),
    raises RecipeError, the error its jobs would fail with.
    """
    module, _, name = function.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            importlib.invalidate_caches()
            spec = importlib.util.find_spec(module)
    except ValueError:  # a module already imported whose __spec__ is None: nothing to read
        return None
    except (ImportError, SyntaxError) as exc:  # a parent package is missing or broken
        raise unimportable(module, exc) from None
    if spec is None:
        raise unimportable(module, ModuleNotFoundError(f"No module named {module!r}", name=module))
    if not spec.has_location or spec.origin is None:
        return None
    source = Path(spec.origin)
    if not may_define(source, name):
        try:
            shown = source.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            shown = str(source)
        raise RecipeError(
            f"module {module} ({shown}) defines no function {name}",
            hint=f"correct the name in {function!r}, or define `def {name}(value, ctx, **params)` in {shown}",
        )
    return source


def unimportable(module: str, exc: BaseException) -> RecipeError:
    """The error of a `python` step whose module cannot be imported, at plan or at run time: the
    module (or a package above it) is not there, or running it failed (a syntax error, an import
    of its own, any exception its top level raised)."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (module == missing or module.startswith(f"{missing}.")):
        return RecipeError(
            f"cannot import module {module}: {exc}",
            hint=f"put {module.replace('.', '/')}.py under the project root, or install it",
        )
    told = str(exc) if isinstance(exc, ImportError | SyntaxError) else f"{type(exc).__name__}: {exc}"
    return RecipeError(
        f"cannot import module {module}: {told}",
        hint=f"correct {module}, or install what it imports; `python -c 'import {module}'` in the "
        "project root shows where it fails",
    )


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


def project_folders(module: str, module_file: Path, root: Path) -> list[str]:
    """The project-relative folders (the root aside) whose entries decide which files `import
    module` runs, with the project modules that file imports (`project_imports`): a file or folder
    that appears in one, or goes, may change that (a module an `import` inside a `try` did not find
    yet, a package that shadows a module of the same name) though no file that was read changed."""
    root = root.resolve()
    start = module_file.resolve()
    names = [module]
    for source in (start, *(root / path for path in project_imports(start, root))):
        names.extend(_imported_names(source, stat_identity(str(source)), root))
    folders = {folder for name in dict.fromkeys(names) for folder in _module_folders(name, root)}
    return sorted(folder.relative_to(root).as_posix() for folder in folders if folder != root)


@cache
def _imported_files(source: Path, identity: StatTuple | None, root: Path) -> tuple[Path, ...]:
    """The project files `source` imports directly (cached per file version: `identity` is its stat)."""
    files: list[Path] = []
    for name in _imported_names(source, identity, root):
        files.extend(_module_files(name, root))
    return tuple(dict.fromkeys(files))


@cache
def _imported_names(source: Path, identity: StatTuple | None, root: Path) -> tuple[str, ...]:
    """The absolute names of the modules `source` imports (cached per file version: `identity` is
    its stat); none when it cannot be read or parsed."""
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
    return tuple(dict.fromkeys(names))


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
    return _module_lookup(name, root)[0]


def _module_folders(name: str, root: Path) -> list[Path]:
    """The folders Python looks in for `import name`: where each part of the name is looked up, as
    far as the parts before it are packages under the root."""
    return _module_lookup(name, root)[1]


def _module_lookup(name: str, root: Path) -> tuple[list[Path], list[Path]]:
    """`import name` followed under the project root: the files it runs and the folders it looks in.

    A folder without `__init__.py` is a namespace package (PEP 420): its modules count all the same,
    but a module file of that name comes first, as it does for `import`. A module has no submodules.
    """
    files: list[Path] = []
    folders: list[Path] = []
    folder = root
    parts = name.split(".")
    for index, part in enumerate(parts):
        folders.append(folder)
        package = folder / part
        init = package / "__init__.py"
        module = folder / f"{part}.py"
        if init.is_file():
            files.append(init)
        elif module.is_file():
            if index == len(parts) - 1:
                files.append(module)
            break
        elif not package.is_dir():
            break  # nothing of that name yet
        folder = package
    return files, folders


def may_define(module_file: Path, name: str) -> bool:
    """Whether the module `module_file` could have a global `name` once imported; False only when
    its source surely gives it none: the file parses, binds `name` nowhere (no `def`, `class`,
    assignment, import, loop, `with`, `except` or `match` target of that name, at any depth: a
    function may declare it `global`), and has nothing that adds globals by a computed name (a
    star import, a module `__getattr__`, `globals()`, `setattr`, `exec`, `sys.modules`, ...).
    A package's `__init__.py` also gets its submodules as globals, when anything imports them.
    """
    source = module_file.resolve()
    if source.suffix != ".py":
        return True  # compiled, or no source to read
    names = _bound_names(source, stat_identity(str(source)))
    if names is None or name in names:
        return True
    if source.name == "__init__.py":
        return (source.parent / f"{name}.py").exists() or (source.parent / name).is_dir()
    return False


DYNAMIC_NAMES = frozenset({"globals", "locals", "vars", "setattr", "exec", "eval", "__dict__", "modules"})
"""Names whose use may add a module global that no statement binds by name (`globals()[name] = f`,
`setattr(sys.modules[__name__], ...)`, `sys.modules[__name__] = other`)."""


@cache
def _bound_names(source: Path, identity: StatTuple | None) -> frozenset[str] | None:
    """Every name the source binds anywhere (cached per file version: `identity` is its stat); None
    when that cannot be told: the file cannot be read or parsed, or it may bind names dynamically."""
    if identity is None:
        return None
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif node.id in DYNAMIC_NAMES:
                return None
        elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_NAMES:
            return None
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return None if "__getattr__" in names else frozenset(names)
