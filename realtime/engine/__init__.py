"""Engines: one interface (base.Engine) over the Numba kernel and TorchScript, polyphony, priming.
Thread: generator."""
