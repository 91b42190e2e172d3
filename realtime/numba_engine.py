"""The Numba CPU engine: whole blocks per call into the compiled kernel. Thread: generator."""
from __future__ import annotations

import numpy as np

from models import local_cond, mulaw
from models.model_file import ModelFile

from .engine import Engine
from .kernel import POW2_NEG, generate_block


class NumbaEngine(Engine):
    """Fast WaveNet on one CPU core; releases the GIL while generating."""

    name = "numba"

    def __init__(self, model: ModelFile, seed: int = 0, max_block: int = 4096, **kw) -> None:
        super().__init__(model, seed=seed, max_block=max_block, **kw)
        w, cfg = self.w, self.cfg
        r, s = cfg.residual_channels, cfg.skip_channels
        self._weights = (
            w["embed"], w["w_dil"], w["w_loc"], self.loc_idx, w["w_rs"], w["b_res"], w["b_skip"],
            w["w_out1"], w["b_out1"], w["w_out2"], w["b_out2"], mulaw.DECODE_TABLE,
            self.dilations, self.q_off, float(self.sample_rate), POW2_NEG,
        )
        self._state = (
            self.queues, self.q_pos, self.bias, self.bias_target, self.bias_step, self.ints, self.ctrl,
            self.temperature, np.empty((self.max_block, local_cond.N_LOCAL), np.float32),
            np.empty(2 * r, np.float32), np.empty(r, np.float32), np.empty(r + s, np.float32),
            np.empty(s, np.float32), np.empty(256, np.float32), np.empty(256, np.float32),
        )

    def _run(self, n, uniforms, forced, out, logits):
        generate_block(n, self._weights, self._state, uniforms, forced, out, logits)
