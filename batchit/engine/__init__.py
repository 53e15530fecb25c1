"""The engine: plan, execute and record a build (`run_build`), or only plan it (`plan_build`)."""

from batchit.engine.build import plan_build, run_build
from batchit.engine.options import BuildOptions, BuildOutcome, Event, EventSink
from batchit.engine.single import run_planned_job

__all__ = ["BuildOptions", "BuildOutcome", "Event", "EventSink", "plan_build", "run_build", "run_planned_job"]
