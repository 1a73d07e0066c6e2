"""What every worker process of a pool does first: end with its parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when its parent does, whatever signal ended the parent (SIGKILL included).

    Linux's parent-death signal; elsewhere the pool's own shutdown is all there is. Ctrl-C is the parent's to
    handle: a worker ignores SIGINT, so the terminal gets one message, not a traceback per process.

    Parameters
    ----------
    parent_pid : int
        The pid of the process that made the pool (``os.getpid()`` there), to catch a parent that died before
        the signal was armed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
