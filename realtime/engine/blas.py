"""One BLAS thread while it matters: priming's matrix products and the live generator thread.

numpy's BLAS (OpenBLAS) spreads a matrix product over every core by default. On a loaded
machine that turns a 20 ms prime into hundreds of milliseconds (its threads wait for cores other
work holds), and a product's bits may depend on how it was split. :func:`one_blas_thread` limits
it with threadpoolctl for as long as any caller is inside (reference-counted, any thread), then
restores what was there. The limit is process-wide: OpenBLAS has one thread count per process.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_limiter = None
_controller = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside: numpy's BLAS runs on the calling thread only (every thread's products, while any is inside).

    Entering costs one threadpoolctl call the first time in a process (a scan of the loaded libraries,
    ~ms) and a counter after that; not for the audio callback.
    """
    global _depth, _limiter, _controller
    with _lock:
        if _depth == 0:
            from threadpoolctl import ThreadpoolController

            if _controller is None:
                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def blas_threads() -> int:
    """numpy's BLAS thread count now (1 inside :func:`one_blas_thread`); 0 if no BLAS is loaded."""
    from threadpoolctl import threadpool_info

    return max((int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"), default=0)
