"""The envelope bank played: a sounding note's per-sample LPC rows and excitation gains, one block at a time.
Thread: generator. Pure Numba, no allocation.

Every engine of a source-filter model (the network's, realtime.engine.base with ``cfg.source_filter``, and the
no-network ``lpc-pulse``) reads its filter and gain from here, with the timing training uses
(:func:`realtime.model.envelope.tracks_into`): every ``update`` samples (1 ms) of the note, the played (instrument,
glided and bent pitch, velocity) is looked up at its time since key-down and key-up; the LSFs become the next 1 ms's
polynomial and the gain runs linearly to the new knot. The morph mixes two instruments' envelopes (LSFs linearly,
gains geometrically); the expression pedal scales the gain (its level offset, 1 unit = 60 dB). Before any key-down
the gain is 0 and the polynomial stays as it was.

The per-note timing state, shared by the engines (see :func:`new_state`): ``fs`` float64 [gain knot before, gain
knot after]; ``ints`` int64 [samples since key-down (-1: no note yet), key-up at this many samples after key-down
(-1: held), the filter ring's position]; ``lpc`` (ORDER + 1,) the current polynomial.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from realtime.model import local_cond
from realtime.model.envelope import envelope_at, neighbours, update_samples
from realtime.model.source_filter import ORDER, lsf_to_lpc_into

#: fs[] layout
F_K_PREV, F_K_NEXT = 0, 1
#: ints[] layout
I_SINCE_ON, I_OFF_AT, I_HPOS = 0, 1, 2
#: the all-pole filter's ring of past pre-emphasised samples (a power of two > ORDER)
RING = 32


def new_state() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fs, ints, lpc) of a voice before any note: no gain, the flat polynomial [1, 0, ...]."""
    lpc = np.zeros(ORDER + 1)
    lpc[0] = 1.0
    return np.zeros(2), np.array([-1, -1, 0], np.int64), lpc


def key_down(ints: np.ndarray) -> None:
    """A note's envelope starts from its key-down at the next sample."""
    ints[I_SINCE_ON], ints[I_OFF_AT] = 0, -1


def key_up(ints: np.ndarray) -> None:
    """The sounding note's release starts at the next sample."""
    if ints[I_SINCE_ON] >= 0:
        ints[I_OFF_AT] = ints[I_SINCE_ON]


@njit(cache=True, nogil=True)
def _lookup(tables, inst: int, pitch: float, vel: float, morph_inst: int, morph_amt: float, tau: int, off_at: int,
            known_at: int, hop: float, idx, w, lsf, lsf2) -> float:
    """The envelope (LSFs into ``lsf``, log gain returned) of the played note ``tau`` samples after key-down,
    released when its key-up (``off_at``) came by ``known_at``; morphed towards ``morph_inst`` by ``morph_amt``."""
    pos_off = (tau - off_at) / hop if 0 <= off_at <= known_at else -1.0
    n = neighbours(tables, inst, pitch, vel, idx, w)
    lg = envelope_at(tables, idx, w, n, tau / hop, pos_off, lsf)
    if morph_amt > 0.0:
        n2 = neighbours(tables, morph_inst, pitch, vel, idx, w)
        lg2 = envelope_at(tables, idx, w, n2, tau / hop, pos_off, lsf2)
        for k in range(lsf.shape[0]):
            lsf[k] = (1.0 - morph_amt) * lsf[k] + morph_amt * lsf2[k]
        lg = (1.0 - morph_amt) * lg + morph_amt * lg2
    return lg


@njit(cache=True, nogil=True)
def play_tracks(tables, ctrl: np.ndarray, fs: np.ndarray, ints: np.ndarray, lpc: np.ndarray, inst: int, vel: float,
                morph_inst: int, morph_amt: float, hop: int, update: int, lsf: np.ndarray, lsf2: np.ndarray,
                work: np.ndarray, idx: np.ndarray, w: np.ndarray, out_a: np.ndarray, out_g: np.ndarray) -> None:
    """The next ``len(out_g)`` samples' LPC rows ``out_a`` (n, ORDER + 1) and gains ``out_g`` (n,), advancing the
    note timing (``fs``, ``ints``, ``lpc``). ``ctrl`` (realtime.model.local_cond state) is read, not changed: the
    pitch glide is followed on a copy, exactly as local_cond.advance will move it over the same samples.
    ``lsf``, ``lsf2`` (ORDER,), ``work`` (2, ORDER + 2), ``idx`` (4,) int64, ``w`` (4,): scratch."""
    level = 10.0 ** (3.0 * ctrl[local_cond.LEVEL_OFFSET])  # level units: 1 = 60 dB
    pitch, target, coeff = ctrl[local_cond.PITCH], ctrl[local_cond.PITCH_TARGET], ctrl[local_cond.PITCH_COEFF]
    fhop = float(hop)
    for t in range(out_g.shape[0]):
        pitch += (target - pitch) * coeff
        since = ints[I_SINCE_ON]
        g = 0.0
        if since >= 0:
            j = since % update
            if j == 0:
                if since == 0:
                    fs[F_K_PREV] = level * math.exp(_lookup(tables, inst, pitch, vel, morph_inst, morph_amt, 0,
                                                            ints[I_OFF_AT], -update, fhop, idx, w, lsf, lsf2))
                else:
                    fs[F_K_PREV] = fs[F_K_NEXT]
                fs[F_K_NEXT] = level * math.exp(_lookup(tables, inst, pitch, vel, morph_inst, morph_amt, since + update,
                                                        ints[I_OFF_AT], since, fhop, idx, w, lsf, lsf2))
                lsf_to_lpc_into(lsf, lpc, work)
            g = fs[F_K_PREV] + (fs[F_K_NEXT] - fs[F_K_PREV]) * (j + 1) / update
            ints[I_SINCE_ON] = since + 1
        out_g[t] = g
        for k in range(lpc.shape[0]):
            out_a[t, k] = lpc[k]


class Tracks:
    """One voice's envelope-bank lookup (Python side): its scratch and the bank's tables. Thread: generator."""

    def __init__(self, bank, sample_rate: int) -> None:
        self.bank = bank
        self.hop, self.update = bank.hop_samples, update_samples(sample_rate)
        self.lsf, self.lsf2 = np.zeros(ORDER), np.zeros(ORDER)
        self.work = np.zeros((2, ORDER + 2))
        self.idx, self.w = np.zeros(4, np.int64), np.zeros(4)

    def fill(self, ctrl, fs, ints, lpc, instrument: int, velocity: float, morph, out_a, out_g) -> None:
        """:func:`play_tracks` for a voice playing ``instrument`` at ``velocity`` (``morph``: (other, amount) or
        None)."""
        morph_inst, morph_amt = (int(morph[0]), float(morph[1])) if morph is not None else (0, 0.0)
        play_tracks(self.bank.tables, ctrl, fs, ints, lpc, int(instrument), float(velocity), morph_inst, morph_amt,
                    self.hop, self.update, self.lsf, self.lsf2, self.work, self.idx, self.w, out_a, out_g)
