"""Two MIDI channels at once, live under JACK (issue 39): the default preset's model and General MIDI map with
a pool of 4 voices, played from a JACK MIDI keyboard on channels 1 (piano) and 2 (flute) together, recorded."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf
from test_host_jack import LiveProcess
from test_record_jack import keyboard

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def test_two_channels_sound_together_live(jack_server, tmp_path):
    name = "wnl-parts"
    preset = tmp_path / "parts.toml"
    preset.write_text('name = "parts"\n[sound]\nvoices = 4\n')  # everything else from presets/default.toml
    take = tmp_path / "take"
    proc = LiveProcess(["--preset", str(preset), "--virtual-midi", "--midi-api", "jack", "--client-name", name,
                        "--record", str(take), "--seconds", "60"])
    kbd = patch = None
    try:
        proc.wait_for_line("playing", timeout=240)
        kbd, patch = keyboard(name)
        time.sleep(0.5)
        for msg in ([0xC0, 0], [0xC1, 73]):  # channel 1: piano (GM 1), channel 2: flute (GM 74)
            kbd.send_message(msg)
        time.sleep(0.2)
        kbd.send_message([0x90, 60, 100])
        kbd.send_message([0x91, 72, 100])
        time.sleep(1.5)
        kbd.send_message([0x80, 60, 0])
        kbd.send_message([0x81, 72, 0])
        time.sleep(0.3)
        kbd.send_message([0xC2, 56])  # channel 3: brass, which the model lacks: said once
        kbd.send_message([0xC2, 57])
        time.sleep(0.8)
    finally:
        if patch is not None:
            patch.close()
        proc.stop()
        if kbd is not None:
            kbd.close_port()
    assert proc.rc == 0, proc.err[-20:]
    assert sum("program 56 (brass): the model has no brass; plays lead" in line for line in proc.err) == 1
    evs = [json.loads(x) for x in (take / "events.jsonl").read_text().splitlines()]
    ons = [e for e in evs if e.get("param") == "note_on"]
    offs = [e for e in evs if e.get("param") == "note_off"]
    assert sorted((e["channel"], e["instrument"]) for e in ons) == [(1, "piano"), (2, "flute")]
    assert len({e["voice"] for e in ons}) == 2  # two voices ...
    assert max(e["sample"] for e in ons) < min(e["sample"] for e in offs)  # ... sounding at once
    audio, rate = sf.read(str(take / "audio.wav"), dtype="float32")
    both_from = max(e["device_frame"] for e in ons) + int(0.1 * rate)
    both_to = min(e["device_frame"] for e in offs)
    before = min(e["device_frame"] for e in ons)
    rms = float(10 * np.log10(np.mean(audio[both_from:both_to] ** 2) + 1e-20))
    quiet = float(10 * np.log10(np.mean(audio[max(0, before - int(0.2 * rate)):before] ** 2) + 1e-20))
    print(f"\ntwo channels live: {len(ons)} notes on voices {sorted(e['voice'] for e in ons)}, RMS while both "
          f"sound {rms:.1f} dBFS over {(both_to - both_from) / rate:.2f} s, before them {quiet:.1f} dBFS")
    assert both_to - both_from > 1.0 * rate
    assert rms > -45.0 and rms > quiet + 20.0
