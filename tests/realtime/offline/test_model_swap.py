"""Issue 40, model hot-swap offline: [swap] parsing and one-line errors; a CC or a program picks a slot; the
crossfade has no step larger than the notes' own; a held note keeps its f0 after the swap; a model that
fails to load is one line and the audio goes on; a take with a swap replays sample for sample."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from wnl_testutil import ROOT, small_model

from realtime.control.presets import PresetError, load_preset
from realtime.offline.render import Session, run_stream

SR = 16000


def models(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    small_model(seed=1).save(a)
    small_model(seed=2).save(b)
    return a, b


def swap_preset(tmp_path, model, slots, extra="", swap="cc = 20"):
    p = tmp_path / "swap.toml"
    quoted = ", ".join(f'"{s}"' for s in slots)
    p.write_text(f'[model]\npath = "{model}"\nreprime = "off"\n[sound]\nrelease_ms = 30.0\n{extra}\n'
                 f'[swap]\ncrossfade_ms = 40.0\nslots = [{quoted}]\n{swap}\n')
    return p


def render(preset_path, timeline, n, block=256, sink=None):
    session = Session.open(load_preset(preset_path))
    return session, run_stream(session, timeline, n, block, sink=sink)


def max_step(x):
    return float(np.max(np.abs(np.diff(x.astype(np.float64)))))


def test_swap_table_parses_and_bad_values_are_one_line(tmp_path):
    a, b = models(tmp_path)
    p = swap_preset(tmp_path, a, ["b.npz", str(tmp_path / "other.toml")])
    sw = load_preset(p).swap
    assert sw.slots == [str(b), str(tmp_path / "other.toml")]  # relative to the preset file
    assert (sw.crossfade_ms, sw.cc, sw.program_channel) == (40.0, 20, 0)
    bad = {"slots = 3\ncc = 20": "swap.slots: expected a list",
           "slots = []\ncc = 20": "swap.slots: empty",
           "slots = [\"b.npz\"]\ncc = 130": "swap.cc: must be 0 (none)",
           "slots = [\"b.npz\"]\ncc = 7": "swap.cc: CC 7 is bound to 'gain'",
           "slots = [\"b.npz\"]\nprogram_channel = 17": "swap.program_channel: must be",
           "slots = [\"b.npz\"]\ncrossfade_ms = -1.0": "swap.crossfade_ms: must be within 0-5000",
           "slots = [\"b.npz\"]\nkey = 1": "swap.key: unknown key"}
    for body, msg in bad.items():
        q = tmp_path / "bad.toml"
        q.write_text(f'[model]\npath = "{a}"\n[swap]\n{body}\n')
        with pytest.raises(PresetError) as e:
            load_preset(q)
        assert str(e.value).startswith(f"{q}: ") and msg in str(e.value) and "\n" not in str(e.value), e.value


def test_cc_swap_crossfades_without_a_click_and_is_logged(tmp_path):
    a, b = models(tmp_path)
    p = swap_preset(tmp_path, a, [str(a), str(b)])
    at = 8000
    tl = [(0, bytes([0x90, 60, 100])), (at, bytes([0xB0, 20, 127]))]
    session, y = render(p, tl, 20000)
    swaps = [e for e in session.events if e["param"] == "swap"]
    assert len(swaps) == 1 and swaps[0]["sample"] == at and swaps[0]["slot"] == 1
    assert swaps[0]["model"] == str(b.resolve()) and len(swaps[0]["sha256"]) == 64 and "midi" not in swaps[0]
    assert [e["param"] for e in session.events].count("swap_request") == 1
    assert session.model.path is not None and str(session.model.path).endswith("b.npz")  # adopted
    assert session.swapper.label == "b" and session.swapper.incoming is None
    fade = session.swapper.fade_len
    assert fade == 640
    # the notes' own steps: model a before the swap, model b (rendered alone, the same held note) after it
    _, yb = render(swap_preset(tmp_path, b, [str(a)], swap="cc = 20"), [(0, bytes([0x90, 60, 100]))], 20000)
    own = max(max_step(y[2000:at]), max_step(yb[2000:20000]))
    around = max_step(y[at - 256:at + fade + 256])
    print(f"\nswap: largest step around the crossfade {around:.4f}, the notes' own {own:.4f}")
    assert around <= own
    assert np.sqrt(np.mean(y[at + fade:] ** 2)) > 0.3 * np.sqrt(np.mean(y[2000:at] ** 2))  # the note goes on
    # the same CC value again: no second load
    session2, _ = render(p, tl + [(12000, bytes([0xB0, 20, 120]))], 14000)
    assert [e["param"] for e in session2.events].count("swap") == 1


def test_program_on_the_swap_channel_picks_a_slot_other_channels_keep_instruments(tmp_path):
    a, b = models(tmp_path)
    p = swap_preset(tmp_path, a, [str(a), str(b)], swap="program_channel = 16")
    tl = [(0, bytes([0xC0, 1])), (0, bytes([0x90, 60, 100])), (4000, bytes([0xCF, 1])), (6000, bytes([0xCF, 9]))]
    session, _ = render(p, tl, 8000)
    params = [(e["param"], e["sample"]) for e in session.events]
    assert ("swap", 4000) in params and [x for x, _ in params].count("swap") == 1  # program 9 > slots: ignored
    assert any(e["param"] == "instrument" and e["sample"] == 0 for e in session.events)  # channel 1: as before


def test_held_note_keeps_its_f0_after_the_swap(tmp_path):
    """The shipped model plays A3 (220 Hz); the swap goes to the same model with another seed and temperature
    (a preset slot), so only a held note replayed at its pitch keeps the f0."""
    model = ROOT / "models" / "default" / "model.npz"
    other = tmp_path / "other.toml"
    other.write_text(f'name = "other"\n[model]\npath = "{model}"\nseed = 7\ntemperature = 0.7\n'
                     'reprime = "off"\n')
    p = swap_preset(tmp_path, model, [str(other)], extra="[midi]\nchannel = 0\n", swap="cc = 20")
    at, n = 16000, 40000
    session, y = render(p, [(0, bytes([0x90, 57, 100])), (at, bytes([0xB0, 20, 127]))], n, block=512)
    assert session.swapper.label == "other" and session.preset.model.seed == 7

    def f0(x):
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[len(x) - 1:]
        lo, hi = SR // 600, SR // 80
        return SR / (lo + int(np.argmax(ac[lo:hi])))

    before, after = f0(y[at - 6000:at]), f0(y[at + 8000:at + 14000])
    print(f"\nf0 before the swap {before:.1f} Hz, after {after:.1f} Hz (A3 = 220 Hz)")
    assert abs(before - 220) < 220 * 0.03 and abs(after - 220) < 220 * 0.03
    level = [np.sqrt(np.mean(y[a:a + 6000] ** 2)) for a in (at - 6000, at + 8000)]
    assert level[1] > 0.3 * level[0]
    # no click: the largest step around the crossfade is no larger than the note's own, before and after it
    fade = session.swapper.fade_len
    own = max(max_step(y[2000:at]), max_step(y[at + fade:n]))
    around = max_step(y[at - 512:at + fade + 512])
    # the same swap cut hard (crossfade_ms = 0), for comparison
    p0 = swap_preset(tmp_path, model, [str(other)], swap="cc = 20").read_text().replace("crossfade_ms = 40.0",
                                                                                       "crossfade_ms = 0.0")
    (tmp_path / "cut.toml").write_text(p0)
    _, cut = render(tmp_path / "cut.toml", [(0, bytes([0x90, 57, 100])), (at, bytes([0xB0, 20, 127]))], at + 2000,
                    block=512)
    print(f"largest step around the crossfade {around:.4f}, the note's own {own:.4f}, a hard cut's "
          f"{abs(float(cut[at]) - float(cut[at - 1])):.4f}")
    assert around <= own


def test_a_model_that_fails_to_load_is_one_line_and_the_audio_goes_on(tmp_path):
    a, _ = models(tmp_path)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    p = swap_preset(tmp_path, a, [str(tmp_path / "missing.npz"), str(broken)])
    said = []
    session = Session.open(load_preset(p), say=said.append)
    tl = [(0, bytes([0x90, 60, 100])), (4000, bytes([0xB0, 20, 0])), (6000, bytes([0xB0, 20, 10])),
          (8000, bytes([0xB0, 20, 127]))]
    y = run_stream(session, tl, 16000, 256)
    assert len(said) == 2 and all("\n" not in m for m in said), said
    assert said[0].startswith(f"swap: cannot load {tmp_path / 'missing.npz'}: file not found; playing on with a")
    assert said[1].startswith(f"swap: cannot load {broken}: ") and said[1].endswith("; playing on with a")
    assert not [e for e in session.events if e["param"] == "swap"]
    tail = y[8000:]
    assert np.sqrt(np.mean(tail ** 2)) > 0.3 * np.sqrt(np.mean(y[2000:4000] ** 2))  # still playing
    assert max_step(y[3500:9000]) <= max_step(y[1000:3500]) * 1.5  # and nothing happened to it


def test_a_render_with_a_swap_replays_sample_for_sample(tmp_path):
    """render --out FOLDER with a MIDI file whose CC swaps the model mid-note; replay loads that model at the
    logged sample and reproduces the take; a changed model file is a one-line error."""
    import mido

    a, b = models(tmp_path)
    p = swap_preset(tmp_path, a, [str(a), str(b)])
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [mido.Message("note_on", note=60, velocity=100, time=0),
           mido.Message("control_change", control=20, value=127, time=240),
           mido.Message("note_on", note=64, velocity=90, time=240),
           mido.Message("control_change", control=20, value=0, time=240),
           mido.Message("note_off", note=64, velocity=0, time=240),
           mido.Message("note_off", note=60, velocity=0, time=240)]
    mid.save(tmp_path / "swap.mid")
    take = tmp_path / "take"
    from wnl_testutil import run_cli

    r = run_cli("render", "--preset", str(p), "--midi", str(tmp_path / "swap.mid"), "--out", str(take),
                "--samplerate", "48000", "--block", "300")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    assert [e["slot"] for e in evs if e["param"] == "swap"] == [1, 0]
    out = tmp_path / "replay.wav"
    r = run_cli("replay", str(take), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["matches_recording"] is True
    rec, _ = sf.read(str(take / "audio.wav"), dtype="float32")
    rep, _ = sf.read(str(out), dtype="float32")
    np.testing.assert_array_equal(rep, rec)
    small_model(seed=3).save(b)  # the swapped-to model changed since the take
    r = run_cli("replay", str(take), "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"model file {b.resolve()} changed since the recording" in r.stderr


def test_polyphonic_held_notes_carry_over_and_a_preset_slot_brings_its_effects(tmp_path):
    """Four voices, two notes held on two channels: after the swap the new session holds both (its voices busy,
    same notes), and a preset slot with an effect chain plays through its chain; the take replays exactly."""
    a, b = models(tmp_path)
    slot = tmp_path / "fx.toml"
    slot.write_text(f'name = "fx"\n[model]\npath = "{b}"\nreprime = "off"\n[sound]\nvoices = 4\n'
                    '[[effects]]\ntype = "Gain"\ngain_db = -6.0\n')
    p = swap_preset(tmp_path, a, [str(slot)], extra="voices = 4\n", swap="cc = 20")
    tl = [(0, bytes([0x90, 60, 100])), (100, bytes([0x91, 67, 90])), (6000, bytes([0xB0, 20, 100])),
          (12000, bytes([0x80, 60, 0]))]
    session, y = render(p, tl, 16000)
    assert session.swapper.label == "fx" and session.effects is not None and session.effects.describe() == "fx Gain"
    ctl = session.controller
    assert session.engine.n_voices == 4
    held = [divmod(v.note, 128) for v in ctl.alloc.voices if v.state == "held"]  # (channel - 1, note)
    assert held == [(1, 67)], held  # channel 2's note 67 still held; 60 was carried over too, then released
    assert np.sqrt(np.mean(y[8000:12000] ** 2)) > 0.1 * np.sqrt(np.mean(y[2000:6000] ** 2))
    # replay: the same timeline and the logged swap reproduce it
    from realtime.offline.replay import replay_timeline

    swap_ev = next(e for e in session.events if e["param"] == "swap")
    midi = [(e["sample"], bytes(e["midi"])) for e in session.events if "midi" in e]
    again = Session.open(load_preset(p))  # a replay's timeline has no trigger (not logged as MIDI): the logged swap
    y2 = run_stream(again, replay_timeline([*[{"sample": s, "midi": list(m)} for s, m in midi], swap_ev]), 16000, 300)
    np.testing.assert_array_equal(y2, y)
