"""A picture of a take: waveform envelope and spectrogram with the MIDI events on the time axis."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def time_span(events: list[dict], rate: float, seconds: float) -> tuple[float, float]:
    """(left, right) of the time axis in seconds: from the first MIDI event (a take's silence before the
    first note is not drawn) to the end of the audio; ``rate`` is the events' sample rate in Hz."""
    starts = [ev["sample"] / rate for ev in events if "sample" in ev]
    left = min(starts) if starts else 0.0
    left = left if left < seconds else 0.0
    return left, max(seconds, left + 1e-3)


def plot_session(path: str | Path, out: str | Path | None = None) -> Path:
    """Write a PNG for a session folder (or a bare audio file); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    from realtime.offline.replay import read_session

    path = Path(path)
    events, model_rate = [], None
    if path.is_dir():
        manifest, events = read_session(path)
        audio_path = path / manifest.get("audio", "audio.wav")
        model_rate = manifest.get("model_rate")
        out = Path(out) if out else path / "session.png"
    else:
        audio_path = path
        out = Path(out) if out else path.with_suffix(".png")
    if not audio_path.is_file():
        raise FileNotFoundError(f"plot: audio file {audio_path} not found")
    audio, sr = sf.read(str(audio_path), dtype="float32", always_2d=True)
    x = audio.mean(axis=1)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    hop = max(1, sr // 200)
    k = len(x) // hop
    if k:
        env = np.abs(x[:k * hop]).reshape(k, hop).max(axis=1)
        te = (np.arange(k) + 0.5) * hop / sr
        ax1.fill_between(te, -env, env, color="tab:blue", lw=0)
    ax1.set_ylim(-1, 1)
    ax1.set_ylabel("amplitude")
    if len(x) >= 512:
        with np.errstate(divide="ignore"):  # digital silence has bins of exactly 0 power: -inf dB, drawn black
            ax2.specgram(x + 1e-9, NFFT=1024, Fs=sr, noverlap=768, cmap="magma", vmin=-130)
    ax2.set_ylim(0, min(sr / 2, 8000))
    ax2.set_ylabel("Hz")
    ax2.set_xlabel("seconds")
    rate = model_rate or sr
    colors = {"note_on": "lime", "note_off": "tab:red", "instrument": "cyan"}
    for ev in events:
        if "sample" not in ev:
            continue
        te = ev["sample"] / rate
        c = colors.get(ev.get("param"), "white")
        for ax in (ax1, ax2):
            ax.axvline(te, color=c, lw=0.8, alpha=0.7)
        if ev.get("param") in ("note_on", "instrument"):
            label = str(ev.get("name", ev.get("value")))
            ax2.text(te, ax2.get_ylim()[1] * 0.95, label, color=c, fontsize=7, rotation=90, va="top")
    ax1.set_xlim(*time_span(events, model_rate or sr, len(x) / sr))
    ax1.set_title(f"{path.name}: {len(x) / sr:.1f} s at {sr} Hz, {len(events)} events")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
