"""Offline tools: render, replay, MIDI files, the demo, plots, the soak test. No audio device needed."""
