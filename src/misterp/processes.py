"""Child processes that die with their parent: no fit may outlive the run that started it.

After ``kill -9`` of a run, its pool workers went on fitting for minutes and wrote fit records
for a run that was gone (and, after a ``--force`` re-run took the lease over, beside it). A
kill cannot be caught, so each child asks the kernel to kill it when its parent goes (Linux
``PR_SET_PDEATHSIG``); elsewhere that is a no-op. Every process pool of a run arms it: the
pipeline's own (:func:`misterp.pipeline.mmm.inline_fan_out`) and the flows' fan-out
(``flows.runtime.init_fit_worker``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

__all__ = ["die_with_parent"]

logger = logging.getLogger(__name__)

#: ``prctl`` option from ``<linux/prctl.h>``: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Have the kernel SIGKILL this process as soon as its parent dies; True when armed.

    Call it first thing in a child (a process-pool initializer, before ``exec``). The parent
    may die between starting the child and this call, which the kernel would not report:
    with ``parent_pid`` given, a child whose parent is already gone kills itself at once.

    Linux only (False elsewhere). The kernel fires when the *thread* that started the child
    ends, so start children from a thread that lives as long as they should (the main thread,
    or an executor's worker thread, which lives until the executor shuts down).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)  # the parent died before we could ask
    return True
