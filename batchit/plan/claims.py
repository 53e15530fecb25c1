"""Which job writes which output, and that every output stays inside `out` (SPEC sections 2 and 3).

Two jobs writing one output, an output that would be the folder of another, an output with the name
of batchit's manifest copy (or inside a folder of that name), and an output directory that leads
outside `out` through a symlink are config errors, raised while planning so nothing is written. Each
output directory is checked once per plan.
"""

from __future__ import annotations

import os
from stat import S_ISLNK

from batchit.fsutil import resolves_inside
from batchit.model import RESERVED_OUTPUTS, Config, Rule
from batchit.placeholders import names_in, path_values
from batchit.plan.jobs import Job
from batchit.plan.named import rule_error


class OutputClaims:
    """The outputs of one plan by the job that writes each, and the output directories found safe."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.claimed: dict[str, str] = {}
        """Output path (relative to `out`) -> the id of the job that writes it."""
        self._safe_dirs: set[str] = set()

    def claim(self, rule: Rule, job: Job) -> None:
        """Take the job's output path, checking it the first time its directory comes up; a path
        named by a `{key8}` not known yet (its upstream runs first) is claimed once it is known."""
        output = job.output
        if not job.output_known(rule):
            return
        if (
            self.claimed.setdefault(output, job.job_id) != job.job_id
            or output.partition("/")[0] in RESERVED_OUTPUTS
            or not output
            or output.rpartition("/")[0] not in self._safe_dirs
            or output in self._safe_dirs
            or ".." in output
        ):
            self._check(rule, job)

    def claim_all(self, jobs: list[Job]) -> None:
        """`claim` every job (a replayed or patched plan), checking each output directory once."""
        claimed, rules = self.claimed, self.config.rules
        jobs = [job for job in jobs if job.output_known(rules[job.rule])]
        claimed.update((job.output, job.job_id) for job in jobs)
        reserved = any(path.partition("/")[0] in RESERVED_OUTPUTS for path in claimed)
        if len(claimed) != len(jobs) or "" in claimed or reserved:
            claimed.clear()  # two jobs write one output, or one writes a reserved name: say which
            for job in jobs:
                self.claim(rules[job.rule], job)
            return
        first_in: dict[str, Job] = {}
        for job in jobs:
            first_in.setdefault(job.output.rpartition("/")[0], job)
        for parent, job in first_in.items():
            if parent not in self._safe_dirs:
                self._check(rules[job.rule], job)
        for job in jobs:
            if job.output in self._safe_dirs or ".." in job.output:
                self._check(rules[job.rule], job)

    def _check(self, rule: Rule, job: Job) -> None:
        other = self.claimed.setdefault(job.output, job.job_id)
        if other != job.job_id:
            raise rule_error(
                self.config,
                rule,
                f"two jobs write one output {self.config.out}/{job.output}: {other} and {job.job_id}",
                _apart_hint(rule, other, job),
            )
        if job.output.startswith("/") or ".." in job.output.split("/"):
            raise rule_error(
                self.config,
                rule,
                f"output {job.output!r} of {job.job_id} leaves `out`: a placeholder's value is `..`",
                "make sure no matrix value, partition or input name is `..` (or use another placeholder)",
            )
        top = job.output.partition("/")[0]
        if top in RESERVED_OUTPUTS or not job.output:  # as a file or a folder: the copy's place
            within = "is" if top == job.output else f"is inside {top}, a name"
            raise rule_error(
                self.config,
                rule,
                f"output {job.output!r} {within} reserved for batchit's manifest copy",
                "choose another output name",
            )
        parent = job.output.rpartition("/")[0]
        if parent not in self._safe_dirs and not self._stays_inside(parent):
            out_dir = self.config.out_dir
            existing = out_dir / parent
            while not existing.exists() and existing != out_dir:
                existing = existing.parent
            if existing.exists() and not resolves_inside(out_dir.resolve(), existing):
                raise rule_error(
                    self.config,
                    rule,
                    f"output {self.config.out}/{job.output} leads outside `out` through a symlink",
                    f"remove the symlink {existing.relative_to(self.config.root)}",
                )
            self._safe_dirs.add(parent)
        self._check_nesting(rule, job)

    def _check_nesting(self, rule: Rule, job: Job) -> None:
        """One path cannot be an output and the folder of another output."""
        output = job.output
        inner = None
        if output in self._safe_dirs:
            inner = next((path for path in self.claimed if path.startswith(f"{output}/")), None)
        parts = output.split("/")
        outer = next(
            (a for a in ("/".join(parts[:n]) for n in range(1, len(parts))) if a in self.claimed), None
        )
        if inner is None and outer is None:
            return
        folder, file = (output, inner) if inner is not None else (outer, output)
        raise rule_error(
            self.config,
            rule,
            f"output {self.config.out}/{folder} ({self.claimed[str(folder)]}) would be the folder of output "
            f"{self.config.out}/{file} ({self.claimed[str(file)]})",
            "change one of the `output` templates so that no output path is another's folder",
        )

    def _stays_inside(self, parent: str) -> bool:
        """True when `out/parent` stays inside `out` with every symlink followed, checked with one
        `lstat` per directory: a real (or not yet made) directory in a safe one is safe; only a
        symlink needs resolving."""
        if not parent or parent in self._safe_dirs:
            return True
        if not self._stays_inside(parent.rpartition("/")[0]):
            return False
        path = self.config.out_dir / parent
        try:
            is_link = S_ISLNK(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_link = False
        if is_link and not resolves_inside(self.config.out_dir.resolve(), path):
            return False
        self._safe_dirs.add(parent)
        return True


def _apart_hint(rule: Rule, other_id: str, job: Job) -> str:
    """How to give two jobs that write one output paths of their own: the placeholders whose values
    differ between them and that `output` leaves out, when both are one-input jobs of `rule`."""
    prefix = f"{rule.name}:"
    if not other_id.startswith(prefix):
        return "give one of the two rules another `output` (a folder of its own)"
    generic = "put a placeholder that tells them apart ({path}, {ext}, a matrix key) into `output`"
    if rule.aggregate is not None or len(job.inputs) != 1:
        return generic
    used = set(names_in(rule.output))
    mine, _, my_combo = job.job_id[len(prefix) :].partition(":{")
    theirs, _, their_combo = other_id[len(prefix) :].partition(":{")
    apart = [
        n
        for n in ("path", "ext", "name", "dir")
        if n not in used and path_values(mine)[n] != path_values(theirs)[n]
    ]
    if my_combo != their_combo:
        apart += [key for key, _ in rule.matrix if key not in used]
    if not apart:
        return generic
    shown = ", ".join(f"{{{name}}}" for name in apart)
    return f"put {shown} into `output` (it differs between them), or narrow the rule's `inputs`"
