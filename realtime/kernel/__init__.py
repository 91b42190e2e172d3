"""The Fast WaveNet kernel and its precisions (fp32, bf16, int8, bf16dot, int8dot), the loop low-pass and
period noise it calls, and the Numba on-disk cache guard. Pure functions; called on the generator thread."""
