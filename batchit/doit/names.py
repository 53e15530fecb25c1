"""The names of a batchit project's doit sub-tasks."""

from __future__ import annotations

from batchit.plan.jobs import Job


def task_names(jobs: list[Job]) -> dict[int, str]:
    """Each job's sub-task name, by `id(job)`: its output path, or, for jobs whose outputs share a
    path that still holds an unknown `{key8}` (two inputs with one stem, say), that path with a
    number in plan order, since doit refuses two tasks of one name."""
    count: dict[str, int] = {}
    for job in jobs:
        count[job.output] = count.get(job.output, 0) + 1
    seen: dict[str, int] = {}
    names: dict[int, str] = {}
    for job in jobs:
        if count[job.output] == 1:
            names[id(job)] = job.output
        else:
            seen[job.output] = seen.get(job.output, 0) + 1
            names[id(job)] = f"{job.output} #{seen[job.output]}"
    return names
