"""Shared pytest fixtures. JACK: the ``jack_server`` fixture lives in ``tests/jack_server.py``; the training
tests' ``tiny_data`` in ``tests/tiny_data.py``."""
from __future__ import annotations

try:  # tests/ as a package
    from .jack_server import jack_server  # noqa: F401
    from .tiny_data import tiny_data  # noqa: F401
except ImportError:  # tests/ on sys.path (pytest's default rootdir-relative import)
    from jack_server import jack_server  # noqa: F401
    from tiny_data import tiny_data  # noqa: F401
