"""Live I/O: the host loop, the audio callback and its ring, devices, MIDI input, the recorder, the status line."""
