"""Issue 40, model hot-swap live under a real JACK server: a CC swaps the model while a note is held; the new
model is built off the audio path and crossfaded in with no underrun, the JACK capture stays continuous, the
status line names the model, a slot that fails to load is one line and the note plays on, and the take
replays sample for sample (the swap logged at the sample its crossfade began)."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import soundfile as sf
from live_rig import live_rig, write_preset
from test_host_jack import _run, sharp_random_model

pytestmark = [pytest.mark.jack, pytest.mark.slow]
NAME = "wnl-swap"


def other_model(path):
    """A second random model (another seed, the same shape as sharp_random_model's)."""
    return sharp_random_model(path, seed=5)


def swap_preset(tmp):
    a, b = sharp_random_model(tmp / "first.npz"), other_model(tmp / "second.npz")
    p = write_preset(tmp / "swap.toml", a, name="swap-test", extra=f"""[swap]
crossfade_ms = 50.0
cc = 20
slots = ["{a}", "{b}", "{tmp / 'missing.npz'}"]
""")
    return p, b


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def test_swap_while_a_note_is_held_no_underrun_continuous_and_replays(jack_server, tmp_path):
    take = tmp_path / "take"
    preset, second = swap_preset(tmp_path)
    with live_rig(NAME, preset, take=take) as (proc, kbd, cap):
        on = cap.frame_time()
        kbd.send_message([0x90, 60, 110])
        time.sleep(1.0)
        kbd.send_message([0xB0, 20, 64])   # slot 2: the second model, while the note is held
        time.sleep(2.0)
        kbd.send_message([0xB0, 20, 127])  # slot 3: a missing file -> one line, the note plays on
        time.sleep(1.5)
        off = cap.frame_time()
        kbd.send_message([0x80, 60, 0])
        time.sleep(0.3)
        rc = proc.stop(signal.SIGINT, timeout=60)
        y, rate = cap.recorded().copy(), cap.rate
        i_on, i_off = cap.index_of_frame(on), cap.index_of_frame(off)
        gaps = cap.gaps()
    assert rc == 0, proc.err[-10:]
    s = proc.summary()
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    swaps = [e for e in evs if e["param"] == "swap"]
    assert len(swaps) == 1 and swaps[0]["slot"] == 1 and swaps[0]["model"] == str(second.resolve()), swaps
    req = next(e for e in evs if e["param"] == "swap_request" and e["value"] == 1)
    load_ms = 1000.0 * (swaps[0]["sample"] - req["sample"]) / 16000
    failed = [ln for ln in proc.err if "swap: cannot load" in ln]
    assert len(failed) == 1 and "missing.npz: file not found; playing on with second" in failed[0], proc.err[-8:]
    assert any("model first" in ln for ln in proc.err) and any("model second" in ln for ln in proc.err)
    # the JACK capture: continuous, the note sounding through both swaps (10 ms windows)
    win = int(0.01 * rate)
    held = y[i_on + int(0.1 * rate):i_off]
    levels = [rms_db(held[k:k + win]) for k in range(0, len(held) - win, win)]
    # the take: the largest sample step around the crossfade against the note's own, before and after
    audio, r = sf.read(str(take / "audio.wav"), dtype="float32")
    at = swaps[0]["device_frame"]
    fade = int(0.05 * r)
    step = np.abs(np.diff(audio.astype(np.float64)))
    around = step[at - 256:at + fade + 256].max()
    own = max(step[at - int(0.8 * r):at - 256].max(), step[at + fade + 256:at + int(1.5 * r)].max())
    print(f"\nswap live: load + handover {load_ms:.0f} ms after the CC, underruns {s['underruns']} (PortAudio "
          f"underflow flags {s['pa_underflows']}), capture gaps "
          f"{gaps}, quietest 10 ms while held {min(levels):.1f} dB (median {np.median(levels):.1f}); largest step "
          f"around the crossfade {around:.3f}, the note's own {own:.3f}; failed slot: {failed[0].strip()}")
    print("\n".join(ln[:100] for ln in proc.err if "|" in ln))
    # the ring never ran dry (PortAudio's underflow flags also count JACK xruns of any
    # client on this loaded machine, e.g. the capture's own missed cycles: printed, not judged)
    assert s["underruns"] == 0
    # (capture gaps are cycles the test's own JACK client missed on this loaded machine: printed, not judged)
    assert min(levels) > np.median(levels) - 20 and min(levels) > -50
    assert around <= own
    assert 0 < load_ms < 5000
    held_take = audio[swaps[0]["device_frame"] - int(0.8 * r):swaps[0]["device_frame"] + int(1.5 * r)]
    take_levels = [rms_db(held_take[k:k + win]) for k in range(0, len(held_take) - win, win)]
    assert min(take_levels) > np.median(take_levels) - 20  # the recorded stream too: no hole at the swap
    r2 = _run(["replay", str(take), "--out", str(tmp_path / "replay.wav")], timeout=300)
    assert r2.returncode == 0, r2.stderr
    replayed, _ = sf.read(str(tmp_path / "replay.wav"), dtype="float32")
    np.testing.assert_array_equal(replayed, audio)


def test_shipped_model_swap_to_the_reverb_preset_while_a_note_is_held(jack_server, tmp_path):
    """presets/swap.toml as the README plays it: the shipped model, CC 16 to the reverb preset's slot while a
    note is held (both sessions run the crossfade on the generator thread): no ring underrun, the note goes on."""
    take = tmp_path / "take"
    with live_rig(f"{NAME}2", "presets/swap.toml", take=take, playing_timeout=300, capture_seconds=20.0,
                  record=False) as (proc, kbd, _cap):
        kbd.send_message([0x90, 57, 100])
        time.sleep(1.5)
        kbd.send_message([0xB0, 16, 127])  # the second slot: presets/reverb.toml
        time.sleep(3.0)
        kbd.send_message([0x80, 57, 0])
        time.sleep(0.3)
        rc = proc.stop(signal.SIGINT, timeout=60)
    assert rc == 0, proc.err[-10:]
    s = proc.summary()
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    swaps = [e for e in evs if e["param"] == "swap"]
    assert len(swaps) == 1 and swaps[0]["value"] == "reverb", ([e["param"] for e in evs], proc.err[-6:])
    req = next(e for e in evs if e["param"] == "swap_request")
    audio, r = sf.read(str(take / "audio.wav"), dtype="float32")
    at = swaps[0]["device_frame"]
    before, after = rms_db(audio[at - int(0.5 * r):at]), rms_db(audio[at + int(0.5 * r):at + int(1.0 * r)])
    print(f"\nshipped model swap: load + handover {1000.0 * (swaps[0]['sample'] - req['sample']) / 16000:.0f} ms, "
          f"underruns {s['underruns']}, RTF {s['rtf']}, level before {before:.1f} dB, after {after:.1f} dB")
    assert s["underruns"] == 0
    assert after > before - 12
