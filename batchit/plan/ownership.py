"""One project root, one config: the state in `.batchit` belongs to the config file that built it.

Two config files in one root (`batchit build` and `batchit -f other.yaml build`) would share one
state store, so each build would prune the other's outputs as outputs no current job produces, or,
with another `out`, forget them and then refuse them as files batchit did not write. So every
command that reads the state with a config refuses a config other than the one the state belongs
to while that one still exists. A config renamed or moved (the old file is gone) takes the state
over at its next build.
"""

from __future__ import annotations

from batchit.errors import ForeignStateError
from batchit.model import STATE_DIR, Config
from batchit.state.store import StateStore


def refuse_foreign_state(config: Config, store: StateStore | None) -> None:
    """Raise ForeignStateError when `store` belongs to another config file than `config`'s, and
    that file still exists (the same file under another name is the same config)."""
    recorded = store.recorded_config() if store is not None else None
    if recorded is None or recorded == config.file:
        return
    owner = config.root / recorded
    try:
        if owner.samefile(config.root / config.file):
            return
    except OSError:  # the owner is gone (renamed, moved): this config takes the state over
        return
    raise ForeignStateError(
        f"{config.file}: {STATE_DIR}/ holds the state of {recorded}, which still exists; "
        f"using {config.file} in this folder would prune or disown {recorded}'s outputs",
        hint=(
            f"use one config per project root: move {config.file}'s rules into {recorded} "
            f"(`batchit build RULE` builds some of them), or give {config.file} a folder of its own "
            f"(`batchit -C DIR`); if {config.file} replaces {recorded}, delete {recorded}"
        ),
    )
