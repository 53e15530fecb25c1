"""batchit inside doit (SPEC section 9): one doit sub-task per batchit job, one shared state.

In a `dodo.py`, beside the tasks it already has:

    import batchit.doit
    task_site = batchit.doit.tasks("site")

`doit list --all` then shows `site:<output>` for every job (named by its output path relative to
`out`) and `site:_record`. doit creates every task before it runs any, so a sub-task carries only
its job's identity: its `uptodate` check and its action plan that job again when doit reaches it,
after the sub-tasks it depends on (`task_dep`) ran, so a key that depends on upstream outputs is
computed from their real bytes. There is no `file_dep`: batchit's state store alone says what is up
to date, so `doit` after `batchit build` runs nothing, and the other way round.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidTask

from batchit.doit.checker import Blake3Checker
from batchit.doit.session import Session, TaskDict
from batchit.errors import BatchitError, ConfigError, UsageError
from batchit.operators.commands import forward_stop_signals

__all__ = ["Blake3Checker", "tasks"]

GROUP = "batchit_doit_group"
"""The attribute a task creator of `tasks()` keeps its (basename, project folder as given) in, so
that another in the same dodo.py can tell when both would name their tasks alike."""


def tasks(
    project_dir: str | os.PathLike[str], *, basename: str | None = None, config_file: str = "batchit.yaml"
) -> Callable[[], Iterator[TaskDict]]:
    """A doit task creator for the batchit project in `project_dir`: `task_site = tasks("site")`.

    The sub-tasks are grouped under `basename` (default: the project folder's name, so `site` for
    `tasks("site")`); name the dodo.py attribute after it. Another task creator of the dodo.py whose
    tasks would be named alike (a project in `y/site` beside `x/site`) stops doit with the
    `basename=` to give one (`_refuse_a_twin`). The config is read when doit loads the
    tasks (`doit list`, `doit run`), so a config error (or one found while planning) stops doit with
    batchit's message as doit shows a task it cannot load: `ERROR: batchit: ...`, exit 3, no
    traceback. `project_dir` is relative to the directory doit runs in (the dodo.py's folder unless
    `doit -d DIR` says otherwise).
    """
    root = Path(project_dir).resolve()
    group = basename or root.name
    dodo = sys._getframe(1).f_globals  # the dodo.py's names: doit's other task creators among them

    def task_creator() -> Iterator[TaskDict]:
        forward_stop_signals()  # a Ctrl-C to doit reaches the commands of `shell` steps, in any -P mode
        try:
            _refuse_a_twin(dodo, task_creator)
            if not (root / config_file).exists():  # batchit's own hint names -C and -f: not doit's
                raise ConfigError(
                    f"not found in {root}",
                    file=config_file,
                    hint=f"give batchit.doit.tasks() the project's folder, relative to {Path.cwd()} "
                    "(where doit runs), and the config's name as config_file= if it is another",
                )
            session = Session.open(root, config_file, group, os.fspath(project_dir))
            yield from session.tasks()
        except BatchitError as exc:  # doit prints its InvalidTask as one `ERROR:` line, exit 3
            raise InvalidTask(f"batchit: {exc}") from None

    task_creator.__doc__ = f"batchit jobs of {os.fspath(project_dir)}/{config_file}, one sub-task per output"
    task_creator.__dict__[GROUP] = (group, os.fspath(project_dir))
    return task_creator


def _refuse_a_twin(dodo: dict[str, Any], creator: Callable[[], Iterator[TaskDict]]) -> None:
    """Refuse a second task creator of the dodo.py that names its tasks as `creator` does: two
    batchit projects in folders of one name (`x/site`, `y/site`), or a task of the dodo's own named
    after the project. doit would refuse them too, but only as it runs them ("Task names must be
    unique"), and `doit list` would show both; this says which and how to tell them apart."""
    group, place = creator.__dict__[GROUP]
    for name, value in list(dodo.items()):
        if value is creator or not name.startswith("task_"):
            continue
        twin = getattr(value, "__dict__", {}).get(GROUP)
        if twin is not None and twin[0] == group:
            other = twin[1]
            suggested = "_".join(Path(other).parts[-2:]).replace("-", "_")
            raise UsageError(
                f"{place} and {other} both name their doit tasks `{group}` (doit needs unique names)",
                hint=f"give one its own basename in dodo.py: "
                f'{name} = batchit.doit.tasks("{other}", basename="{suggested}")',
            )
        if twin is None and name == f"task_{group}" and callable(value):
            raise UsageError(
                f'dodo.py\'s {name} and batchit.doit.tasks("{place}") both make doit tasks named `{group}`',
                hint=f'give the batchit project another name: batchit.doit.tasks("{place}", basename="...")',
            )
