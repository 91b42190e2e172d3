"""Drop Numba's cached code whose sources changed. Thread: import time (main).

Numba's ``cache=True`` keys a compiled function on its own file only. The kernel
in realtime/kernel/generate.py inlines code from realtime/kernel/int8dot.py, bf16dot.py,
dot_loop.py, realtime/model/local_cond.py and more; after an edit to one of those (or a
``git pull``), the cached kernel would silently run the old code. So the first
import of :mod:`realtime` computes, for each file that uses Numba, a digest over that
file and every project module it imports (transitively, imports inside functions
included), and deletes the cached machine code (``*.nbi``, ``*.nbc``) of each file
whose digest differs from the one stamped beside the cache: the next call recompiles
it (1-2 minutes for the generation kernel). An edit to a module no cached code
imports (the preset loader, the host, a test) keeps every compiled kernel.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
#: the packages whose modules Numba may compile into cached code
SOURCE_DIRS = ("realtime", "models")
#: where Numba keeps the cache of functions defined in these folders (next to the sources)
CACHE_DIRS = ("realtime", "models", "tests")
#: each Numba-using file's digest when its cached code was (or is about to be) compiled
STAMP = ROOT / "realtime" / "__pycache__" / "numba-sources.json"

_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+((?:realtime|models)(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^#\n]+)"
                     r"|import[ \t]+((?:realtime|models)(?:\.\w+)*))", re.M)


class _Sources:
    """The project's ``.py`` files below ``root`` and the project modules each imports."""

    def __init__(self, root: Path):
        self.root = root
        self.text: dict[Path, bytes] = {}
        self.deps: dict[Path, set[Path]] = {}
        self.file_digests: dict[Path, bytes] = {}
        self.modules: dict[str, list[Path]] = {}
        self.digests: dict[Path, str] = {}

    def _read(self, f: Path) -> bytes:
        if f not in self.text:
            try:
                self.text[f] = f.read_bytes()
            except OSError:
                self.text[f] = b""
        return self.text[f]

    def _file_digest(self, f: Path) -> bytes:
        if f not in self.file_digests:
            self.file_digests[f] = hashlib.sha1(str(f.relative_to(self.root)).encode() + b"\0" + self._read(f)).digest()
        return self.file_digests[f]

    def _module(self, name: str) -> list[Path]:
        """The files importing module ``name`` runs: the module and its packages' ``__init__.py``."""
        if name not in self.modules:
            self.modules[name] = self._find_module(name)
        return self.modules[name]

    def _find_module(self, name: str) -> list[Path]:
        parts = name.split(".")
        out = [self.root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
        for f in (self.root.joinpath(*parts).with_suffix(".py"), self.root.joinpath(*parts, "__init__.py")):
            if f.is_file():
                out.append(f)
        return [f for f in out if f.is_file()]

    def imports(self, f: Path) -> set[Path]:
        if f in self.deps:
            return self.deps[f]
        out: set[Path] = set()
        for m in _IMPORT.finditer(self._read(f).decode("utf-8", "replace")):
            if m.group(3):
                out.update(self._module(m.group(3)))
                continue
            out.update(self._module(m.group(1)))
            for name in m.group(2).strip("()").split(","):
                name = name.split(" as ")[0].strip()
                if name.isidentifier():
                    out.update(self._module(f"{m.group(1)}.{name}"))
        self.deps[f] = out
        return out

    def digest(self, f: Path) -> str:
        """SHA-1 over the paths and contents of ``f`` and every project module it imports, transitively."""
        if f not in self.digests:
            seen, todo = set(), [f]
            while todo:
                g = todo.pop()
                if g not in seen:
                    seen.add(g)
                    todo.extend(self.imports(g))
            h = hashlib.sha1()
            for g in sorted(seen):
                h.update(self._file_digest(g))
            self.digests[f] = h.hexdigest()
        return self.digests[f]


def sources_digest(root: Path = ROOT) -> str:
    """SHA-1 over the paths and contents of every ``.py`` file below :data:`SOURCE_DIRS`."""
    h = hashlib.sha1()
    for d in SOURCE_DIRS:
        for f in sorted((root / d).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def invalidate_stale(root: Path = ROOT, stamp: Path = STAMP) -> int:
    """Delete the cached Numba code under ``root`` whose file or any module it imports changed since the
    stamp (all of it when there is no stamp); returns how many files were deleted. Does nothing when
    ``NUMBA_CACHE_DIR`` points elsewhere or the tree is read-only."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return 0
    try:
        old = json.loads(stamp.read_text())
    except (OSError, ValueError):
        old = {}
    src = _Sources(root)
    cached = [f for d in CACHE_DIRS for f in (root / d).rglob("__pycache__/*.nb[ic]")]
    sources = {f.parent.parent / (f.name.split(".")[0] + ".py") for f in cached}
    for d in CACHE_DIRS:  # every file that compiles cached code: what it compiles from now on is current
        sources.update(f for f in (root / d).rglob("*.py") if b"numba" in src._read(f))
    new = {str(f.relative_to(root)): src.digest(f) for f in sorted(sources) if f.is_file()}
    removed = 0
    try:
        for f in cached:
            key = str((f.parent.parent / (f.name.split(".")[0] + ".py")).relative_to(root))
            if key not in new or old.get(key) != new[key]:  # changed, gone, or never stamped
                f.unlink(missing_ok=True)
                removed += 1
        if new != old:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(new, indent=0, sort_keys=True) + "\n")
    except OSError:  # a read-only install: Numba then caches elsewhere or not at all
        pass
    return removed
