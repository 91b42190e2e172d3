"""The model hot-swap's loader thread (issue 40): builds a swap slot's session off the audio path.

The generator thread only calls :meth:`SwapLoader.request` (stores the slot number and sets an event); this
thread loads the model or preset, opens the session (engine, prime, every re-prime state: the JIT code is
cached) at the lowest CPU priority, and queues it on ``Swapper.ready``, which the generator thread
crossfades to at its next block (realtime/control/swap.py). A failed load becomes one line in
``Swapper.messages`` and playing goes on. Requests that arrive while one loads: the latest wins.
"""
from __future__ import annotations

import os
import threading

from realtime.control.swap import Swapper


class SwapLoader:
    """One daemon thread per live session with [swap] slots; ``close`` ends it."""

    def __init__(self, swapper: Swapper) -> None:
        self.swapper = swapper
        self._want: int | None = None
        self._wake = threading.Event()
        self._running = True
        self.loads = 0
        swapper.loader = self.request
        self.warm_up()
        self._thread = threading.Thread(target=self._run, name="wavenet-live-swap-loader", daemon=True)
        self._thread.start()

    def warm_up(self) -> None:
        """Main thread, before the stream starts: import what a load imports, and run each preset slot once
        (a throwaway session, 64 samples), so an engine kind the first preset does not play is compiled now:
        Numba compiles holding the GIL, which would starve the generator thread mid-performance. A slot that
        fails here is skipped (its swap says why, in one line)."""
        import numpy as np

        import realtime.offline.replay  # noqa: F401 - the swap event's engine name and model hash
        from realtime.control.presets import load_preset
        from realtime.model.model_file import load_model
        from realtime.offline.render import Session

        for path in self.swapper.slots:
            if not path.lower().endswith(".toml"):
                continue  # a model file plays with the first preset's engine: compiled already
            try:
                preset = load_preset(path)
                s = Session.open(preset, load_model(preset.model_path()))
                s.swapper = None
                s.generate(np.zeros(64, np.float32))
                close = getattr(s.engine, "close", None)
                if close is not None:
                    close()
            except Exception:  # noqa: BLE001 - said at its swap
                continue

    def request(self, slot: int) -> None:
        """Generator thread: load ``slot`` (replaces a request not yet started)."""
        self._want = slot
        self._wake.set()

    def _run(self) -> None:
        try:  # the loader must never take the CPU from the generator or the audio callback
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (OSError, AttributeError):
            pass
        from realtime.engine.blas import one_blas_thread

        with one_blas_thread():
            while self._running:
                self._wake.wait(0.5)
                self._wake.clear()
                slot, self._want = self._want, None
                if slot is None or not self._running:
                    continue
                try:
                    item = self.swapper.build(slot)
                except Exception as e:  # noqa: BLE001 - any failure to load: one line, keep playing
                    self.swapper.failed(slot, e)
                    continue
                self.loads += 1
                if self._want is None:  # else a newer request is pending: that one plays
                    self.swapper.ready.append(item)

    def close(self) -> None:
        self._running = False
        self._wake.set()
        self._thread.join(timeout=30.0)
        self.swapper.loader = None
