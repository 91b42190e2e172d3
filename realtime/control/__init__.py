"""Control: MIDI bytes and presets to conditioning, temperature and levels, applied at block boundaries.
Thread: generator (the MIDI thread only enqueues)."""
