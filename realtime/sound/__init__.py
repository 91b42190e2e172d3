"""The sound path after the engine: watchdog, output stage (envelope, gain, DC blocker, limiter), resampler.
Thread: generator."""
