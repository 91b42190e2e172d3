"""A recorded attack before the network: a drum hit as the seed bank holds it, then the network goes on.

Thread: generator (live) or the render loop. A note-on re-primes a voice from the seed bank's snippet of
the note: the first ``receptive_field`` samples of the real recording from its onset. The network then
continues from the snippet's *end*, so for an instrument whose sound is mostly its attack (a drum: the
hit is over in ~20 ms) the hit itself was never heard: a snare peaked at -41 dBFS and a hi-hat at -59
dBFS against about -16 dBFS for a piano. For the instruments in the preset's ``[model] bank_attack``
the voice instead plays the snippet itself (decoded mu-law, exactly the classes the network was primed
with) and then the network's continuation from it, which joins it sample for sample: the voice's network
output runs one snippet late through a small delay line until the voice is freed or restarted.
"""
from __future__ import annotations

import numpy as np


class AttackLine:
    """One voice's attack and delay line. Idle (``delay == 0`` and no attack pending) it costs nothing."""

    def __init__(self, capacity: int) -> None:
        self.attack = np.zeros(capacity, np.float32)
        self.fifo = np.zeros(capacity, np.float32)
        self.left = 0    # attack samples still to play
        self.pos = 0     # next attack sample
        self.delay = 0   # the network output's delay (samples), held in fifo[:delay]

    @property
    def idle(self) -> bool:
        return self.left == 0 and self.delay == 0

    @property
    def playing_attack(self) -> bool:
        return self.left > 0

    def start(self, audio: np.ndarray | None) -> None:
        """A new note on this voice: play ``audio`` first (None: no attack, the network at once)."""
        self.delay = 0
        self.pos = 0
        self.left = 0 if audio is None else len(audio)
        if audio is not None:
            self.attack[:len(audio)] = audio

    def needs_network(self, n: int) -> bool:
        """Whether the network must run for a block of ``n`` samples (not while the attack fills it)."""
        return self.left < n

    def process(self, out: np.ndarray, net: np.ndarray | None) -> np.ndarray:
        """``out`` (the voice's block of ``len(out)`` samples): the attack, then the network's ``net``
        (its block, or None when :meth:`needs_network` said no) delayed by the attack's length."""
        n = len(out)
        if self.idle:
            out[:] = net
            return out
        a = min(self.left, n)
        if a:
            out[:a] = self.attack[self.pos:self.pos + a]
            self.pos += a
            self.left -= a
            if a == n:
                return out
            self.delay = a  # the network starts now: its first samples go after the attack
            out[a:] = net[:n - a]
            self.fifo[:a] = net[n - a:]
            return out
        d = self.delay
        if d >= n:
            out[:] = self.fifo[:n]
            self.fifo[:d - n] = self.fifo[n:d].copy()
            self.fifo[d - n:d] = net
        else:
            out[:d] = self.fifo[:d]
            out[d:] = net[:n - d]
            self.fifo[:d] = net[n - d:]
        return out


def attack_audio(seedbank, k: int | None, cache: dict[int, np.ndarray]) -> np.ndarray | None:
    """Seed-bank row ``k`` (the snippet a re-prime uses) as audio, decoded once; None for no row."""
    if seedbank is None or k is None:
        return None
    a = cache.get(k)
    if a is None:
        from realtime.model import mulaw

        a = cache[k] = mulaw.decode(seedbank.snippets[k]).astype(np.float32)
    return a
