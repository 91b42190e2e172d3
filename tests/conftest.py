"""Shared pytest fixtures. JACK: the ``jack_server`` fixture lives in ``tests/jack_server.py``."""
from __future__ import annotations

try:  # tests/ as a package
    from .jack_server import jack_server  # noqa: F401
except ImportError:  # tests/ on sys.path (pytest's default rootdir-relative import)
    from jack_server import jack_server  # noqa: F401
