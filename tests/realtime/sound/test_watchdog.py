"""The watchdog: each collapse condition is detected, recovered from, counted and logged."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import small_model, write_preset

from realtime.control.presets import WatchdogSection, load_preset
from realtime.model import mulaw
from realtime.model.model_file import load_model
from realtime.offline.render import Session, render_timeline
from realtime.sound.watchdog import Watchdog

SR = 16000


def feed(dog: Watchdog, x: np.ndarray, held: bool = True, noise_ok: bool = False, block: int = 160,
         decay_ok: bool = False):
    reasons = []
    for i in range(0, len(x), block):
        r = dog.check(x[i:i + block], 0, held, noise_ok, decay_ok)
        if r:
            reasons.append((i, r))
    return reasons


def sine(seconds: float, hz: float = 220.0, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def test_a_healthy_tone_is_left_alone():
    assert feed(Watchdog(WatchdogSection(), SR), sine(5.0)) == []


def test_silence_while_held_is_caught_after_silence_s():
    dog = Watchdog(WatchdogSection(silence_s=0.4, dropout_s=0.0), SR)  # the slow rule alone
    x = np.concatenate([sine(0.5), np.zeros(SR, np.float32)])
    reasons = feed(dog, x)
    assert reasons and reasons[0][1] == "silence"
    detected = reasons[0][0] + 160  # end of the block that completed the last silent window
    assert 0.5 * SR + 0.4 * SR <= detected <= 0.5 * SR + 0.55 * SR


def test_silence_without_a_note_is_fine():
    assert feed(Watchdog(WatchdogSection(), SR), np.zeros(2 * SR, np.float32), held=False) == []


def test_noise_is_caught_except_for_noise_instruments():
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 2 * SR).astype(np.float32)
    assert feed(Watchdog(WatchdogSection(), SR), noise)[0][1] == "noise"
    assert feed(Watchdog(WatchdogSection(), SR), noise, noise_ok=True) == []


def test_dc_drift_is_caught_with_or_without_a_note():
    x = sine(1.0, amp=0.1) + np.float32(0.5)
    assert feed(Watchdog(WatchdogSection(), SR), x, held=False)[0][1] == "dc"


def test_nonfinite_is_caught_at_once():
    dog = Watchdog(WatchdogSection(), SR)
    assert dog.check(np.zeros(10, np.float32), 1, False, False) == "nonfinite"
    assert dog.check(np.array([0.0, np.nan], np.float32), 1, False, False) == "nonfinite"
    assert dog.total == 2


def session_with(tmp_path, bias_class: int | None = None, temperature: float = 0.9):
    model = small_model()
    if bias_class is not None:  # a model that collapses onto one class
        model.weights["b_out2"][:] = -50.0
        model.weights["b_out2"][bias_class] = 50.0
    path = model.save(tmp_path / "m.npz")
    preset = load_preset(write_preset(tmp_path / "p.toml", path, f"temperature = {temperature}"))
    return Session.open(preset, load_model(path))


@pytest.mark.parametrize("klass,reason", [(mulaw.SILENCE, "dropout"), (255, "dc")])
def test_collapsing_model_is_recovered_and_logged(tmp_path, klass, reason):
    s = session_with(tmp_path, klass)
    out = render_timeline(s, [(0, bytes([0x90, 60, 100]))], 3 * SR)
    rec = [e for e in s.events if e["param"] == "recovery"]
    assert rec and all(e["value"] == reason for e in rec)
    assert rec[-1]["count"] == len(rec) == s.watchdog.total
    assert np.isfinite(out).all() and np.abs(out).max() <= 0.98


def test_injected_nan_is_recovered(tmp_path):
    s = session_with(tmp_path)
    s.apply_midi(bytes([0x90, 60, 100]))
    out = np.zeros(1600, np.float32)
    s.generate(out)
    b = s.engine.kernel_array("b_out2")  # the output bias the kernel reads
    saved = b[7]
    b[7] = np.nan  # poison the logits for one block
    s.generate(out)
    assert np.isfinite(out).all()
    b[7] = saved
    assert [e["value"] for e in s.events if e["param"] == "recovery"] == ["nonfinite"]
    before = s.engine.nonfinite_count
    assert before > 0
    s.generate(out)
    assert s.engine.nonfinite_count == before and np.isfinite(out).all()


def decaying(seconds: float, db_per_s: float, start_db: float = -20.0, hz: float = 220.0) -> np.ndarray:
    """A sine whose level falls ``db_per_s`` from ``start_db`` (dBFS RMS): a plucked string's natural decay."""
    t = np.arange(int(seconds * SR)) / SR
    amp = np.sqrt(2.0) * 10 ** ((start_db - db_per_s * t) / 20.0)
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("block", [64, 160, 1024])
def test_a_dropout_is_caught_within_dropout_s(block):
    """A loud held tone that cuts out is re-primed ~50 ms later, not after silence_s (0.4 s)."""
    dog = Watchdog(WatchdogSection(dropout_s=0.05), SR)
    x = np.concatenate([sine(0.5), np.zeros(SR, np.float32)])
    reasons = feed(dog, x, block=block)
    assert reasons and reasons[0][1] == "dropout"
    detected = reasons[0][0] + block
    assert 0.5 * SR + 0.05 * SR <= detected <= 0.5 * SR + 0.075 * SR + block


