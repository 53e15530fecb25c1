"""Where operator names resolve to classes: the built-ins and the `batchit.operators` entry points.

A registry holds only names and import targets ("module:Class") and imports a class the first time
it is asked for, so `batchit --help` imports no operator, and a registry pickles into worker
processes as a handful of strings. The entry points are read only when a name is not built in (or
every name is listed): built-ins take precedence over them anyway, and reading them costs ~35 ms
(importing `importlib.metadata` and scanning every installed distribution).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from batchit.errors import UsageError
from batchit.operators.base import BOTH_KINDS, Operator

ENTRY_POINT_GROUP = "batchit.operators"

BUILTIN_OPERATORS: dict[str, str] = {
    "file.copy": "batchit.operators.files:FileCopy",
    "text.load": "batchit.operators.text:TextLoad",
    "text.replace": "batchit.operators.text:TextReplace",
    "markdown.render": "batchit.operators.text:MarkdownRender",
    "template.render": "batchit.operators.template:TemplateRender",
    "python": "batchit.operators.code:PythonCall",
    "shell": "batchit.operators.code:ShellCommand",
    "image.load": "batchit.operators.image:ImageLoad",
    "image.resize": "batchit.operators.image_resize:ImageResize",
    "image.crop": "batchit.operators.image_resize:ImageCrop",
    "image.watermark": "batchit.operators.image_paint:ImageWatermark",
    "image.strip_metadata": "batchit.operators.image_save:ImageStripMetadata",
    "image.save": "batchit.operators.image_save:ImageSave",
    "cdn.manifest": "batchit.operators.cdn:CdnManifest",
    "http.enrich": "batchit.operators.http:HttpEnrich",
    "data.load": "batchit.operators.data:DataLoad",
    "data.dump": "batchit.operators.data:DataDump",
    "data.validate": "batchit.operators.data:DataValidate",
    "data.mask": "batchit.operators.data_mask:DataMask",
}
"""Built-in operator names and the classes that implement them."""


class BrokenOperator(Exception):
    """An installed operator that cannot be used as it is: its module fails to import (whatever
    its top level raises, `sys.exit` included), or its class lacks what every operator declares."""


def raised(hook: str, exc: Exception) -> str:
    """How a message says that an operator's method `hook` raised `exc` (a fault of its code)."""
    return f"its {hook}() raised {type(exc).__name__}: {exc}"


def load_target(target: str) -> type[Operator]:
    """Import the operator class named by a "module:Class" target."""
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        raise TypeError(f"{target} is not a batchit Operator subclass")
    return cls


def checked_target(target: str) -> type[Operator]:
    """The operator class named by `target`, imported and checked (`class_problem`); anything that
    goes wrong is a BrokenOperator saying what, never the import's own traceback."""
    module_name, colon, attr = target.partition(":")
    if not (colon and attr):
        raise BrokenOperator(f"{target!r} names no class: an operator's target is 'module:Class'")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (Exception, SystemExit) as exc:  # a plugin's top level may raise anything, exit too
        told = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise BrokenOperator(f"importing {target} failed: {told}") from None
    if not (isinstance(found, type) and issubclass(found, Operator)):
        raise BrokenOperator(f"{target} is not a subclass of batchit.operators.base.Operator")
    problem = class_problem(found)
    if problem is not None:
        raise BrokenOperator(f"{target} {problem}")
    return found


