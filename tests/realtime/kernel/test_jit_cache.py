"""Numba's cached code is dropped when its file or any project module it imports changed (Numba itself only
tracks each function's own file), and kept when an edit touches nothing it imports."""
from __future__ import annotations

from pathlib import Path

from realtime.kernel import jit_cache

KERNEL = """from numba import njit
from realtime import int8dot
from models.local_cond import z


def helper():
    from realtime.lazy import (
        w,
    )
    return w


@njit(cache=True)
def generate_voices():
    return int8dot.y + z
"""


def _tree(tmp: Path) -> Path:
    for d in ("realtime", "models", "tests"):
        (tmp / d / "__pycache__").mkdir(parents=True)
    (tmp / "realtime" / "__init__.py").write_text("")
    (tmp / "realtime" / "kernel.py").write_text(KERNEL)
    (tmp / "realtime" / "int8dot.py").write_text("y = 2\n")
    (tmp / "realtime" / "lazy.py").write_text("w = 5\n")
    (tmp / "realtime" / "presets.py").write_text("from realtime.kernel import generate_voices\n")
    (tmp / "models" / "local_cond.py").write_text("z = 3\n")
    (tmp / "tests" / "test_int8dot.py").write_text("from numba import njit\nfrom realtime.int8dot import y\n")
    # cached code whose options (cache=True) come from another module
    (tmp / "models" / "traj.py").write_text("from numba import njit\nfrom realtime.kernel import JIT\n\n\n"
                                            "@njit(**JIT)\ndef run_free():\n    pass\n")
    return tmp


def _cache_files(tmp: Path) -> list[Path]:
    files = [tmp / "realtime" / "__pycache__" / "kernel.generate_voices-1.py311.nbi",
             tmp / "realtime" / "__pycache__" / "kernel.generate_voices-1.py311.1.nbc",
             tmp / "tests" / "__pycache__" / "test_int8dot._dot-30.py311.nbi"]
    for f in files:
        f.write_bytes(b"compiled")
    return files


def _guarded_tree(tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[Path]]:
    """A project tree whose cache guard has run once (its stamp written, Numba's cache beside the sources):
    (root, stamp, the cache files)."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    root = _tree(tmp_path)
    stamp = root / "stamp"
    jit_cache.invalidate_stale(root, stamp)
    return root, stamp, _cache_files(root)


def test_an_edit_to_a_dependency_drops_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    root = _tree(tmp_path)
    stamp = root / "realtime" / "__pycache__" / "stamp"
    files = _cache_files(root)
    assert jit_cache.invalidate_stale(root, stamp) == 3  # no stamp yet: whatever is cached is suspect
    assert not any(f.exists() for f in files)
    files = _cache_files(root)
    assert jit_cache.invalidate_stale(root, stamp) == 0 and all(f.exists() for f in files)  # unchanged: kept
    (root / "realtime" / "int8dot.py").write_text("y = 3\n")  # a file both cached files' sources import
    assert jit_cache.invalidate_stale(root, stamp) == 3 and not any(f.exists() for f in files)
    other = root / "realtime" / "__pycache__" / "kernel.cpython-311.pyc"
    other.write_bytes(b"bytecode")
    files = _cache_files(root)
    assert jit_cache.invalidate_stale(root, stamp) == 0  # compiled after the new stamp: current
    (root / "models" / "local_cond.py").write_text("z = 4\n")  # only the kernel imports it
    assert jit_cache.invalidate_stale(root, stamp) == 2
    assert [f.exists() for f in files] == [False, False, True]
    assert other.exists()  # Python's own bytecode is not Numba's to delete


def test_lazy_and_parenthesised_imports_count(tmp_path, monkeypatch):
    root, stamp, files = _guarded_tree(tmp_path, monkeypatch)
    (root / "realtime" / "lazy.py").write_text("w = 6\n")  # imported inside a function, in parentheses
    assert jit_cache.invalidate_stale(root, stamp) == 2
    assert [f.exists() for f in files] == [False, False, True]


def test_an_edit_nothing_cached_imports_keeps_the_cache(tmp_path, monkeypatch):
    root, stamp, files = _guarded_tree(tmp_path, monkeypatch)
    assert jit_cache.invalidate_stale(root, stamp) == 0
    (root / "realtime" / "presets.py").write_text("from realtime.kernel import generate_voices  # edited\n")
    (root / "tests" / "test_other.py").write_text("def test_x():\n    pass\n")
    assert jit_cache.invalidate_stale(root, stamp) == 0 and all(f.exists() for f in files)


def test_cached_code_of_a_deleted_file_is_dropped(tmp_path, monkeypatch):
    root, stamp, files = _guarded_tree(tmp_path, monkeypatch)
    (root / "tests" / "test_int8dot.py").unlink()
    assert jit_cache.invalidate_stale(root, stamp) == 1
    assert [f.exists() for f in files] == [True, True, False]


def test_a_separate_numba_cache_dir_is_left_alone(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    files = _cache_files(root)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert jit_cache.invalidate_stale(root, root / "stamp") == 0 and all(f.exists() for f in files)


def test_code_compiled_after_the_stamp_is_kept_next_time(tmp_path, monkeypatch):
    """A file whose cached code is first compiled in this process (no cache files at import time), its
    cache=True among options it imports (models/trajectory/kernel.py: ``@njit(**JIT)``), keeps it."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    root = _tree(tmp_path)
    stamp = root / "stamp"
    assert jit_cache.invalidate_stale(root, stamp) == 0  # nothing cached yet
    traj = [root / "models" / "__pycache__" / f"traj.run_free-5.py311.{x}" for x in ("nbi", "1.nbc")]
    for f in traj:
        f.write_bytes(b"compiled")  # compiled during the run, after the stamp
    assert jit_cache.invalidate_stale(root, stamp) == 0 and all(f.exists() for f in traj)
    (root / "realtime" / "kernel.py").write_text(KERNEL + "JIT = {}\n")  # what it imports changed
    assert jit_cache.invalidate_stale(root, stamp) == 2 and not any(f.exists() for f in traj)
