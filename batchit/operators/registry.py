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

from batchit.operators.base import Operator

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


def load_target(target: str) -> type[Operator]:
    """Import the operator class named by a "module:Class" target."""
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        raise TypeError(f"{target} is not a batchit Operator subclass")
    return cls


@dataclass
class OperatorRegistry:
    """Operator names mapped to import targets, with classes imported lazily and remembered."""

    targets: dict[str, str]
    """Every name known so far (all of them once the entry points are read)."""
    entry_points_pending: bool = False
    """True until the `batchit.operators` entry points are added to `targets`."""
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
        """The operator class registered as `name` (KeyError when there is none)."""
        if name not in self._loaded:
            if name not in self.targets:
                self._read_entry_points()
            self._loaded[name] = load_target(self.targets[name])
        return self._loaded[name]

    def library_versions(self, name: str) -> dict[str, str]:
        """`name`'s library versions, looked up once per registry (keys and plan fingerprints both
        ask, and each lookup reads package metadata)."""
        if name not in self._libraries:
            self._libraries[name] = self.get(name)().library_versions()
        return self._libraries[name]

    def _read_entry_points(self) -> None:
        """Add the installed operators to `targets`, once; a built-in name keeps its built-in class."""
        if not self.entry_points_pending:
            return
        import importlib.metadata  # only here: see the module docstring

        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            self.targets.setdefault(entry.name, entry.value)
        self.entry_points_pending = False

    def __getstate__(self) -> tuple[dict[str, str], bool]:
        return self.targets, self.entry_points_pending

    def __setstate__(self, state: tuple[dict[str, str], bool]) -> None:
        self.targets, self.entry_points_pending = state
        self._loaded, self._libraries = {}, {}
