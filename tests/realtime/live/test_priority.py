"""The generator thread's priority: SCHED_FIFO where permitted, else a better nice value, else left
alone; never an error; one thread changed, not the process; shown in the status line."""
from __future__ import annotations

import os
import re
import threading

from realtime.live import priority
from realtime.live.host import HostStats
from realtime.live.status import format_status


def in_thread(fn):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_raise_priority_says_what_it_got_and_changes_only_that_thread():
    main_before = priority.describe()
    got, seen = in_thread(lambda: (priority.raise_priority(), priority.describe()))
    assert re.fullmatch(r"SCHED_FIFO \d+|nice -?\d+|normal", got), got
    assert got == seen or got == "normal"
    assert priority.describe() == main_before  # the process (its main thread) is as it was


def test_without_permission_it_falls_back_quietly(monkeypatch):
    def refuse(*a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    got, seen = in_thread(lambda: (priority.raise_priority(), priority.describe()))
    assert got == seen and not got.startswith("SCHED_FIFO")  # nice -10 where permitted
    monkeypatch.setattr(os, "setpriority", refuse)
    got, seen = in_thread(lambda: (priority.raise_priority(), priority.describe()))
    assert got == seen == priority.describe()  # left as it was: as the thread that started it


def test_status_line_reports_the_generator_priority():
    line = format_status(HostStats(priority="SCHED_FIFO 3", samplerate=48000))
    assert line.endswith("prio SCHED_FIFO 3")
    assert "prio" not in format_status(HostStats(samplerate=48000))
