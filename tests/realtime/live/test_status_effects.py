"""The live status line names the effect chain (issue 40), right after the time, and keeps it at 80 columns."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from realtime.live.host import HostStats, LiveHost
from realtime.live.status import format_status
from realtime.sound.effects import EffectChain


def stats(effects: str) -> HostStats:
    return HostStats(instrument="strings", note=60, temperature=0.5, seconds=12.3, underruns=0, latency_ms=58,
                     midi="wnl-midi:midi_in 128:0", rtf=3.7, ring_ms=38, lead_ms=40, samplerate=48000,
                     priority="SCHED_FIFO 3", effects=effects)


@pytest.mark.parametrize("chain", [["Reverb"], ["Delay", "Reverb"], ["LadderFilter", "Chorus", "Reverb"]])
def test_the_chain_follows_the_time_and_fits_80_columns(chain):
    fx = EffectChain([{"type": k} for k in chain], 16000)
    text = fx.describe()
    assert text == "fx " + ">".join(chain)
    session = SimpleNamespace(effects=fx, engine=SimpleNamespace(sample_rate=16000))
    assert LiveHost(session).snapshot().effects == text
    line = format_status(stats(text), 80)
    assert len(line) <= 80 and line.startswith(f"strings C4 T=0.50 | 12.3s | {text} | underruns 0")
    assert text in format_status(stats(text))  # and in the log line (no width)


def test_no_chain_no_mention():
    assert "fx" not in format_status(stats(""), 80)
    assert LiveHost(SimpleNamespace(engine=SimpleNamespace(sample_rate=16000))).snapshot().effects == ""