def test_a_natural_decay_is_not_a_dropout():
    """20 dB/s from -20 dBFS crosses -50 dBFS at 1.5 s: only the slow silence rule speaks, 0.4 s later."""
    reasons = feed(Watchdog(WatchdogSection(), SR), decaying(3.0, 20.0))
    assert reasons and reasons[0][1] == "silence"
    assert reasons[0][0] >= 1.8 * SR  # (then, not re-primed, the note has not sounded since: dropouts)


def test_a_fade_within_the_lookback_is_a_dropout_and_a_quiet_tone_is_not():
    # -20 dBFS to silence in 100 ms (300 dB/s): a collapse; a tone that was never above -40 dBFS is not
    # loud enough (dropout_db 15 above -50) for the fast rule
    fast = np.concatenate([sine(0.5), decaying(0.6, 300.0)])
    assert feed(Watchdog(WatchdogSection(), SR), fast)[0][1] == "dropout"
    quiet = np.concatenate([sine(0.5, amp=0.01 * np.sqrt(2)), np.zeros(SR, np.float32)])
    assert feed(Watchdog(WatchdogSection(), SR), quiet)[0][1] == "silence"


def test_a_note_that_never_sounds_is_a_dropout_after_the_hold_off():
    dog = Watchdog(WatchdogSection(dropout_s=0.05), SR)
    dog.note_started()
    reasons = feed(dog, np.zeros(SR, np.float32))
    assert reasons and reasons[0][1] == "dropout"
    detected = reasons[0][0] + 160
    assert (Watchdog.hold_off_s + 0.05) * SR <= detected <= (Watchdog.hold_off_s + 0.1) * SR


def test_decay_ok_instruments_may_fall_silent_but_not_stay_unsounded():
    dog = Watchdog(WatchdogSection(), SR)
    dog.note_started()
    x = np.concatenate([sine(0.5), np.zeros(2 * SR, np.float32)])  # a hit, then its silence
    assert feed(dog, x, noise_ok=True, decay_ok=True) == []
    dog.note_started()  # the next hit never comes: re-primed once the hold-off and dropout_s have passed
    reasons = feed(dog, np.zeros(SR, np.float32), noise_ok=True, decay_ok=True)
    assert reasons and reasons[0][1] == "dropout" and reasons[0][0] + 160 <= (Watchdog.hold_off_s + 0.1) * SR


def test_dropout_s_zero_turns_the_fast_rule_off():
    x = np.concatenate([sine(0.5), np.zeros(SR, np.float32)])
    assert {r for _, r in feed(Watchdog(WatchdogSection(dropout_s=0.0), SR), x)} == {"silence"}


@pytest.mark.parametrize("decay_ok,exempt", [("", False), ("a", True), ("b, a", True), ("b", False)])
def test_a_session_tells_the_watchdog_whether_its_instrument_may_decay(tmp_path, monkeypatch, decay_ok, exempt):
    """decay_ok names instruments of the model; a Session playing instrument "a" passes whether it is one."""
    path = small_model().save(tmp_path / "m.npz")
    preset = load_preset(write_preset(tmp_path / "p.toml", path, f'[watchdog]\ndecay_ok = "{decay_ok}"'))
    s = Session.open(preset, load_model(path))
    seen = []
    check = Watchdog.check
    monkeypatch.setattr(Watchdog, "check", lambda self, *a: seen.append(a[4]) or check(self, *a))
    s.apply_midi(bytes([0xC0, 0]))
    render_timeline(s, [(0, bytes([0x90, 60, 100]))], SR // 4)
    assert seen and set(seen) == {exempt}
