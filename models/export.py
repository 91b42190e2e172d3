"""Export a trained WaveNet to a model file with its seed bank and model card.

    python -m models.export --ckpt models/NAME/ckpt.pt --data DIR --out FILE.npz [--weights raw|averaged]

writes a playable model file from a training checkpoint: its raw weights, or the moving
average that ``models.train --weight-ema`` keeps beside them (what training exports).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from models.wavenet import WaveNet, export_weights
from realtime.model import mulaw
from realtime.model.level import build_levelbank
from realtime.model.model_file import ModelFile, SeedBank


def build_seedbank(notes, receptive_field: int, offset_s: float = 0.0, sample_rate: int = 16000,
                   velocity: int = 90) -> SeedBank:
    """One snippet per (instrument, pitch): ``receptive_field`` samples from ``offset_s`` after the onset.

    Uses the note whose velocity is closest to ``velocity``. Snippets are mu-law uint8.
    """
    n = receptive_field
    best: dict[tuple[int, int], Any] = {}
    for note in notes:
        key = (note.instrument_id, note.pitch)
        if key not in best or abs(note.velocity - velocity) < abs(best[key].velocity - velocity):
            best[key] = note
    snippets, inst, pitch, vel = [], [], [], []
    for (i, p), note in sorted(best.items()):
        start = note.onset + int(offset_s * sample_rate)
        seg = np.zeros(n, np.float32)
        part = note.audio[start:start + n]
        seg[:len(part)] = part
        snippets.append(mulaw.encode(seg).astype(np.uint8))
        inst.append(i)
        pitch.append(p)
        vel.append(note.velocity)
    return SeedBank(np.stack(snippets), np.asarray(inst), np.asarray(pitch), np.asarray(vel))


def training_summary(step: int, elapsed_s: float, core_s: float, max_world: int, history: list[dict],
                     train_loss: float | None, weight_ema: dict | None = None) -> dict[str, Any]:
    """The model file's ``training`` metadata: steps, wall-clock and process hours, the last eval, and, when
    it holds the moving average of the weights (``weight_ema``: the checkpoint's entry, None for the raw
    weights), ``{"decay", "steps_averaged"}``."""
    summary = {"steps": step, "hours": elapsed_s / 3600, "core_hours": core_s / 3600, "max_world": max_world,
               "history": [h for h in history if "eval_loss" in h][-1:], "train_loss": train_loss}
    if weight_ema is not None:
        summary["weight_ema"] = {"decay": weight_ema["decay"], "steps_averaged": int(weight_ema["n_averaged"])}
    return summary


def model_file(model: WaveNet, dataset, summary: dict[str, Any], envelopes=None) -> ModelFile:
    """Weights + seed bank and, for a model with a level input, level bank (from ``dataset``'s notes)
    + training summary; ``envelopes``: a source-filter model's envelope bank (realtime.model.envelope.EnvelopeBank,
    built once by the caller: models.envelope.build_bank of the training notes)."""
    cfg = model.cfg
    seed = build_seedbank(dataset.notes, cfg.receptive_field, sample_rate=cfg.sample_rate)
    meta = {"training": summary, "n_params": model.n_params(),
            "dataset": {"source": getattr(dataset, "source", ""), "n_notes": len(dataset.notes)}}
    levels = build_levelbank(dataset.notes, cfg.sample_rate) if "level" in cfg.conditioning.local else None
    if cfg.source_filter is not None and envelopes is None:
        raise ValueError("a source-filter model's file needs its envelope bank (models.envelope.build_bank)")
    return ModelFile(cfg, export_weights(model), meta, seed, levelbank=levels, envelopebank=envelopes)


def export_model(model: WaveNet, dataset, out_dir: str | Path, summary: dict[str, Any], envelopes=None) -> Path:
    """Write ``out_dir/model.npz`` (weights + seed bank + training summary; ``envelopes``: see :func:`model_file`)
    and refresh ``MODEL.md``."""
    out_dir = Path(out_dir)
    mf = model_file(model, dataset, summary, envelopes)
    path = mf.save(out_dir / "model.npz")
    write_card(out_dir, mf.config, mf.metadata)
    return path


def export_checkpoint(ckpt: str | Path, data: str | Path, out: str | Path, weights: str = "averaged") -> Path:
    """A training checkpoint's ``raw`` or ``averaged`` (``--weight-ema``) weights -> the model file ``out``.

    Raises ValueError (naming the checkpoint) when it holds no averaged weights or does not match the data
    (instruments, sample rate).
    """
    import torch

    from models.dataset import load_dataset
    from realtime.model.config import WaveNetConfig

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    ema = state.get("weight_ema")
    if weights == "averaged" and ema is None:
        raise ValueError(f"{ckpt}: no averaged weights (trained without --weight-ema); use --weights raw")
    cfg = WaveNetConfig.from_dict(state["config"])
    ds = load_dataset(data)
    ds.check_fits(cfg.conditioning.instruments, cfg.sample_rate, str(data), str(ckpt))
    model = WaveNet(cfg)
    model.load_state_dict(ema["model"] if weights == "averaged" else state["model"])
    train_loss = next((h["train_loss"] for h in reversed(state["history"]) if "train_loss" in h), None)
    summary = training_summary(state["step"], state["elapsed_s"], state.get("core_s", state["elapsed_s"]),
                               state.get("max_world", 1), state["history"], train_loss,
                               ema if weights == "averaged" else None)
    return model_file(model, ds, summary).save(out)


def training_time(tr: dict) -> str:
    """"N steps, H h (P process-hours ...)" from a model's training metadata (one torch thread per process)."""
    hours = tr.get("hours", 0) or 0
    core = tr.get("core_hours", hours) or hours
    text = f"{tr.get('steps', 0)} steps, {hours:.2f} h"
    if core > hours * 1.001:
        return text + f" wall clock, {core:.2f} process-hours (one CPU core and torch thread each; up to " \
                      f"{tr.get('max_world', tr.get('world', '?'))} data-parallel processes)"
    return text + " on one CPU core"


