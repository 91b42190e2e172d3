"""wavenet-live's real-time side: engines, kernels, audio, MIDI, recording and the host."""
from realtime.kernel.jit_cache import invalidate_stale as _invalidate_stale

_invalidate_stale()
