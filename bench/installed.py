"""Benchmarks measure batchit as a user runs it: byte-compiled, the way `pip install` leaves a package.

An editable install under `PYTHONDONTWRITEBYTECODE=1` (this machine sets it) would otherwise compile
batchit's modules from source in every timed process, about 60 ms that no installed copy pays and
that doit, installed from a wheel, never pays either.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import batchit


def compile_batchit() -> None:
    """Write the bytecode of every batchit module (a no-op when it is up to date)."""
    compileall.compile_dir(Path(batchit.__file__).parent, quiet=1)
