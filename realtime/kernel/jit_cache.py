"""Drop Numba's on-disk cache when any of the project's sources changed. Thread: import time (main).

Numba's ``cache=True`` keys a compiled function on its own file only. The kernel
in realtime/kernel/generate.py inlines code from realtime/kernel/int8dot.py, bf16dot.py,
dot_loop.py, realtime/model/local_cond.py and more; after an edit to one of those (or a
``git pull``), the cached kernel would silently run the old code. So the first
import of :mod:`realtime` hashes the sources of ``realtime/`` and ``models/`` and,
when the hash differs from the one stamped beside the cache, deletes the cached
machine code (``*.nbi``, ``*.nbc``) there and in ``tests/``: the next call
recompiles (1-2 minutes once).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
#: the packages whose sources Numba compiles into the cached kernels
SOURCE_DIRS = ("realtime", "models")
#: where Numba keeps the cache of functions defined in these folders (next to the sources)
CACHE_DIRS = ("realtime", "models", "tests")
STAMP = ROOT / "realtime" / "__pycache__" / "numba-sources.sha1"


def sources_digest(root: Path = ROOT) -> str:
    """SHA-1 over the paths and contents of every ``.py`` file below :data:`SOURCE_DIRS`."""
    h = hashlib.sha1()
    for d in SOURCE_DIRS:
        for f in sorted((root / d).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def invalidate_stale(root: Path = ROOT, stamp: Path = STAMP) -> int:
    """Delete the cached Numba code under ``root`` if the sources changed since the stamp; returns how many
    files were deleted. Does nothing when ``NUMBA_CACHE_DIR`` points elsewhere or the tree is read-only."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return 0
    digest = sources_digest(root)
    try:
        if stamp.read_text().strip() == digest:
            return 0
    except OSError:
        pass
    removed = 0
    try:
        for d in CACHE_DIRS:
            for f in (root / d).rglob("__pycache__/*.nb[ic]"):
                f.unlink(missing_ok=True)
                removed += 1
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest + "\n")
    except OSError:  # a read-only install: Numba then caches elsewhere or not at all
        pass
    return removed
