"""The envelope bank's analysis: a recorded note -> frames of LSFs and excitation gain; the bank of the training
notes; a note's per-sample LPC and gain tracks for training.

    python -m models.envelope build --data data/gm --data-extra data/gm-vel --model IN.npz --out OUT.npz

Per note (:func:`analyse`): the audio pre-emphasised (realtime.model.source_filter.pre_emphasis), cut into frames
every ``hop`` samples (10 ms) from key-down through the end of the release tail, each a Hann window of
``WIN_HOPS`` hops centred on its frame; LPC of order ORDER by the autocorrelation method (:func:`frame_lpc`: a
50 Hz Gaussian lag window, a -80 dB white-noise correction, Levinson's recursion; no bandwidth expansion), and
the LSFs (realtime.model.source_filter.lpc_to_lsf, batched: :func:`lpcs_to_lsfs`). Levinson, the LSF search and
the residual run in Numba: a training crop's span (8.7k samples) is analysed in a few ms.
The gain of a frame is the RMS (Hann-weighted over the same window) of the residual of the pre-emphasised audio
through the per-sample LPC track the engines play (realtime.model.envelope.tracks_into): so ``residual / gain``
has unit RMS exactly where training normalises it.

Why these (the ceiling, issue 37 step 2: the bank played by a pulse train plus noise at 30 dB, the full
evaluator, seeds 0 and 1; models/experiments/LOG.md): librosa.lpc is Burg's method, which has no
autocorrelation to lag-window or correct; with the prototype's bandwidth expansion 0.985 it named 67 % of the
notes against the clean real notes, without any 89 % but with poles within 0.0003 of the unit circle; at 0.995,
82-86 %; the autocorrelation method above, 89 % with its poles at most 0.9986 (a 7 Hz bandwidth). A window of 4
hops instead of 2 changed nothing.

For training (:func:`note_tracks`): the LPC rows and gains of any stretch of a note, from its frames, with the
engines' timing (the LSFs renewed every 1 ms, the gain linear between 1 ms knots); a few ms per 8k-sample crop.

The bank (:func:`build_bank`) holds the training notes only: the ``--data`` set's training split
(models.train.split_notes, by way of models.splits) and the ``--data-extra`` notes whose (instrument, pitch) no
held-out note has (extra_train_notes), as training takes them. A folder of the user's own sounds (a dataset imported
with ``python -m models.dataset import``, or a plain folder of WAV/FLAC files) goes through the same analysis.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from realtime.model.envelope import (
    GAIN_FLOOR,
    EnvelopeBank,
    hop_samples,
    log_gains,
    single_tables,
    tail_slope,
    tracks_into,
    update_samples,
)
from realtime.model.source_filter import ORDER, pre_emphasis, tidy_lsf

#: analysis window: this many hops, Hann, centred on the frame
WIN_HOPS = 2
#: the Gaussian lag window on the autocorrelation: the envelope smoothed as by a 50 Hz-wide Gaussian in frequency
LAG_WINDOW_HZ = 50.0
#: bandwidth expansion of the LPC polynomial, a_k * BANDWIDTH ** k: none (0.985, the issue's prototype, widens
#: each pole by ~77 Hz at 16 kHz and cost the ceiling 20 points of timbre against the clean real notes)
BANDWIDTH = 1.0
#: the white-noise correction: the autocorrelation's lag 0 times 1 + NOISE_CORRECTION (-80 dB: tiny, so the
#: envelope keeps its dynamic range; the issue's 1e-4 cost every bass note)
NOISE_CORRECTION = 1e-8
#: and an absolute floor added to lag 0 (power) for digital silence
NOISE_FLOOR = 1e-18


@dataclass
class NoteFrames:
    """One note's analysis: ``lsf`` (F, ORDER) float32 radians, ``gain`` (F,) float32 linear (the excitation's
    RMS); frame f sits ``f * hop`` samples after ``onset`` (key-down, a sample of the note's audio); ``release``:
    the key-up (sample of the note's audio)."""

    lsf: np.ndarray
    gain: np.ndarray
    hop: int
    onset: int
    release: int
    sample_rate: int
    _tables: tuple | None = field(default=None, repr=False)

    @property
    def release_frames(self) -> float:
        """The key-up's position in frames after key-down (float32-rounded, as the bank stores it)."""
        return float(np.float32((self.release - self.onset) / self.hop))

    @property
    def tables(self) -> tuple:
        """The note as a one-note bank (realtime.model.envelope.single_tables), as the engine would play it."""
        if self._tables is None:
            lg = log_gains(self.gain)
            self._tables = single_tables(self.lsf, lg, self.release_frames, tail_slope(lg, self.release_frames))
        return self._tables


_ONE_IDX, _ONE_W = np.zeros(1, np.int64), np.ones(1)


def note_tracks_into(frames: NoteFrames, offset: int, out_a: np.ndarray, out_g: np.ndarray) -> None:
    """:func:`note_tracks` written into ``out_a`` (n, ORDER + 1) float64 and ``out_g`` (n,) float64."""
    tracks_into(frames.tables, _ONE_IDX, _ONE_W, 1, frames.hop, update_samples(frames.sample_rate),
                int(offset) - frames.onset, frames.release - frames.onset, out_a, out_g, np.empty(ORDER),
                np.empty((2, ORDER + 2)))


def note_tracks(frames: NoteFrames, n_samples: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample LPC rows (n_samples, ORDER + 1) float64 (A(z) = 1 + sum a_k z^-k, as
    source_filter.predictions takes them) and excitation gains (n_samples,) float64 (linear) of samples
    ``offset .. offset + n_samples - 1`` of the note's audio, as the engines play the note from its frames
    (realtime.model.envelope.tracks_into: before key-down the first frame's, after the last the last's)."""
    out_a = np.empty((int(n_samples), ORDER + 1))
    out_g = np.empty(int(n_samples))
    note_tracks_into(frames, offset, out_a, out_g)
    return out_a, out_g


def _deflated(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sum and difference polynomials of LPC rows ``a`` (F, p + 1) with their trivial roots divided out:
    P(z) / (1 + z^-1) and Q(z) / (1 - z^-1), (F, p + 1) each, both palindromic, their roots on the unit circle."""
    F, p = a.shape[0], a.shape[1] - 1
    ext = np.concatenate([a, np.zeros((F, 1))], axis=1)
    rev = ext[:, ::-1]
    out = []
    for poly, sign in ((ext + rev, -1.0), (ext - rev, 1.0)):
        q = np.empty((F, p + 1))
        q[:, 0] = poly[:, 0]
        for k in range(1, p + 1):
            q[:, k] = poly[:, k] + sign * q[:, k - 1]
        out.append(q)
    return out[0], out[1]


#: the LSF search's grid: this many steps of cos(w) over (0, pi), uniform in w
LSF_GRID = 1024


@njit(cache=True, nogil=True)
def _cheb(b: np.ndarray, x: float) -> float:
    """sum_n b_n T_n(x) by Clenshaw's recurrence."""
    y1 = 0.0
    y2 = 0.0
    for n in range(b.shape[0] - 1, 0, -1):
        y1, y2 = b[n] + 2.0 * x * y1 - y2, y1
    return b[0] + x * y1 - y2


@njit(cache=True, nogil=True)
def _lsf_roots(p_poly: np.ndarray, q_poly: np.ndarray, grid: np.ndarray, out: np.ndarray, ok: np.ndarray) -> None:
    """Each row's LSFs into ``out`` (F, p), ascending, by the classic codec search: each palindromic deflated
    polynomial c (degree p = 2m) on the unit circle is e^(-j m w) (c_m + 2 sum_(n=1..m) c_(m-n) cos(n w)), a
    Chebyshev series in x = cos w; its m sign changes on ``grid`` (x descending from 1 to -1) bisected 48
    times. ``ok[i]`` False where a polynomial did not show exactly m sign changes (two roots within one grid
    step): the caller solves those rows otherwise."""
    F = p_poly.shape[0]
    p = p_poly.shape[1] - 1
    m = p // 2
    b = np.empty(m + 1)
    roots = np.empty(p)
    for i in range(F):
        found = 0
        good = True
        for j in range(2):
            c = p_poly[i] if j == 0 else q_poly[i]
            b[0] = c[m]
            for n in range(1, m + 1):
                b[n] = 2.0 * c[m - n]
            count = 0
            f0 = _cheb(b, grid[0])
            for g in range(1, grid.shape[0]):
                f1 = _cheb(b, grid[g])
                if (f0 < 0.0) != (f1 < 0.0):
                    lo, hi, flo = grid[g - 1], grid[g], f0
                    for _ in range(48):
                        mid = 0.5 * (lo + hi)
                        fm = _cheb(b, mid)
                        if (fm < 0.0) == (flo < 0.0):
                            lo, flo = mid, fm
                        else:
                            hi = mid
                    if count < m:
                        roots[found] = math.acos(min(max(0.5 * (lo + hi), -1.0), 1.0))
                        found += 1
                    count += 1
                f0 = f1
            if count != m:
                good = False
        ok[i] = good
        if good:
            roots.sort()
            for k in range(p):
                out[i, k] = roots[k]


def lpcs_to_lsfs(a: np.ndarray) -> np.ndarray:
    """LPC polynomials (F, p + 1) (minimum phase, p even) -> LSFs (F, p) ascending, tidied
    (realtime.model.source_filter.lpc_to_lsf for many rows at once, tested equal): the roots of the deflated sum
    and difference polynomials found on a grid and bisected (:func:`_lsf_roots`), or, for a row whose roots lie
    closer than the grid, as the eigenvalues of their companion matrices."""
    a = np.ascontiguousarray(a, np.float64)
    F, p = a.shape[0], a.shape[1] - 1
    pp, qq = _deflated(a)
    out = np.empty((F, p))
    ok = np.zeros(F, bool)
    _lsf_roots(pp, qq, np.cos(np.linspace(0.0, np.pi, LSF_GRID + 1)), out, ok)
    bad = np.flatnonzero(~ok)
    if bad.size:
        for j, q in enumerate((pp[bad], qq[bad])):
            comp = np.zeros((bad.size, p, p))
            comp[:, 0, :] = -q[:, 1:] / q[:, :1]
            comp[:, np.arange(1, p), np.arange(p - 1)] = 1.0
            w = np.sort(np.abs(np.angle(np.linalg.eigvals(comp))), axis=1)
            out[bad, j::2] = w[:, 1::2]  # conjugate pairs: one of each
        out[bad] = np.sort(out[bad], axis=1)
    for row in out:
        tidy_lsf(row)
    return out


def frame_windows(x: np.ndarray, onset: int, hop: int, n_frames: int, win: int) -> np.ndarray:
    """(n_frames, win): the stretches of ``x`` (zero outside it) centred on samples ``onset + f * hop``."""
    pad = win
    xp = np.concatenate([np.zeros(pad), np.asarray(x, np.float64), np.zeros(pad + win)])
    starts = onset + np.arange(n_frames) * hop - win // 2 + pad
    return xp[starts[:, None] + np.arange(win)[None, :]]


def hann(win: int) -> np.ndarray:
    """The analysis window (symmetric Hann without its zero end points)."""
    return np.hanning(win + 2)[1:-1]


@njit(cache=True, nogil=True)
def levinson(r: np.ndarray, a: np.ndarray) -> bool:
    """Levinson-Durbin: the LPC polynomial ``a`` (p + 1,) (A(z) = 1 + sum a_k z^-k) minimising the prediction
    error for autocorrelation ``r`` (p + 1,); False (``a`` then undefined) when a reflection coefficient reaches 1
    (the polynomial would not be minimum phase: rounding on a near-singular frame). The same solution as
    scipy.linalg.solve_toeplitz (tested), whose per-call checks took most of a training crop's analysis."""
    p = r.shape[0] - 1
    for k in range(p + 1):
        a[k] = 0.0
    a[0] = 1.0
    err = r[0]
    if not err > 0.0:
        return False
    tmp = np.empty(p + 1)
    for i in range(1, p + 1):
        acc = r[i]
        for j in range(1, i):
            acc += a[j] * r[i - j]
        k = -acc / err
        if not abs(k) < 1.0:
            return False
        for j in range(1, i):
            tmp[j] = a[j] + k * a[i - j]
        for j in range(1, i):
            a[j] = tmp[j]
        a[i] = k
        err *= 1.0 - k * k
    return True


@njit(cache=True, nogil=True)
def _solve_frames(r: np.ndarray, noise_correction: float, floor: float, out: np.ndarray) -> None:
    """:func:`levinson` of every row of ``r`` (F, p + 1) with the white-noise correction; a frame that does not
    come out minimum phase is solved again with a thousand times the correction, up to 1e-2, then left flat."""
    for i in range(r.shape[0]):
        c = r[i].copy()
        wnc = noise_correction
        while True:
            c[0] = r[i, 0] * (1.0 + wnc) + floor
            if levinson(c, out[i]):
                break
            if wnc >= 1e-2:
                out[i, :] = 0.0
                out[i, 0] = 1.0
                break
            wnc *= 1e3


def frame_lpc(windowed: np.ndarray, sample_rate: int) -> np.ndarray:
    """LPC polynomials (F, ORDER + 1) of windowed frames (F, win), the autocorrelation method: each frame's
    autocorrelation times a Gaussian lag window (LAG_WINDOW_HZ), its lag 0 raised by NOISE_CORRECTION (the
    white-noise correction), the normal equations solved by Levinson's recursion (:func:`levinson`), then
    bandwidth expansion (BANDWIDTH, 1 = none)."""
    F, W = windowed.shape
    n_fft = 1 << int(np.ceil(np.log2(2 * W)))
    r = np.fft.irfft(np.abs(np.fft.rfft(windowed, n_fft, axis=1)) ** 2, n_fft, axis=1)[:, :ORDER + 1]
    r = np.ascontiguousarray(r * np.exp(-0.5 * (2.0 * np.pi * LAG_WINDOW_HZ * np.arange(ORDER + 1) / sample_rate) ** 2))
    a = np.empty((F, ORDER + 1))
    _solve_frames(r, NOISE_CORRECTION, NOISE_FLOOR, a)
    return a * BANDWIDTH ** np.arange(ORDER + 1)


@njit(cache=True, nogil=True)
def _residual(s: np.ndarray, a: np.ndarray, out: np.ndarray) -> None:
    """out_t = s_t - p_t = sum_k a_k s_(t-k) (a_0 = 1; samples before s[0] are 0): source_filter.predictions'
    residual, one row of ``a`` per sample, without its (T, p) index arrays."""
    p = a.shape[1] - 1
    for t in range(s.shape[0]):
        acc = s[t]
        for k in range(1, min(p, t) + 1):
            acc += a[t, k] * s[t - k]
        out[t] = acc


def analyse(audio: np.ndarray, onset: int, release: int, sample_rate: int) -> NoteFrames:
    """A note's frames (see the module docstring): its audio, key-down and key-up (samples)."""
    audio = np.asarray(audio, np.float64)
    hop = hop_samples(sample_rate)
    win = WIN_HOPS * hop
    onset = int(min(max(onset, 0), len(audio) - 1))
    n_frames = (len(audio) - 1 - onset) // hop + 1
    s = pre_emphasis(audio)
    frames = frame_windows(s, onset, hop, n_frames, win)
    w = hann(win)
    lsf = lpcs_to_lsfs(frame_lpc(frames * w, sample_rate)).astype(np.float32)
    nf = NoteFrames(lsf, np.ones(n_frames, np.float32), hop, onset, int(release), int(sample_rate))
    a, _ = note_tracks(nf, len(audio), 0)  # the LPC track does not depend on the gains
    e = np.empty_like(s)
    _residual(s, a, e)
    ew = frame_windows(e, onset, hop, n_frames, win)
    gain = np.sqrt((ew ** 2) @ w / w.sum())
    return NoteFrames(lsf, np.maximum(gain, GAIN_FLOOR).astype(np.float32), hop, onset, int(release), int(sample_rate))


def note_frames(note, sample_rate: int) -> NoteFrames:
    """:func:`analyse` of a dataset note (models.dataset.Note)."""
    return analyse(note.audio, note.onset, note.release, sample_rate)


def bank_of(frames: list[NoteFrames], instrument, pitch, velocity, tonal) -> EnvelopeBank:
    """An :class:`EnvelopeBank` of analysed notes and their keys (one each)."""
    if not frames:
        raise ValueError("no notes to build an envelope bank from")
    hops = {f.hop for f in frames}
    if len(hops) != 1:
        raise ValueError(f"notes analysed at different hops {sorted(hops)}")
    n = np.array([len(f.gain) for f in frames])
    return EnvelopeBank(np.concatenate([f.lsf for f in frames]), np.concatenate([f.gain for f in frames]),
                        np.concatenate([[0], np.cumsum(n)[:-1]]), n, [f.release_frames for f in frames], tonal,
                        instrument, pitch, velocity, [frames[0].hop])


def build_bank(notes, sample_rate: int, instrument_ids=None, progress: bool = False) -> EnvelopeBank:
    """The bank of dataset ``notes``, analysed at ``sample_rate``; ``instrument_ids``: each note's instrument id in
    the model (default: the note's own)."""
    from tqdm import tqdm

    frames = [note_frames(n, sample_rate) for n in tqdm(notes, desc="envelope", unit="note", disable=not progress)]
    ids = [n.instrument_id for n in notes] if instrument_ids is None else list(instrument_ids)
    return bank_of(frames, ids, [n.pitch for n in notes], [n.velocity for n in notes], [n.tonal for n in notes])


def load_notes(path: str | Path, sample_rate: int):
    """A dataset folder (models.dataset.load_dataset), or a plain folder of the user's sounds
    (models.dataset.load_folder at ``sample_rate``)."""
    from models.dataset import load_dataset, load_folder

    if Path(path, "dataset.json").is_file():
        return load_dataset(path)
    return load_folder(path, sample_rate)


def training_notes(data: str | Path, extra: list[str | Path], sample_rate: int, instruments: list[str],
                   exclude_velocities: tuple[int, ...] = ()) -> tuple[list, list[int]]:
    """The notes training takes from ``data`` (its training split) and ``extra`` (those of no held-out
    (instrument, pitch)), without ``exclude_velocities``, and each one's instrument id among the model's
    ``instruments`` (matched by name; ValueError for a name the model does not have)."""
    from models.splits import extra_train_notes, split_notes

    ds = load_notes(data, sample_rate)
    train, held = split_notes(ds.notes)
    sets = [(ds, train)]
    for d in extra:
        ex = load_notes(d, sample_rate)
        sets.append((ex, extra_train_notes(ex.notes, held)))
    notes, ids = [], []
    for d, ns in sets:
        if d.sample_rate != sample_rate:
            raise ValueError(f"{d.source or 'dataset'}: sample rate {d.sample_rate}, the model's is {sample_rate}")
        unknown = sorted({d.instruments[n.instrument_id] for n in ns} - set(instruments))
        if unknown:
            raise ValueError(f"instruments {unknown} are not the model's {instruments}")
        for n in ns:
            if n.velocity not in exclude_velocities:
                notes.append(n)
                ids.append(instruments.index(d.instruments[n.instrument_id]))
    return notes, ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.envelope", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="analyse the training notes and write a model file with their envelope bank")
    b.add_argument("--data", required=True, help="the training dataset (its training split is analysed)")
    b.add_argument("--data-extra", action="append", default=[],
                   help="more notes (those of no held-out instrument and pitch); may repeat")
    b.add_argument("--model", required=True, help="the model file to add the bank to")
    b.add_argument("--out", required=True, help="the model file to write (the input's, with the bank)")
    b.add_argument("--exclude-velocities", default="",
                   help="comma-separated velocities left out of the bank (e.g. 80: the evaluator's timbre references)")
    a = ap.parse_args(argv)
    from models.dataset import DatasetError
    from realtime.model.model_file import ModelFileError, load_model

    try:
        model = load_model(a.model)
        sr = model.config.sample_rate
        excl = tuple(int(v) for v in a.exclude_velocities.split(",") if v.strip())
        notes, ids = training_notes(a.data, a.data_extra, sr, list(model.instruments), excl)
        bank = build_bank(notes, sr, ids, progress=True)
    except (ModelFileError, DatasetError, ValueError, OSError) as e:
        print(f"envelope: error: {e}", file=sys.stderr)
        return 2
    model.envelopebank = bank
    model.metadata = dict(model.metadata) | {"envelope_bank": {
        "notes": len(bank), "frames": int(len(bank.lsf)), "hop": bank.hop_samples, "order": ORDER,
        "data": [str(a.data), *map(str, a.data_extra)], "excluded_velocities": list(excl),
        "window_hops": WIN_HOPS, "bandwidth": BANDWIDTH, "noise_correction": NOISE_CORRECTION}}
    out = model.save(a.out)
    print(f"envelope bank: {len(bank)} notes, {len(bank.lsf)} frames -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
