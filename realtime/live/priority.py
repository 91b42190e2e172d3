"""The generator thread's scheduling priority: what a pro-audio host gives its worker threads.

Linux schedules threads, not processes: :func:`raise_priority` changes one thread (the caller, or a
native thread id). It asks for ``SCHED_FIFO`` at a low real-time priority: above every ordinary
process, below the audio callback (a JACK client's process thread runs at the server's priority less 5:
FIFO 5 under a default ``jackd``, whose own thread runs at 10), so the callback still preempts it.
Where that is not permitted (no CAP_SYS_NICE, no RLIMIT_RTPRIO) a better nice value; where
neither is, it leaves the thread as it is. It never raises: the result says what the thread got, for
the status line. A real-time thread that computes too long cannot freeze the machine: the kernel's
real-time throttling (``sched_rt_runtime_us``, 95 % by default) leaves the rest to everything else,
and the generator sleeps whenever its ring is full.
"""
from __future__ import annotations

import os
import threading

#: the SCHED_FIFO priority asked for (1..99; a default jackd's client process threads run at 5)
FIFO_PRIORITY = 3
#: the nice value asked for when real time is not permitted (-20..19; 0 is everybody's default)
NICE = -10


def raise_priority(tid: int | None = None, fifo_priority: int = FIFO_PRIORITY, nice: int = NICE) -> str:
    """Give thread ``tid`` (default: the calling thread) SCHED_FIFO, else a better nice value.

    Returns what it got: ``"SCHED_FIFO 3"``, ``"nice -10"``, or ``"normal"`` (neither was permitted, or
    this system has neither call). Thread: any (usually the thread itself, once, when it starts).
    """
    if tid is None:
        tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(fifo_priority))
        return f"SCHED_FIFO {fifo_priority}"
    except (AttributeError, OSError):
        pass
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) > nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return f"nice {os.getpriority(os.PRIO_PROCESS, tid)}"
    except (AttributeError, OSError):
        return describe(tid)


def describe(tid: int | None = None) -> str:
    """The scheduling of thread ``tid`` (default: the caller) in :func:`raise_priority`'s words."""
    if tid is None:
        tid = threading.get_native_id()
    try:
        if os.sched_getscheduler(tid) == os.SCHED_FIFO:
            return f"SCHED_FIFO {os.sched_getparam(tid).sched_priority}"
        n = os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):
        return "normal"
    return f"nice {n}" if n else "normal"