def pitch_table(notes: list[dict]) -> list[str]:
    """Markdown lines: signed cents error of each generated note (instrument x MIDI pitch, with the preset's
    priming), "-" where unvoiced; empty without per-note results."""
    if not notes:
        return []
    pitches = sorted({n["pitch"] for n in notes})
    cell = {(n["instrument"], n["pitch"]): ("-" if n["cents"] is None else f"{n['cents']:+.0f}") for n in notes}
    lines = ["", "## Where the pitch errors lie", "",
             "Cents from the MIDI pitch of each generated note of the last full evaluation (with the preset's "
             "priming; \"-\": unvoiced; +-1200: an octave off).", "",
             "| instrument | " + " | ".join(map(str, pitches)) + " |", "|---" * (len(pitches) + 1) + "|"]
    for name in dict.fromkeys(n["instrument"] for n in notes):
        lines.append(f"| {name} | " + " | ".join(cell.get((name, p), "") for p in pitches) + " |")
    return lines


def timbre_cell(t: dict) -> str:
    """History cell "mu-law / clean / noise-robust": results before the mu-law reference (no "reference" key)
    were clean; those before 2026-12-06 have no noise-robust figure."""
    if t.get("reference") == "mulaw":
        return (f"{t.get('accuracy_generated')} / {t.get('accuracy_generated_clean_reference', '-')} / "
                f"{t.get('accuracy_generated_noise_robust', '-')}")
    return f"- / {t.get('accuracy_generated')}"


