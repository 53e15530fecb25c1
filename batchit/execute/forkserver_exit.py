"""The last module the process pool's forkserver imports, after the operators it preloads.

A module that starts a thread of its own as it is imported (a plugin operator's), not a daemon,
would keep the forkserver alive once batchit has gone: the forkserver ends when batchit's end of
its pipe closes, and Python then waits for every such thread before the process exits. So when the
preloaded imports left one running, a daemon thread ends the forkserver once batchit's process,
which started it, is gone. Imported anywhere else, this module does nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time

PARENT_CHECK_EVERY = 0.5
"""Seconds between the checks whether the process that started the forkserver is still there."""


def _in_a_forkserver() -> bool:
    """True in the forkserver process, whose `__main__` runs `multiprocessing.forkserver.main`."""
    from multiprocessing import forkserver

    return getattr(sys.modules.get("__main__"), "main", None) is forkserver.main


def _threads_left() -> list[threading.Thread]:
    """The threads, not daemons, running besides the main thread."""
    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]


def _end_with(parent: int) -> None:
    """End this process, without waiting for its threads, once `parent` is no longer its parent."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_EVERY)
    os._exit(0)


if _in_a_forkserver() and _threads_left():
    threading.Thread(
        target=_end_with, args=(os.getppid(),), name="batchit-forkserver-exit", daemon=True
    ).start()
