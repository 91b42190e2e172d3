"""Fuzzing the MIDI byte parser and the controller with random and malformed streams.

Streams are built from a known list of valid messages with garbage inserted
between (and, for bytes that may appear anywhere, inside) them; the parser
must return exactly the valid list and count exactly the dropped bytes and
skipped SysEx messages, however the stream is split into chunks.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from realtime.control.midi_parse import MidiParser
from realtime.sound.output_stage import GAIN_T

CHANNEL_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
REALTIME_OK = (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF)   # skipped silently, anywhere
REALTIME_BAD = (0xF9, 0xFD)                          # undefined: dropped, anywhere
NON_BYTES = (256, 1000, -1, -200, 1.5, 60.0, "x", "7", None, True, False, float("inf"), float("nan"), b"\x90", [1])


def parse_all(chunks) -> tuple[list[list[int]], MidiParser]:
    p = MidiParser()
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    return out, p


def split(stream: list, rng: random.Random) -> list[list]:
    """Cut a stream into random chunks (sizes 0-8, single bytes included)."""
    chunks, i = [], 0
    while i < len(stream):
        n = rng.choice((0, 1, 1, 2, 3, 5, 8))
        chunks.append(stream[i:i + n])
        i += n
    return chunks


def random_message(rng: random.Random) -> list[int]:
    if rng.random() < 0.85:
        hi = rng.choice(list(CHANNEL_LEN))
        return [hi | rng.randrange(16)] + [rng.randrange(128) for _ in range(CHANNEL_LEN[hi])]
    st = rng.choice(list(COMMON_LEN))
    return [st] + [rng.randrange(128) for _ in range(COMMON_LEN[st])]


def build_stream(rng: random.Random, n_msgs: int, garbage: float = 0.5, anywhere: float = 0.05):
    """A stream holding ``msgs`` (valid, some with running status) with garbage between them.

    Returns (stream, msgs, dropped, sysex): the exact expected parser results.
    Garbage between messages is modelled with its effect on running status and
    whether the parser is left mid-message/mid-SysEx (then the next byte fed
    must be a status byte). Bytes that may go anywhere are added afterwards.
    """
    stream: list = []
    msgs: list[list[int]] = []
    dropped = sysex = 0
    running = None   # the parser's running status
    dirty = False    # a partial message or an unterminated SysEx is pending
    in_sysex = False

    def data(n):
        return [rng.randrange(128) for _ in range(n)]

    for i in range(n_msgs):
        while rng.random() < garbage:
            kind = rng.randrange(9)
            if kind == 0:  # complete SysEx, any length (often long), maybe empty
                stream += [0xF0] + data(rng.choice((0, 1, 5, 300))) + [0xF7]
                sysex, running, dirty = sysex + 1, None, False
            elif kind == 1:  # unterminated SysEx: ended by the next status byte
                stream += [0xF0] + data(rng.randrange(20))
                sysex, running, dirty = sysex + 1, None, True
                in_sysex = True
                continue
            elif kind == 2 and not in_sysex:  # stray EOX (in a SysEx it would end the SysEx)
                stream.append(0xF7)
                dropped, running, dirty = dropped + 1, None, False
            elif kind == 3:  # undefined system common, then orphan data bytes (no running status)
                n = rng.randrange(4)
                stream += [rng.choice((0xF4, 0xF5))] + data(n)
                dropped, running, dirty = dropped + 1 + n, None, False
            elif kind == 4:  # truncated channel message (explicit status)
                hi = rng.choice(list(CHANNEL_LEN))
                n = rng.randrange(CHANNEL_LEN[hi])
                stream += [hi | rng.randrange(16)] + data(n)
                dropped, running, dirty = dropped + 1 + n, stream[-1 - n], True
            elif kind == 5 and running is not None and not dirty and CHANNEL_LEN[running & 0xF0] == 2:
                stream += data(1)  # truncated running-status message: only the data byte is lost
                dropped, dirty = dropped + 1, True
            elif kind == 6:  # truncated system common
                st = rng.choice((0xF1, 0xF2, 0xF3))
                n = rng.randrange(COMMON_LEN[st])
                stream += [st] + data(n)
                dropped, running, dirty = dropped + 1 + n, None, True
            elif kind == 7 and not dirty and running is None:  # orphan data bytes
                n = rng.randrange(1, 4)
                stream += data(n)
                dropped += n
            elif kind == 8:  # SysEx interrupted by another SysEx
                stream += [0xF0] + data(rng.randrange(5)) + [0xF0] + data(rng.randrange(5)) + [0xF7]
                sysex, running, dirty = sysex + 2, None, False
            else:
                continue
            in_sysex = False
        m = random_message(rng)
        if running is not None and rng.random() < 0.5:  # same status again: running status can be used
            m = [running] + data(CHANNEL_LEN[running & 0xF0])
        if m[0] < 0xF0 and m[0] == running and not dirty and rng.random() < 0.8:
            stream += m[1:]  # running status
        else:
            stream += m
        running = m[0] if m[0] < 0xF0 else None
        dirty = in_sysex = False
        msgs.append(m)

    # bytes that may appear anywhere: inside messages, inside SysEx, between
    out: list = []
    for b in stream:
        while rng.random() < anywhere:
            g = rng.choice((REALTIME_OK, REALTIME_BAD, NON_BYTES))
            out.append(rng.choice(g))
            if g is not REALTIME_OK:
                dropped += 1
        out.append(b)
    return out, msgs, dropped, sysex


# --------------------------------------------------------------------- parser: exact cases
CASES = {
    # name: (stream, messages, dropped, sysex)
    "note": ([0x90, 60, 100], [[0x90, 60, 100]], 0, 0),
    "running status": ([0x90, 60, 100, 62, 90, 64, 0], [[0x90, 60, 100], [0x90, 62, 90], [0x90, 64, 0]], 0, 0),
    "running status 1-byte": ([0xC3, 5, 6, 7], [[0xC3, 5], [0xC3, 6], [0xC3, 7]], 0, 0),
    "realtime inside 3-byte": ([0x90, 0xF8, 60, 0xFE, 100, 0xFF], [[0x90, 60, 100]], 0, 0),
    "realtime keeps running status": ([0x90, 60, 100, 0xF8, 62, 0xFA, 90], [[0x90, 60, 100], [0x90, 62, 90]], 0, 0),
    "undefined realtime inside": ([0x90, 0xF9, 60, 0xFD, 100], [[0x90, 60, 100]], 2, 0),
    "data without status": ([60, 100, 0x90, 60, 100], [[0x90, 60, 100]], 2, 0),
    "truncated then new status": ([0x90, 60, 0x80, 60, 0], [[0x80, 60, 0]], 2, 0),
    "truncated running status": ([0x90, 60, 100, 62, 0xB0, 7, 99], [[0x90, 60, 100], [0xB0, 7, 99]], 1, 0),
    "stray EOX ends a message": ([0x90, 60, 0xF7, 100], [], 4, 0),
    "stray EOX ends running status": ([0x90, 60, 100, 0xF7, 62, 90], [[0x90, 60, 100]], 3, 0),
    "F4 F5 undefined": ([0xF4, 0xF5, 0x90, 60, 100], [[0x90, 60, 100]], 2, 0),
    "F4 ends a message": ([0x90, 60, 0xF4, 100], [], 4, 0),
    "tune request cancels running": ([0x90, 60, 100, 0xF6, 62, 90], [[0x90, 60, 100], [0xF6]], 2, 0),
    "system common": ([0xF2, 1, 2, 0xF1, 3, 0xF3, 4], [[0xF2, 1, 2], [0xF1, 3], [0xF3, 4]], 0, 0),
    "sysex": ([0xF0, 1, 2, 3, 0xF7, 0x90, 60, 100], [[0x90, 60, 100]], 0, 1),
    "empty sysex": ([0xF0, 0xF7], [], 0, 1),
    "sysex cancels running status": ([0x90, 60, 100, 0xF0, 1, 0xF7, 62, 90], [[0x90, 60, 100]], 2, 1),
    "sysex interrupted by status": ([0xF0, 1, 2, 0x90, 60, 100], [[0x90, 60, 100]], 0, 1),
    "sysex interrupted by sysex": ([0xF0, 1, 0xF0, 2, 0xF7], [], 0, 2),
    "sysex interrupts a message": ([0x90, 60, 0xF0, 1, 0xF7], [], 2, 1),
    "realtime inside sysex": ([0xF0, 1, 0xF8, 2, 0xFE, 0xF7, 0xC0, 5], [[0xC0, 5]], 0, 1),
    "undefined realtime inside sysex": ([0xF0, 1, 0xF9, 0xF7], [], 1, 1),
    "unterminated sysex at end": ([0x90, 60, 100, 0xF0, 1, 2, 3], [[0x90, 60, 100]], 0, 0),
    "out of range ints": ([0x90, 256, 60, -1, 100, 1000], [[0x90, 60, 100]], 3, 0),
    "non-int items": ([0x90, 60.0, 60, "100", None, True, math.inf, math.nan, 100], [[0x90, 60, 100]], 6, 0),
    "numpy ints": (list(np.array([0x90, 60, 100], np.uint8)) + [np.int64(0x80), np.int32(60), np.int16(0)],
                   [[0x90, 60, 100], [0x80, 60, 0]], 0, 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parser_exact_cases(name):
    stream, msgs, dropped, sysex = CASES[name]
    for chunks in ([stream], [[b] for b in stream]):  # whole, and one item at a time
        out, p = parse_all(chunks)
        assert out == msgs
        assert (p.dropped, p.sysex) == (dropped, sysex)
        assert all(type(b) is int for m in out for b in m)


@pytest.mark.parametrize("data", [None, 5, 3.5, 0x90, object()])
def test_parser_non_iterable_input_is_one_dropped_item(data):
    p = MidiParser()
    assert p.feed(data) == [] and p.dropped == 1
    assert p.feed(bytes([0x90, 60, 100])) == [[0x90, 60, 100]] and p.dropped == 1


def test_parser_long_sysex_is_skipped_in_one_piece():
    body = bytes(np.random.default_rng(1).integers(0, 128, 100_000, dtype=np.uint8))
    p = MidiParser()
    assert p.feed(b"\x90\x3c\x64\xf0" + body[:50_000]) == [[0x90, 60, 100]]
    assert p.feed(body[50_000:] + b"\xf7\x80\x3c\x00") == [[0x80, 60, 0]]
    assert (p.dropped, p.sysex, p.in_sysex) == (0, 1, False)


@pytest.mark.parametrize("seed", range(60))
def test_parser_valid_messages_survive_garbage(seed):
    rng = random.Random(seed)
    stream, msgs, dropped, sysex = build_stream(rng, n_msgs=rng.choice((1, 5, 40, 200)))
    out, p = parse_all(split(stream, rng))
    assert out == msgs
    assert (p.dropped, p.sysex) == (dropped, sysex)
    if all(type(b) is int and 0 <= b <= 255 for b in stream):  # the same as one bytes object
        out, p = parse_all([bytes(stream)])
        assert out == msgs and (p.dropped, p.sysex) == (dropped, sysex)


@pytest.mark.parametrize("seed", range(10))
def test_parser_clean_stream_with_running_status(seed):
    rng = random.Random(1000 + seed)
    stream, msgs, dropped, sysex = build_stream(rng, n_msgs=300, garbage=0.0, anywhere=0.0)
    assert (dropped, sysex) == (0, 0)
    assert len(stream) < sum(map(len, msgs))  # running status was used
    out, p = parse_all(split(stream, rng))
    assert out == msgs and p.dropped == 0 and p.sysex == 0 and not p.pending


def test_parser_byte_soup_never_raises_and_yields_well_formed_messages():
    rng = np.random.default_rng(7)
    soup = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    p = MidiParser()
    out = []
    i = 0
    while i < len(soup):
        n = int(rng.integers(1, 300))
        out += p.feed(soup[i:i + n])
        i += n
    assert out and p.dropped > 0 and p.sysex > 0
    for m in out:
        st = m[0]
        assert 0x80 <= st <= 0xFF and st not in (0xF0, 0xF4, 0xF5, 0xF7) and st < 0xF8
        want = CHANNEL_LEN[st & 0xF0] if st < 0xF0 else COMMON_LEN[st]
        assert len(m) == 1 + want and all(0 <= b < 0x80 for b in m[1:])
    # the same soup in one piece gives the same result
    p2 = MidiParser()
    assert p2.feed(soup) == out and (p2.dropped, p2.sysex) == (p.dropped, p.sysex)


def test_parser_mixed_garbage_items_never_raise():
    rng = random.Random(3)
    items = [rng.choice((rng.randrange(-300, 600), rng.choice(NON_BYTES), rng.choice(REALTIME_BAD)))
             for _ in range(20_000)]
    p = MidiParser()
    out = []
    for c in split(items, rng):
        out += p.feed(c)
    assert all(0x80 <= m[0] <= 0xFF and all(0 <= b < 0x80 for b in m[1:]) for m in out)
    assert p.dropped > 0


# --------------------------------------------------------------------- controller on a real engine
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from wnl_testutil import small_model

    from realtime.model.model_file import SeedBank

    m = small_model(seed=5)
    rng = np.random.default_rng(0)  # a seed bank so that note-ons re-prime
    m.seedbank = SeedBank(rng.integers(0, 256, (9, 300)), np.arange(9) % 3, 48 + 4 * np.arange(9), np.full(9, 100))
    m.save(tmp_path_factory.mktemp("model") / "m.npz")
    return m


PRESET = """
[model]
path = "{model}"
reprime = "{reprime}"
temperature = 0.9
[sound]
temperature_min = 0.4
temperature_max = 1.3
bend_range = 7.0
max_glide_ms = 250.0
[midi]
channel = {channel}
[midi.cc]
1 = "morph"
7 = "gain"
21 = "temperature"
5 = "glide"
{programs}
"""


def open_session(model, tmp_path, reprime="note_on", channel=0, programs=True):
    from realtime.control.presets import load_preset
    from realtime.offline.render import Session

    progs = '[midi.programs]\n0 = "a"\n1 = "b"\n2 = "c"\n9 = "a"\n' if programs else ""
    path = tmp_path / f"p-{reprime}-{channel}-{programs}.toml"
    path.write_text(PRESET.format(model=model.path, reprime=reprime, channel=channel, programs=progs))
    return Session.open(load_preset(path), model)


def assert_sane(session) -> None:
    c, e = session.controller, session.engine
    s, snd = c.state, session.preset.sound
    assert len(s.held) == len(set(s.held)) <= 128 and all(0 <= n <= 127 for n in s.held)
    assert s.note == (s.held[-1] if s.held else None)
    assert 1 <= s.velocity <= 127
    assert 0 <= s.instrument < len(c.instruments) and e.instrument == s.instrument
    t0 = session.preset.model.temperature
    assert snd.temperature_min <= s.temperature <= snd.temperature_max or s.temperature == t0
    assert e.temperature[0] == s.temperature
    assert -snd.bend_range <= s.bend < snd.bend_range
    assert 0 <= s.glide_s <= snd.max_glide_ms / 1000.0
    assert 0 <= s.morph <= 1
    assert s.gain_db == -np.inf or -60.0 <= s.gain_db <= 6.0
    assert np.isfinite(e.ctrl).all() and np.isfinite(e.bias).all() and np.isfinite(e.bias_target).all()
    assert 0 <= e.pitch <= 127 and 1 <= e.velocity <= 127


def test_controller_byte_soup_keeps_engine_sane(model, tmp_path):
    session = open_session(model, tmp_path)
    rng = np.random.default_rng(11)
    soup = rng.integers(0, 256, 100_000, dtype=np.uint8)
    # bias the soup towards what the controller maps, so every path is taken often
    mapped = rng.random(len(soup)) < 0.3
    soup[mapped] = rng.choice([0x90, 0x80, 0xB0, 0xC0, 0xE0, 1, 7, 21, 5, 120, 123, 0, 127, 64], mapped.sum())
    buf = np.zeros(64, np.float32)
    kinds = set()
    i = 0
    while i < len(soup):
        n = int(rng.integers(1, 200))
        for ev in session.apply_midi(soup[i:i + n].tobytes()):
            kinds.add(ev["param"])
        i += n
        assert_sane(session)
        session.generate(buf[:int(rng.integers(1, 64))])
    assert kinds == {"note_on", "note_off", "all_notes_off", "instrument", "bend", "temperature", "morph",
                     "gain", "glide", "expression", "loop_lowpass",  # the last two: CC 11, 74 from default.toml
                     "sustain"}  # CC 64, the sustain pedal (issue 39)
    assert session.controller.state.reprimes > 0
    assert session.controller.parser.dropped > 0
    out = session.generate(np.zeros(4000, np.float32))
    assert np.isfinite(out).all() and np.abs(out).max() < 1.0
    assert session.engine.nonfinite_count == 0


def test_controller_garbage_gives_the_same_events_as_the_clean_stream(model, tmp_path):
    rng = random.Random(21)
    stream, msgs, dropped, sysex = build_stream(rng, n_msgs=1500, garbage=0.4, anywhere=0.05)
    clean = open_session(model, tmp_path, reprime="off", channel=2)
    noisy = open_session(model, tmp_path, reprime="off", channel=2)
    want = [ev for m in msgs if (ev := clean.controller.apply(m)) is not None]
    got = []
    for c in split(stream, rng):
        got += noisy.controller.feed(c)
    assert got == want and len(want) > 20
    assert (noisy.controller.parser.dropped, noisy.controller.parser.sysex) == (dropped, sysex)
    assert noisy.controller.state == clean.controller.state
    # channel 2 only: everything else maps to nothing
    assert all(ev["midi"][0] & 0x0F == 1 for ev in want)


BAD_MESSAGES = [
    [], [0x90], [0x90, 60], [0x90, 60, 100, 5], [0xC0], [0xC0, 1, 2], [60, 100], [0x3C, 0x64, 0x00],
    [0x90, 128, 100], [0x90, 60, 200], [0x90, -1, 100], [0xB0, 7, 1000], [0xE0, 0, 255], [0x190, 60, 100],
    [-0x70, 60, 100], [0x90, 60.0, 100], [0x90, "60", 100], [0x90, None, 100], [True, 60, 100],
    [0x90, 60, math.nan], [0x90, 60, math.inf], None, 0x90, "abc", 3.5, {0x90: 60},
]


@pytest.mark.parametrize("msg", BAD_MESSAGES, ids=[repr(m) for m in BAD_MESSAGES])
def test_controller_apply_refuses_malformed_messages(model, tmp_path, msg):
    session = open_session(model, tmp_path)
    c = session.controller
    c.apply([0x90, 50, 90])  # something sounding
    c.apply([0xE0, 0, 80])
    before = (repr(c.state), session.engine.ctrl.copy(), session.engine.bias.copy(), session.engine.temperature.copy())
    assert c.apply(msg) is None
    after = (repr(c.state), session.engine.ctrl, session.engine.bias, session.engine.temperature)
    assert before[0] == after[0]
    for x, y in zip(before[1:], after[1:]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("msg", [bytes([0x90, 60, 100]), np.array([0x90, 60, 100], np.uint8), (0x90, 60, 100)])
def test_controller_apply_accepts_any_int_sequence(model, tmp_path, msg):
    c = open_session(model, tmp_path, reprime="off").controller
    ev = c.apply(msg)
    assert ev == {"param": "note_on", "value": 60, "velocity": 100, "legato": False, "midi": [0x90, 60, 100]}
    assert all(type(b) is int for b in ev["midi"]) and c.state.held == [60]


def test_controller_mapping_extremes(model, tmp_path):
    session = open_session(model, tmp_path)
    c, snd = session.controller, session.preset.sound
    c.feed(bytes([0xB0, 21, 0, 21, 127]))
    assert c.state.temperature == pytest.approx(snd.temperature_max)
    c.feed(bytes([0xB0, 21, 0]))
    assert c.state.temperature == pytest.approx(snd.temperature_min) and session.engine.temperature[0] == c.state.temperature
    c.feed(bytes([0xE0, 0, 0, 0x7F, 0x7F]))
    assert c.state.bend == pytest.approx(snd.bend_range * 8191 / 8192)
    c.feed(bytes([0xE0, 0, 0]))
    assert c.state.bend == -snd.bend_range
    c.feed(bytes([0xB0, 7, 0]))
    assert c.state.gain_db == -np.inf and session.stage.state[GAIN_T] == 0.0
    c.feed(bytes([0xC0, 9, 0xC0, 50]))  # 9 -> "a"; 50 is not mapped: ignored
    assert c.state.instrument == 0
    c.feed(bytes([0x90] + [n for k in range(128) for n in (k, 1 + k % 127)]))  # every note held
    assert len(c.state.held) == 128 and c.state.note == 127
    c.feed(bytes([0xB0, 123, 0]))
    assert c.state.held == [] and c.state.note is None
    assert_sane(session)