def timbre_table(conf: dict[str, dict[str, int]], heading: str = "What the timbre classifier heard",
                 reference: str = "the real instrument whose note was nearest") -> list[str]:
    """Markdown lines: which instrument the timbre classifier heard in each instrument's generated notes."""
    if not conf:
        return []
    names = list(conf)
    names += sorted({p for row in conf.values() for p in row} - set(names))
    lines = ["", f"## {heading}", "",
             f"Generated notes of each conditioning instrument (rows) by {reference} "
             "(columns), last full evaluation.", "",
             "| conditioned on | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for t, row in conf.items():
        lines.append(f"| {t} | " + " | ".join(str(row.get(p, "")) for p in names) + " |")
    return lines


def profile_table(prof: dict) -> list[str]:
    """Markdown lines: per instrument, how many dB more (or less) of the spectrum's shape the generated notes
    have than the real ones in each frequency band; empty before the figure existed (2026-12-06)."""
    per, edges = prof.get("per_instrument") or {}, prof.get("bands_hz") or []
    if not per:
        return []
    bands = [f"{lo / 1000:g}-{hi / 1000:g} kHz" for lo, hi in zip(edges[:-1], edges[1:])]
    lines = ["", "## Spectral shape against the real notes", "",
             "Generated minus real mean log-mel profile (dB, each frame normalised to its loudest band, loud "
             "frames of 0.15-1.9 s after key-down; the real note of the same pitch mu-law coded), averaged over "
             "the mel bands in each band; positive: brighter there. Last full evaluation.", "",
             "| instrument | " + " | ".join(bands) + " |", "|---" * (len(bands) + 1) + "|"]
    for name, row in per.items():
        lines.append(f"| {name} | " + " | ".join(f"{x:+.1f}" for x in row) + " |")
    return lines


def resynthesis_table(timbre: dict) -> list[str]:
    """Markdown lines: per instrument, how many notes the timbre classifiers named right free-running and
    re-drawn one sample at a time from the real note (``timbre["resynthesis"]``: the per-sample noise
    without its feedback); empty before the figure existed (2026-12-06)."""
    rs = timbre.get("resynthesis") or {}
    if not rs:
        return []
    conf, robust = timbre.get("confusion") or {}, timbre.get("confusion_noise_robust") or {}
    lines = ["", "## Free-running against one sample at a time", "",
             f"Notes named right (of each instrument's timbre notes) by the timbre classifier / its noise-robust "
             f"twin: generated free-running (the timbre figure), and each real note of another velocity re-drawn "
             f"one sample at a time from the network's distribution given the real samples before it "
             f"(temperature {rs.get('temperature')}, teacher-forced: the per-sample noise alone, its errors never "
             f"fed back). What the second misses is the sampler's noise; what the first misses beyond it, the "
             f"free-running trajectory's drift. Last full evaluation: "
             f"{timbre.get('accuracy_generated')} / {timbre.get('accuracy_generated_noise_robust')} free-running, "
             f"{rs.get('accuracy_generated')} / {rs.get('accuracy_generated_noise_robust')} one sample at a time.", "",
             "| instrument | free-running | one sample at a time |", "|---|---|---|"]
    for name, right in (rs.get("right_generated") or {}).items():
        n = sum((conf.get(name) or {}).values())
        lines.append(f"| {name} | {(conf.get(name) or {}).get(name, 0)} / {(robust.get(name) or {}).get(name, 0)} of {n} "
                     f"| {right} / {(rs.get('right_generated_noise_robust') or {}).get(name, 0)} of "
                     f"{(rs.get('notes') or {}).get(name, '-')} |")
    return lines


def envelope_table(env: dict) -> list[str]:
    """Markdown lines: each instrument's median level (dBFS) per window of a held note, real against generated,
    and the median shape error; empty without envelope curves."""
    curves = env.get("curves") or {}
    if not curves:
        return []
    w = env.get("window_s", 0.1)
    n = max(len(c["real_db"]) for c in curves.values())
    lines = ["", "## Level against time", "",
             f"Median level (dBFS, floored at -60) of each {w * 1000:.0f} ms window after key-down, held notes at "
             "velocity 90 with the preset's priming against the real notes; shape error = mean |difference| once "
             "each envelope's mean is removed (output gain does not count), median over the notes. Last full "
             "evaluation.", "",
             "| instrument | | shape error dB | " + " | ".join(f"{k * w:.1f} s" for k in range(n)) + " |",
             "|---" * (n + 3) + "|"]
    for name, c in curves.items():
        err = (env.get("per_instrument") or {}).get(name)
        for label, key in (("real", "real_db"), ("generated", "generated_db")):
            lines.append(f"| {name} | {label} | {err if label == 'generated' else ''} | "
                         + " | ".join(f"{x:.0f}" for x in c[key]) + " |")
    return lines


def write_card(out_dir: Path, cfg, meta: dict[str, Any]) -> None:
    """Model card: data, config, training time/steps, losses; evaluator figures from ``eval.json`` if present."""
    tr = meta.get("training", {})
    last = (tr.get("history") or [{}])[-1]
    ev_path = out_dir / "eval.json"
    ev = json.loads(ev_path.read_text()) if ev_path.is_file() else None
    opts = last.get("options", {})
    extra = opts.get("data_extra")  # train --data-extra folders of the latest run
    split = (f"; the latest run's split: {opts['train_notes']:,} training / {opts['eval_notes']} held-out notes"
             if "train_notes" in opts else "")
    lines = [
        "# Model card", "",
        f"- Config: R{cfg.residual_channels}/S{cfg.skip_channels}, {cfg.stacks} stacks x {cfg.layers_per_stack} "
        f"layers, receptive field {cfg.receptive_field} samples ({cfg.receptive_field / cfg.sample_rate * 1000:.0f} ms), "
        f"{cfg.sample_rate} Hz, {meta.get('n_params', 0):,} parameters.",
        f"- Conditioning: pitch embedding {cfg.conditioning.pitch_dim}, instrument embedding "
        f"{cfg.conditioning.instrument_dim}, velocity {cfg.conditioning.velocity}, local {list(cfg.conditioning.local)}.",
        f"- Instruments: {', '.join(cfg.conditioning.instruments)}.",
        f"- Data: {meta.get('dataset', {}).get('n_notes', '?')} notes from {meta.get('dataset', {}).get('source', '?')}"
        + (f"; the latest training run also trained on {', '.join(extra)} (--data-extra)" if extra else "")
        + split + (f", {', '.join(opts['instruments'])} only (--instruments)" if opts.get("instruments") else "")
        + ".",
        "- Training: " + training_time(tr) + ".",
    ]
    if last:
        lines.append("- Last eval: " + ", ".join(f"{k} {v:.3f}" for k, v in last.items()
                                                   if isinstance(v, float) and "hours" not in k))
    lines += ["", "## Quality against training time", "",
              f"`python -m models.evaluate --model {out_dir}/model.npz --log {out_dir}/eval_history.jsonl` "
              "after each hour of training "
              "(`--quick`: 3 pitches per instrument, 10 s stability); pitch with the preset's seed-bank "
              "re-priming / without; timbre = 1-NN instrument accuracy on generated notes, fitted on the real "
              "notes mu-law coded as the model learns them / on the clean real notes (rows before 2026-11-25 "
              "have only the clean figure) / noise-robust (the mu-law references also at white noise 30-15 dB "
              "below each note: a wrong spectral shape, not a noise floor; from 2026-12-06); "
              "period noise: the sampler's noise correlation one f0 period back "
              "(0 = independent; rows before 2026-12-04 had none); loop low-pass: the low-pass inside the "
              "feedback loop (realtime/kernel/loop_lowpass.py; 0 = off, rows before 2026-12-06 had none); "
              "silent windows: below -50 dBFS at the output, "
              "or, marked *, before the output stage's gain (the network's own scale, as the real notes are "
              "judged; the output is about 4.4 dB lower).", ""]
    hist_path = out_dir / "eval_history.jsonl"
    rows = [json.loads(x) for x in hist_path.read_text().splitlines() if x.strip()] if hist_path.is_file() else []
    if rows:
        lines += ["| hours | process-hours | steps | quick | temperature | period noise / loop low-pass "
                  "| pitch median cents (seed / none) "
                  "| within 50 c (seed / none) | timbre acc (mu-law / clean / noise-robust) "
                  "| silent windows (all / where the real note sounds) "
                  "| noise-like (tonal) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ps, pn = r.get("pitch_preset", {}), r.get("pitch_no_seedbank", {})
            st = r.get("stability", {})
            hours = r.get("hours") or 0
            lines.append(f"| {hours:.2f} | {r.get('core_hours') or hours:.2f} | {r.get('steps')} | {r.get('quick')} "
                         f"| {r.get('temperature', '-')} | {r.get('period_noise', 0.0)} / {r.get('loop_lowpass', 0.0)} "
                         f"| {ps.get('median_abs_cents')} / {pn.get('median_abs_cents')} "
                         f"| {ps.get('within_50_cents')} / {pn.get('within_50_cents')} "
                         f"| {timbre_cell(r.get('timbre', {}))} | {st.get('silent_fraction')} / "
                         f"{'n/a' if st.get('silent_where_real_sounds') is None else st['silent_where_real_sounds']}"
                         f"{' *' if 'stage_gain_db' in st else ''} "
                         f"| {st.get('noise_like_fraction_tonal')} |")
    else:
        lines.append("Not yet evaluated.")
    if ev is not None:
        from models.evaluate import without_notes

        lines += pitch_table(ev.get("pitch_preset", {}).get("notes") or [])
        lines += timbre_table(ev.get("timbre", {}).get("confusion") or {})
        lines += timbre_table(ev.get("timbre", {}).get("confusion_noise_robust") or {},
                              "What the noise-robust timbre classifier heard",
                              "the real instrument whose note, clean or with white noise 15-30 dB below it, was nearest")
        lines += resynthesis_table(ev.get("timbre", {}))
        lines += profile_table(ev.get("timbre", {}).get("profile_excess_db") or {})
        lines += envelope_table(ev.get("envelope") or {})
        lines += ["", "## Last full evaluation", "", "```json", json.dumps(without_notes(ev), indent=2), "```"]
    (out_dir / "MODEL.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.export", description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True, help="training checkpoint, e.g. models/default/ckpt.pt")
    ap.add_argument("--data", required=True, help="the dataset it was trained on (for the seed bank)")
    ap.add_argument("--out", required=True, help="model file to write (.npz)")
    ap.add_argument("--weights", choices=("averaged", "raw"), default="averaged",
                    help="the moving average of the weights (--weight-ema; default) or the last step's")
    a = ap.parse_args(argv)
    from models.dataset import DatasetError

    try:
        print(export_checkpoint(a.ckpt, a.data, a.out, a.weights))
    except (FileNotFoundError, ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
