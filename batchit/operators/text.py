"""Text operators: decode (`text.load`), regex replace (`text.replace`), Markdown to HTML."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from batchit.errors import PermanentError, RecipeError
from batchit.operators.base import (
    LARGEST_COUNT,
    InputFile,
    InputKind,
    JobContext,
    Operator,
    ParamProblem,
    as_text,
)
from batchit.operators.imports import project_folders
from batchit.operators.project_modules import current_module, module_key_files, put_project_on_path

DEFAULT_MARKDOWN_EXTENSIONS = ("extra", "toc", "sane_lists")
"""Python-Markdown's tables, fenced code, footnotes, ...; heading ids; list parsing without surprises."""

MARKDOWN_EXTENSION_HINT = "use a built-in extension name or install the package that provides it"


class TextLoad(Operator):
    """`text.load`: the value decoded as text, so later steps can work on a `str`.

    Decoding is strict: a file that is not valid in the declared encoding is a permanent error naming
    it, never silently repaired with replacement characters.
    """

    name = "text.load"
    takes: ClassVar[frozenset[InputKind]] = frozenset({"file"})
    version = "1"
    cheap = True
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Decode the input as text.",
        "properties": {
            "encoding": {
                "type": "string",
                "minLength": 1,
                "default": "utf-8",
                "description": "Python codec name: utf-8, utf-8-sig (drops a BOM), latin-1, ...",
            },
        },
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """Decode an input file or bytes with `encoding`; text passes through unchanged."""
        if isinstance(value, str):
            return value
        encoding: str = params.get("encoding", "utf-8")
        if isinstance(value, InputFile):
            data, source = value.read_bytes(), value.path
        elif isinstance(value, bytes):
            data, source = value, f"the value read from {ctx.input}"
        else:
            raise RecipeError(f"step {self.name} needs a file, bytes or text, got {type(value).__name__}")
        try:
            return data.decode(encoding)
        except LookupError as exc:
            raise RecipeError(
                f"step {self.name}: unknown encoding {encoding!r}",
                hint="use a Python codec name such as utf-8",
            ) from exc
        except UnicodeDecodeError as exc:
            raise PermanentError(
                f"{source} is not valid {encoding}: {exc.reason} at byte {exc.start}",
                hint="fix the file, or set the step's `encoding` to the one it is written in",
            ) from exc


