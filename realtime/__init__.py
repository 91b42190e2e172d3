"""wavenet-live's real-time side: engines, kernels, audio, MIDI, recording and the host."""
from .jit_cache import invalidate_stale as _invalidate_stale

_invalidate_stale()
