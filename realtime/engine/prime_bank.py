"""Prepared primes: the engine state after priming from each seed-bank snippet (and from silence), made
before the note that needs it.

A prime is one parallel pass of the network over a receptive field of samples: 10-25 ms on the default
model on an idle core, and many times that with other work on the machine (issue 38: up to 0.45 s with
numpy's multithreaded BLAS). A note-on that computed it stalled the generator thread past its lead, and
the note sounded late or not at all. Here every state is computed ahead: :meth:`PrimeBank.prepare` does
the whole bank in worker threads before live play starts, and a note-on only copies a prepared state
into the engine (:meth:`realtime.engine.base.Engine.reprime_state`: tens of microseconds plus the
crossfade's few samples).

Determinism (render, replay, block invariance): a state depends on nothing but the model and the
snippet. It is computed under the snippet's own conditioning — its instrument, pitch and velocity, a
gate opening at its first sample with its level-bank envelope, no loop low-pass, no expression offset,
the engine's attack and release times — never under the live state of the moment, and always with one
BLAS thread (:mod:`realtime.engine.blas`). So it has the same bits whether a worker prepared it before a
live take or an offline render computes it on first use (:meth:`PrimeBank.get`, in the render loop's
thread), and nothing is asynchronous at the note: the prime lands at the note-on's own sample, in live
play, render and replay alike.

Threads: built where the controller is built; :meth:`prepare` on the main thread (it starts and joins
its workers); :meth:`get` on the generator thread (live) or the render loop. Memory: one
``(sum(dilations), R)`` float32 array per snippet (262 KB on the default model: 89 MB for its 341).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

import numpy as np

from realtime.engine import priming
from realtime.engine.blas import one_blas_thread
from realtime.model import local_cond, mulaw

if TYPE_CHECKING:
    from realtime.engine.base import Engine

#: :meth:`PrimeBank.get`'s index of the silence prime (a watchdog recovery without a seed bank)
SILENCE = -1


class PrimeBank:
    """The prime states of ``engine.model``'s seed bank and of silence, computed once each.

    ``engine`` lends its weights, conditioning tables and attack/release times (any engine of the model:
    the voices of a batch share one bank); it is not changed.
    """

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.seedbank = engine.model.seedbank
        self._states: dict[int, priming.PrimeState] = {}
        #: states computed at the note that needed them (not prepared ahead); live play keeps this at 0
        self.computed_late = 0

    def __len__(self) -> int:
        """Entries in the bank: one per seed-bank snippet, plus silence."""
        return (0 if self.seedbank is None else len(self.seedbank)) + 1

    @property
    def ready(self) -> bool:
        """Every entry is prepared."""
        return len(self._states) == len(self)

    @property
    def nbytes(self) -> int:
        """Bytes held by the prepared states."""
        return sum(s.queues.nbytes + s.lag_ring.nbytes for s in self._states.values())

    def index(self, instrument: int, pitch: int, velocity: int) -> int | None:
        """The entry a note plays from: the seed bank's snippet closest in pitch (then velocity), or None."""
        return None if self.seedbank is None else self.seedbank.index(instrument, pitch, velocity)

    def get(self, k: int) -> priming.PrimeState:
        """Entry ``k`` (a seed-bank row, or :data:`SILENCE`): the prepared state, else computed now in the
        calling thread (an offline render's first use; the same bits as prepared)."""
        st = self._states.get(k)
        if st is None:
            self.computed_late += 1
            st = self._states[k] = self._compute(k)
        return st

    def prepare(self, threads: int | None = None, say: Callable[[str], None] | None = None) -> float:
        """Compute every entry not yet prepared, in ``threads`` worker threads (default: the cores this
        process may use, at most 4); returns the seconds it took. ``say`` hears about it when there is
        more than a few entries to make. Nothing for an engine that takes no primes (lpc-pulse)."""
        todo = [k for k in self._keys() if k not in self._states]
        if not todo or not self.engine.takes_primes:
            return 0.0
        threads = max(1, min(threads or len(os.sched_getaffinity(0)), 4, len(todo)))
        if say is not None and len(todo) > 8:
            say(f"preparing {len(todo)} seed-bank primes ({threads} threads)")
        t0 = time.perf_counter()
        with one_blas_thread():
            if threads == 1:
                for k in todo:
                    self._states[k] = self._compute(k)
            else:
                with ThreadPoolExecutor(threads, thread_name_prefix="wavenet-live-primes") as pool:
                    for k, st in zip(todo, pool.map(self._compute, todo)):
                        self._states[k] = st
        return time.perf_counter() - t0

    # ------------------------------------------------------------ internal
    def _keys(self) -> list[int]:
        return [SILENCE] + list(range(0 if self.seedbank is None else len(self.seedbank)))

    def _compute(self, k: int) -> priming.PrimeState:
        e = self.engine
        rest = e._ctrl_rest
        if k == SILENCE:
            classes = np.full(e.cfg.receptive_field, mulaw.SILENCE, np.uint8)
            inst, pitch, vel, gate = 0, 60, 100, False
        else:
            sb = self.seedbank
            classes = sb.snippets[k]
            inst, pitch, vel, gate = int(sb.instrument[k]), int(sb.pitch[k]), int(sb.velocity[k]), True
        ctrl = local_cond.new_state(float(pitch), e.sample_rate)
        for i in (local_cond.ATTACK_COEFF, local_cond.RELEASE_COEFF):
            ctrl[i] = rest[i]
        if gate:
            ctrl[local_cond.GATE_TARGET] = 1.0
            local_cond.start_level(ctrl, e.note_level(inst, pitch, vel), e.sample_rate, attack=True)
        bias = e.layer_bias(e.global_vector(float(pitch), inst, float(vel)))
        with one_blas_thread():
            return priming.prime_state(e.w, e.dilations, classes, bias, ctrl, e.sample_rate, e.loc_idx,
                                       e.source_filter)