class TextReplace(Operator):
    """`text.replace`: replace the matches of a regular expression, as `re.sub` does.

    The pattern is checked when the config loads (`format: regex`) and again here, so a bad pattern
    reaching a worker fails the job with a clear message instead of an `re.error` traceback.
    """

    name = "text.replace"
    takes: ClassVar[frozenset[InputKind]] = frozenset({"file"})
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Replace the matches of a regular expression in the text.",
        "properties": {
            "pattern": {
                "type": "string",
                "format": "regex",
                "description": "Python regular expression (re syntax; inline flags such as (?m) work).",
            },
            "replacement": {
                "type": "string",
                "description": r"Replacement text; \1 and \g<name> insert the pattern's groups.",
            },
            "count": {
                "type": "integer",
                "minimum": 0,
                "maximum": LARGEST_COUNT,
                "default": 0,
                "description": "Replace at most this many matches, first to last; 0 replaces them all.",
            },
        },
        "required": ["pattern", "replacement"],
        "additionalProperties": False,
    }

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The text with the first `count` (or all) matches of `pattern` replaced."""
        text = as_text(value, self.name)
        try:
            compiled = re.compile(params["pattern"])
            return compiled.sub(params["replacement"], text, count=params.get("count", 0))
        except (re.error, IndexError) as exc:  # IndexError: a group name the pattern lacks
            raise RecipeError(
                f"step {self.name}: bad pattern or replacement: {exc}",
                hint="check the regular expression and the group references in `replacement`",
            ) from exc


class MarkdownRender(Operator):
    """`markdown.render`: Markdown to an HTML fragment with Python-Markdown.

    A fresh `Markdown` instance per call keeps the output independent of what was converted before
    (heading ids, footnote numbers), so the same text always gives the same bytes.
    """

    name = "markdown.render"
    takes: ClassVar[frozenset[InputKind]] = frozenset({"file"})
    version = "1"
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "description": "Convert Markdown to an HTML fragment (no <html> or <body>).",
        "properties": {
            "extensions": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "default": list(DEFAULT_MARKDOWN_EXTENSIONS),
                "description": (
                    "Python-Markdown extensions, by name (extra, toc, sane_lists, codehilite, ...) or "
                    "import path (pymdownx.tasklist, mymodule:MyExtension). Default: extra (tables, "
                    "fenced code, footnotes, attribute lists, abbreviations, definition lists), toc "
                    "(ids on headings) and sane_lists. A module of the project is found from the "
                    "project root, like a python step's, and its source and the project modules it "
                    "imports are part of the job's key. A name Python-Markdown cannot find is a "
                    "config error."
                ),
            },
        },
        "additionalProperties": False,
    }
    libraries = ("markdown",)
    imports_user_code = True

    @classmethod
    def param_problem(cls, params: Mapping[str, Any], root: Path) -> ParamProblem | None:
        """The first extension Python-Markdown would not find: every job would fail on it."""
        for index, name in enumerate(params.get("extensions", ())):
            if not markdown_extension_found(name, root):
                message = f"names Markdown extension {name!r}, which is not installed"
                return ParamProblem(("extensions", index), message, MARKDOWN_EXTENSION_HINT)
        return None

    def key_files(self, params: Mapping[str, Any], root: Path) -> dict[str, Path]:
        """The source of each extension that is a module of the project, and the project modules it
        imports, labelled `markdown.render:<module>`: editing one changes the HTML it makes."""
        files: dict[str, Path] = {}
        for name in params.get("extensions", DEFAULT_MARKDOWN_EXTENSIONS):
            source = project_extension(name, root)
            if source is not None:
                files.update(module_key_files(f"{self.name}:{name.partition(':')[0]}", source, root))
        return files

    def key_folders(self, params: Mapping[str, Any], root: Path) -> list[str]:
        """The project folders Python looks in for each extension of the project and the project
        modules it imports (see `key_files`)."""
        folders: set[str] = set()
        for name in params.get("extensions", DEFAULT_MARKDOWN_EXTENSIONS):
            source = project_extension(name, root)
            if source is not None:
                folders.update(project_folders(name.partition(":")[0], source, root))
        return sorted(folders)

    def run(self, value: Any, ctx: JobContext, **params: Any) -> Any:
        """The HTML fragment for the Markdown text."""
        import markdown  # heavy: imported only by a job that renders Markdown

        text = as_text(value, self.name)
        extensions: list[str] = params.get("extensions", list(DEFAULT_MARKDOWN_EXTENSIONS))
        try:
            for name in extensions:  # the project's own, as their files are now (see `key_files`)
                if project_extension(name, ctx.root) is not None:
                    current_module(name.partition(":")[0])  # what its top level raises fails every job
            converter = markdown.Markdown(extensions=extensions)
        except Exception as exc:
            raise RecipeError(
                f"step {self.name}: cannot load Markdown extension from {extensions}: {exc}",
                hint=MARKDOWN_EXTENSION_HINT,
            ) from exc
        return converter.convert(text)


@functools.cache
def markdown_extension_found(name: str, root: Path) -> bool:
    """Whether Python-Markdown would find the extension `name` in a job of the project at `root`,
    looked up as it does, without importing Markdown or the extension: an entry point of the
    `markdown.extensions` group by that name (the built-ins are registered so), else the module of
    `path.to.module[:Class]`, installed or in the project. A missing `Class` in a module that
    exists is left for the job to report."""
    if _entry_point_named(name):
        return True
    put_project_on_path(root)
    return _findable(name.partition(":")[0])


def project_extension(name: str, root: Path) -> Path | None:
    """The source file of the extension `name` when it is a module of the project at `root`, found
    as Python-Markdown finds it (an installed extension of that name comes first); else None.
    Names with no file or folder of theirs in the root (every installed one) cost a stat or two."""
    module = name.partition(":")[0]
    top = module.partition(".")[0]
    if not ((root / f"{top}.py").is_file() or (root / top).is_dir()) or _entry_point_named(name):
        return None
    put_project_on_path(root)
    try:
        spec = importlib.util.find_spec(module)
        if spec is None:
            importlib.invalidate_caches()  # the module may have been written since the finders looked
            spec = importlib.util.find_spec(module)
    except (ImportError, SyntaxError, ValueError):
        return None  # a broken package: the job reports it
    if spec is None or not spec.has_location or spec.origin is None:
        return None
    source = Path(spec.origin)
    return source if source.resolve().is_relative_to(root.resolve()) else None


@functools.cache
def _entry_point_named(name: str) -> bool:
    """Whether an installed package registers a Markdown extension called `name`."""
    import importlib.metadata  # ~25 ms with the scan below: only when a check needs it

    return any(entry.name == name for entry in importlib.metadata.entry_points(group="markdown.extensions"))


def _findable(name: str) -> bool:
    """Whether `import name` would find a module, told without running one where it can be.

    Each part is looked up by the finders the import system asks (`sys.meta_path`), a submodule in
    the folders its package's spec names, so finding `pymdownx.tasklist` runs neither of them.
    Only when that finds nothing below an existing top-level package is the parent imported, as
    `import` would (its `__init__` may extend its `__path__`): a lookup that finds the module runs
    no code, and one that does not costs what importing the name would.
    """
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    locations: list[str] | None = None
    for depth in range(1, len(parts) + 1):
        found, locations = _look_up(".".join(parts[:depth]), locations)
        if not found:
            return depth > 1 and _found_by_importing_parents(name)
        if depth < len(parts) and locations is None:
            return False  # a module, not a package: it has no submodules
    return True


def _look_up(fullname: str, path: list[str] | None) -> tuple[bool, list[str] | None]:
    """Whether a finder knows `fullname` (in the folders `path`, for a submodule), and the folders
    its submodules are in when it is a package; a module already imported is known as it is."""
    module = sys.modules.get(fullname)
    if module is not None:
        return True, list(getattr(module, "__path__", None) or []) or None
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(fullname, path) if find_spec is not None else None
        if spec is not None:
            locations = spec.submodule_search_locations
            return True, list(locations) if locations is not None else None
    return False, None


def _found_by_importing_parents(name: str) -> bool:
    """`importlib.util.find_spec`, which imports the packages above `name` first; a package that
    fails to import counts as found: importing the name reports that failure better."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
    except Exception:  # the package's own code failed: not a name that is missing
        return True
