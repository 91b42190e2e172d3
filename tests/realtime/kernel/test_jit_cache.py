"""Numba's cache is dropped when any source it compiles changed (it only tracks each function's own file)."""
from __future__ import annotations

from pathlib import Path

from realtime.kernel import jit_cache


def _tree(tmp: Path) -> Path:
    for d in ("realtime", "models", "tests"):
        (tmp / d / "__pycache__").mkdir(parents=True)
    (tmp / "realtime" / "kernel.py").write_text("x = 1\n")
    (tmp / "realtime" / "int8dot.py").write_text("y = 2\n")
    (tmp / "models" / "local_cond.py").write_text("z = 3\n")
    return tmp


def _cache_files(tmp: Path) -> list[Path]:
    files = [tmp / "realtime" / "__pycache__" / "kernel.generate_voices-1.py311.nbi",
             tmp / "realtime" / "__pycache__" / "kernel.generate_voices-1.py311.1.nbc",
             tmp / "tests" / "__pycache__" / "test_int8dot._dot-30.py311.nbi"]
    for f in files:
        f.write_bytes(b"compiled")
    return files


def test_an_edit_to_a_dependency_drops_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    root = _tree(tmp_path)
    stamp = root / "realtime" / "__pycache__" / "stamp"
    files = _cache_files(root)
    assert jit_cache.invalidate_stale(root, stamp) == 3  # no stamp yet: whatever is cached is suspect
    assert not any(f.exists() for f in files)
    files = _cache_files(root)
    assert jit_cache.invalidate_stale(root, stamp) == 0 and all(f.exists() for f in files)  # unchanged: kept
    (root / "realtime" / "int8dot.py").write_text("y = 3\n")  # a file the cached kernel inlines
    assert jit_cache.invalidate_stale(root, stamp) == 3 and not any(f.exists() for f in files)
    other = root / "realtime" / "__pycache__" / "kernel.cpython-311.pyc"
    other.write_bytes(b"bytecode")
    (root / "models" / "local_cond.py").write_text("z = 4\n")
    jit_cache.invalidate_stale(root, stamp)
    assert other.exists()  # Python's own bytecode is not Numba's to delete


def test_a_separate_numba_cache_dir_is_left_alone(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    files = _cache_files(root)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert jit_cache.invalidate_stale(root, root / "stamp") == 0 and all(f.exists() for f in files)