def class_problem(cls: type[Operator]) -> str | None:
    """What the operator class lacks of what batchit reads from every operator, or None.

    Checked as the config loads, so a plugin's mistake is refused there, naming the plugin, rather
    than met as a traceback in the middle of a plan or as the same failure in every job."""
    for attr in ("name", "version"):
        value = getattr(cls, attr, None)
        if not (isinstance(value, str) and value):
            return f'sets no {attr} (a class attribute {attr} = "...", a non-empty string)'
    if cls.resources not in ("cpu", "io"):
        return f'sets resources = {cls.resources!r}: it must be "cpu" or "io"'
    if not isinstance(cls.params_schema, dict):
        return "sets a params_schema that is not a dict (a JSON Schema of the step's parameters)"
    if not (isinstance(cls.takes, frozenset) and cls.takes <= BOTH_KINDS):
        return f'sets takes = {cls.takes!r}: it must be a frozenset of "file" and "files"'
    if not (isinstance(cls.libraries, tuple) and all(isinstance(lib, str) for lib in cls.libraries)):
        return "sets libraries to something other than a tuple of distribution names"
    if not (cls.ends_with is None or isinstance(cls.ends_with, str)):
        return "sets ends_with to something other than None or an operator's name"
    if cls.run is Operator.run:
        return "defines no run(self, value, ctx, **params) method"
    try:
        cls()
    except Exception as exc:
        return f"cannot be made without arguments ({type(exc).__name__}: {exc}): operators take none"
    return None


@dataclass
class OperatorRegistry:
    """Operator names mapped to import targets, with classes imported lazily and remembered."""

    targets: dict[str, str]
    """Every name known so far (all of them once the entry points are read)."""
    entry_points_pending: bool = False
    """True until the `batchit.operators` entry points are added to `targets`."""
    origins: dict[str, str] = field(default_factory=dict, compare=False)
    """For a name an entry point added: which entry point of which distribution, for messages."""
    _loaded: dict[str, type[Operator]] = field(default_factory=dict, repr=False, compare=False)
    _libraries: dict[str, dict[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls) -> OperatorRegistry:
        """The built-ins plus every operator installed through the `batchit.operators` entry points."""
        return cls(dict(BUILTIN_OPERATORS), entry_points_pending=True)

    def names(self) -> list[str]:
        """Every known operator name, sorted."""
        self._read_entry_points()
        return sorted(self.targets)

    def __contains__(self, name: object) -> bool:
        if name not in self.targets:
            self._read_entry_points()
        return name in self.targets

    def get(self, name: str) -> type[Operator]:
        """The operator class registered as `name` (KeyError when there is none, BrokenOperator
        when it cannot be imported or is not a usable operator class)."""
        if name not in self._loaded:
            if name not in self.targets:
                self._read_entry_points()
            self._loaded[name] = checked_target(self.targets[name])
        return self._loaded[name]

    def library_versions(self, name: str) -> dict[str, str]:
        """`name`'s library versions, looked up once per registry (keys and plan fingerprints both
        ask, and each lookup reads package metadata)."""
        if name not in self._libraries:
            try:
                self._libraries[name] = self.get(name)().library_versions()
            except Exception as exc:  # an installed operator's own code: its fault, told as such
                raise self.fault_in(name, "library_versions", exc) from None
        return self._libraries[name]

    def fault_in(self, name: str, hook: str, exc: Exception) -> UsageError:
        """The error for operator `name`'s method `hook` raising `exc` as a build plans: a fault of
        the package that provides the operator, not of the config (exit 2, before any job runs)."""
        return UsageError(f"operator '{name}': {raised(hook, exc)}", hint=self.repair_hint(name))

    def repair_hint(self, name: str) -> str:
        """The fix for operator `name` that cannot be used: its package's, named when a plugin's."""
        origin = self.origins.get(name)
        provider = f"the plugin that provides it ({origin})" if origin else "the package that provides it"
        return f"fix or reinstall {provider}, or remove the steps that use it"

    def _read_entry_points(self) -> None:
        """Add the installed operators to `targets`, once; a built-in name keeps its built-in class."""
        if not self.entry_points_pending:
            return
        import importlib.metadata  # only here: see the module docstring

        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name not in self.targets:
                self.targets[entry.name] = entry.value
                dist = f"distribution {entry.dist.name} {entry.dist.version}, " if entry.dist else ""
                self.origins[entry.name] = f"{dist}entry point {entry.name} = {entry.value}"
        self.entry_points_pending = False

    def __getstate__(self) -> tuple[dict[str, str], bool]:
        return self.targets, self.entry_points_pending

    def __setstate__(self, state: tuple[dict[str, str], bool]) -> None:
        self.targets, self.entry_points_pending = state
        self.origins, self._loaded, self._libraries = {}, {}, {}
