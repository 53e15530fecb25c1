"""The files a rule names besides its inputs (step parameters, `validate.checksums`, `expect.schema`,
`deps`): checked to be usable project files and hashed for the action key, once per plan.

Each mistake here is a config error found before anything runs, exit 2: as a job failure it would
fail (or quarantine) every input of the rule for a mistake in the config.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from batchit.errors import ConfigError, PermanentError
from batchit.fsutil import not_a_file, resolves_inside
from batchit.globs import compile_glob
from batchit.model import Config, Rule, Step
from batchit.plan.files import MISSING, FileTree, Hasher

_UNUSABLE_PATHS = {
    errno.ENOTDIR: "has a file where its path needs a folder",
    errno.ENAMETOOLONG: "is a path too long for the file system",
    errno.ELOOP: "leads into a loop of symlinks",
}
"""Why the OS refuses a path a config names, when the path itself is to blame."""


class NamedFiles:
    """Checks and hashes the files rules name, remembering each rule's `deps`."""

    def __init__(self, config: Config, tree: FileTree, hasher: Hasher) -> None:
        self.config = config
        self.tree = tree
        self.hasher = hasher
        self._deps: dict[str, dict[str, str]] = {}

    def path_of(self, path: Path) -> str:
        """A file a step's parameter names: project-relative, as named when it is named inside the
        project (so that `hash` sees a symlink in it), or absolute when outside the project."""
        for candidate in (path, path.resolve()):
            with contextlib.suppress(ValueError):
                return candidate.relative_to(self.config.root).as_posix()
        return str(path)

    def hash(self, rule: Rule, path: str, named_by: str, step: Step | None = None) -> str:
        """The hash of a file the rule names (a step parameter, `validate.checksums`, `expect.schema`).

        A missing one is a config error, exit 2 before anything runs: as a job failure it would
        fail (or quarantine) every input of the rule for a mistake in the config. So is a path to
        something else than a regular file (a folder), or one the OS refuses (a file as a folder),
        and a symlink leading out of the project (a bundled file, named by its absolute path, is no
        project file).
        """
        if not path.startswith("/"):
            self._check_inside(rule, path, named_by, step)
        try:
            digest = self.hasher.hash_path(path)
        except (OSError, PermanentError) as exc:
            kind = not_a_file(self.config.root / path) if isinstance(exc, PermanentError) else None
            wrong = f"is {kind}, not a file" if kind else _UNUSABLE_PATHS.get(getattr(exc, "errno", 0) or 0)
            if wrong is None:
                raise
            message = f"{named_by} names {path}, which {wrong}"
            raise rule_error(self.config, rule, message, "name a file, or correct the path", step) from None
        if digest == MISSING:
            raise rule_error(
                self.config,
                rule,
                f"{named_by} names {path}, which does not exist",
                "create the file or correct the path",
                step,
            )
        return digest

    def _check_inside(self, rule: Rule, path: str, named_by: str, step: Step | None) -> None:
        """Refuse a project file the rule names that a symlink leads out of the project."""
        if not resolves_inside(self.config.root, self.config.root / path):
            message = f"{named_by} names {path}, a symlink leading outside the project"
            raise rule_error(self.config, rule, message, "copy the file into the project", step)

    def deps(self, rule: Rule) -> dict[str, str]:
        """The hashes of the files a rule's `deps` patterns match (each must match one), by path."""
        if rule.name not in self._deps:
            deps: dict[str, str] = {}
            for pattern in rule.deps:
                try:
                    matches = self.tree.match([compile_glob(pattern)], [])
                except ConfigError as exc:  # a file no job may read: the rule's line names it
                    raise rule_error(self.config, rule, f"deps: {exc.message}", exc.hint or "") from None
                if not matches:
                    raise rule_error(
                        self.config,
                        rule,
                        f"deps pattern {pattern!r} matches no file",
                        "correct the path or remove it from deps",
                    )
                stats = self.tree.stats
                deps.update(self.hasher.hash_many([(p, stats[p]) for p, _ in matches]))
            self._deps[rule.name] = dict(sorted(deps.items()))
        return self._deps[rule.name]


def rule_error(config: Config, rule: Rule, message: str, hint: str, step: Step | None = None) -> ConfigError:
    """A plan-time config error about `rule`, pointing at its line in the config file, or at
    `step`'s line (a project preset's step is in the preset's file; a bundled preset's is at the
    rule's `preset:` line, and a file named through `with:` is at that line: `Step.line`)."""
    if step is not None and step.line is not None:
        return ConfigError(message, file=step.file or config.file, line=step.line, rule=rule.name, hint=hint)
    return ConfigError(message, file=config.file, line=rule.line, rule=rule.name, hint=hint)
