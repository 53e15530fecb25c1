"""Files batchit ships besides code: the bundled presets (`rules/`) and templates (`templates/`).

In a source checkout (and an editable install) they sit beside the package; a wheel installs them
as `batchit/presets` and `batchit/templates` (see `package-dir` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = {"rules": "presets", "templates": "templates"}
"""Top-level directory of the repository -> its name inside an installed package."""


def bundled_dir(name: str) -> Path:
    """The directory holding the bundled `rules` or `templates`."""
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    import importlib.resources  # only an installed package needs it (~1 ms to import)

    return Path(str(importlib.resources.files("batchit") / PACKAGED[name]))
