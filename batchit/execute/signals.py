"""SIGINT/SIGTERM during a build (SPEC section 7): the first stops scheduling, the second exits at once.

The build loop polls `requested`; the handler only sets it and says what happens next, so no job is
cut off between its rename and its commit. A second signal exits immediately: everything committed
so far is already durable in the state store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType

from batchit.operators.commands import resume_commands

GRACE_SECONDS = 10.0
"""How long running jobs get to finish after the first signal."""

INTERRUPTED_EXIT = 130


class StopSignals:
    """Turns SIGINT and SIGTERM into a flag for the duration of a `with` block; `wake` interrupts
    the build loop's wait so the flag is seen at once, before a free worker starts queued work.

    Blocks may nest: the build keeps the flag from its job loop until the run is recorded, so a
    signal after the last job (while results are committed, outputs pruned, the record written)
    stops nothing half-done either; only the outermost block puts the previous handlers back."""

    def __init__(
        self,
        announce: Callable[[str], None],
        wake: Callable[[], None],
        forward: Callable[[int], None],
        abandon: Callable[[], None],
        second_exit: int = INTERRUPTED_EXIT,
    ) -> None:
        self.announce = announce
        self.wake = wake
        self.forward = forward
        """Passes the first signal on to the commands the build runs (in their own process groups)."""
        self.abandon = abandon
        """Kills what still runs, before a second signal exits at once (taking no lock: the signal
        may have interrupted its holder)."""
        self.second_exit = second_exit
        """The code a second signal exits with: 130, or 0 for `watch`, which a Ctrl-C stops."""
        self.requested = False
        self._previous: dict[int, object] = {}
        self._depth = 0

    def __enter__(self) -> StopSignals:
        self._depth += 1
        if self._depth > 1:
            return self
        resume_commands()  # an earlier build in this process (a watch) may have stopped them
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.abandon()
            os._exit(self.second_exit)
        self.requested = True
        self.forward(signum)  # commands run in groups of their own: they stop as they would have
        self.wake()
        name = signal.Signals(signum).name
        self.announce(
            f"interrupted ({name}): no new jobs; running jobs get {GRACE_SECONDS:.0f} s to finish; "
            "interrupt again to exit at once"
        )


@contextlib.contextmanager
def spawned_ignoring_ctrl_c() -> Iterator[None]:
    """Processes spawned in the block start with SIGINT ignored. A Ctrl-C that reached the
    forkserver while its interpreter was still starting killed it with a "Fatal Python error" on
    the terminal, and one that reached the processes of a Dask local cluster as they started
    printed their tracebacks; once running, they leave Ctrl-C to the coordinator.

    SIGINT is blocked here meanwhile as well, in this thread and in the threads started in the
    block (they inherit the mask): Linux never discards a blocked signal as ignored, so a Ctrl-C
    to this process while the block lasts (milliseconds for a forkserver, a second or two for a
    local cluster) stays pending and reaches the handler put back when the block ends. Only the
    main thread can change a handler. multiprocessing's resource tracker, which the spawning
    starts when it is not running yet, unblocks SIGINT once it has started (dropping a Ctrl-C
    pressed in the block): it is started first.

    Both the ignored disposition and the blocked mask survive a spawn's exec: a process spawned
    here that is to take signals itself unblocks SIGINT (`_leave_interrupts_to_the_coordinator`),
    or the commands it runs would inherit the mask and never see one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker  # only builds that spawn processes need it

    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
