"""README.md keeps its promises: it is short, its links lead somewhere, and every command it shows runs.

Every line of the README's ```sh blocks is a command (``# comments`` dropped). They run in the README's order in
one temporary folder, as a reader would type them, so a take one command records is the take the next replays:

* ``make TARGET ...``: the target exists (``make -n TARGET`` succeeds); nothing is installed or run.
* offline ``wavenet-live render|replay|plot|repair ...``: run as written; what they write is checked (a WAV of the
  length asked for, a replay equal to its take, a PNG, a repaired header).
* live ones (anything that opens an audio device or a MIDI port: plain ``wavenet-live``, ``--list-devices``,
  ``--list-midi``, ``--virtual-midi``, ``--record``, ``--learn``): against the headless JACK server of
  tests/jack_server.py (env ``JACK_DEFAULT_SERVER``, ``JACK_NO_START_SERVER=1``), stopped by an added
  ``--seconds`` (marked ``jack`` and ``slow``). Each that plays gets a MIDI keyboard on that server (a virtual
  rtmidi output that exists before it starts, as a plugged-in keyboard does, or one connected to its
  ``--virtual-midi`` input) playing a note and a CC: the closing JSON must name that port and count the messages
  applied, and a recording must hold them. Before its first live run with a preset and engine, the same is
  rendered for 0.2 s offline, so that a Numba recompile after a source change is not timed by the host's prefill.

Repository paths in a command (``presets/...``) are resolved against the repository. A file the README takes
for granted (``song.mid``) is made here; a take that a live command would have recorded is rendered offline
when the live commands did not run (``-m "not jack"``). Anything else in a ```sh block fails the test: a command
that cannot run here belongs in the README's prose.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: the contributors' documents beside it, whose links are checked too
DOCS = [README, ROOT / "realtime" / "README.md", ROOT / "models" / "README.md",
        ROOT / "models" / "experiments" / "LOG.md"]
MODEL_RATE = 16000
LIVE_SECONDS = 4.0           # --seconds added to a live command that has none
TIMEOUT = 900.0              # a first run after a source change recompiles the Numba kernels (minutes on 1 core)
OFFLINE = ("render", "replay", "plot", "repair")
REPO_PREFIXES = ("presets/", "models/", "docs/")


# ------------------------------------------------------------------------- the README's commands
def sh_commands(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, line, argv) of every command in the ```sh blocks of a Markdown text."""
    out, in_sh = [], False
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("```"):
            in_sh = not in_sh and s[3:].strip() == "sh"
            continue
        if in_sh:
            argv = shlex.split(line, comments=True)
            if argv:
                out.append((no, line.strip(), argv))
    return out


def kind(argv: list[str]) -> str:
    """make | offline | live | unknown."""
    if argv[0] == "make":
        return "make"
    if argv[0] == "wavenet-live":
        return "offline" if len(argv) > 1 and argv[1] in OFFLINE else "live"
    return "unknown"


COMMANDS = sh_commands(README.read_text())
MARKS = {"make": [], "offline": [pytest.mark.slow], "live": [pytest.mark.jack, pytest.mark.slow], "unknown": []}
PARAMS = [pytest.param(i, argv, id=f"L{no}: {line.split('#')[0].strip()[:60]}", marks=MARKS[kind(argv)])
          for i, (no, line, argv) in enumerate(COMMANDS)]


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` in argv, else None."""
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


# ------------------------------------------------------------------------------------ helpers
def wavenet_live() -> list[str]:
    exe = Path(sys.executable).with_name("wavenet-live")
    return [str(exe)] if exe.exists() else [sys.executable, str(ROOT / "run_live.py")]


def resolved(argv: list[str]) -> list[str]:
    """argv with repository paths made absolute (the commands run in a temporary folder)."""
    return [str(ROOT / a) if a.startswith(REPO_PREFIXES) and (ROOT / a).exists() else a for a in argv]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*wavenet_live(), *resolved(argv[1:])], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON line on stdout: {stdout!r}"
    return json.loads(lines[-1])


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} not written"
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"


def render_substitute(cwd: Path, out: str) -> None:
    """The take a live README command would have recorded, rendered offline (JACK tests deselected)."""
    r = run(["wavenet-live", "render", "--out", out, "--seconds", "2"], cwd)
    assert r.returncode == 0, r.stderr[-2000:]


def write_song(path: Path) -> None:
    """A short standard MIDI file: three notes and a program change, about 1.3 s."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 480 ticks = 0.5 s
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.Message("program_change", program=2, time=0))
    for i, note in enumerate((60, 64, 67)):
        tr.append(mido.Message("note_on", note=note, velocity=100, time=0 if i == 0 else 96))
        tr.append(mido.Message("note_off", note=note, velocity=0, time=384))
    mid.save(str(path))


def corrupt_wav_header(path: Path) -> int:
    """Zero the RIFF and data chunk sizes, as a recorder killed before its first header update leaves them.

    Returns the frames the file really holds."""
    frames = sf.info(str(path)).frames
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos = 12
    while pos + 8 <= len(data):
        cid, clen = struct.unpack_from("<4sI", data, pos)
        if cid == b"data":
            struct.pack_into("<I", data, pos + 4, 0)
            break
        pos += 8 + clen + (clen & 1)
    else:
        raise AssertionError(f"{path}: no data chunk")
    struct.pack_into("<I", data, 4, 4)
    path.write_bytes(bytes(data))
    return frames


# ------------------------------------------------------------------------------ the fast checks
def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n < 300, f"README.md has {n} lines: it is for musicians; move the rest to realtime/, models/ or the LOG"


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading (lower case, punctuation dropped, spaces to hyphens)."""
    title = re.sub(r"`([^`]*)`", r"\1", title.strip()).lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def links(path: Path) -> list[str]:
    """Targets of the Markdown links and images in a file, code spans and blocks left out."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_links_lead_somewhere(doc):
    """Every relative link names a file that exists, and every #anchor a heading there."""
    assert doc.is_file(), f"{doc} is missing"
    found = links(doc)
    assert found or doc != README, "README.md links to nothing"
    bad = []
    for target in found:
        if re.match(r"[a-z]+:", target):  # http:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


def test_readme_links_the_contributors_documents_and_a_small_picture():
    found = set(links(README))
    for doc in ("realtime/README.md", "models/README.md", "models/experiments/LOG.md", "models/default/MODEL.md"):
        assert doc in found, f"README.md does not link {doc}"
    pics = [t for t in found if t.endswith(".png")]
    assert pics, "README.md shows no picture"
    for p in pics:
        assert_png(ROOT / p)
        assert (ROOT / p).stat().st_size < 200_000, f"{p} is {(ROOT / p).stat().st_size} bytes: keep it under 200 KB"


def test_every_sh_command_is_one_the_tests_can_run():
    assert len(COMMANDS) >= 10, "the README shows hardly any commands"
    unknown = [line for _, line, argv in COMMANDS if kind(argv) == "unknown"]
    assert not unknown, f"commands in ```sh blocks that this test cannot run (write them as prose): {unknown}"
    kinds = {kind(argv) for _, _, argv in COMMANDS}
    assert kinds == {"make", "offline", "live"}, kinds


def test_sh_commands_parser():
    text = "x\n```sh\nmake play   # plays\n\n# a comment\nwavenet-live --record 'my take'  # rec\n```\n" \
           "```\nnot sh\n```\n```sh\nwavenet-live plot t\n```\n"
    got = [(no, argv) for no, _, argv in sh_commands(text)]
    assert got == [(3, ["make", "play"]), (6, ["wavenet-live", "--record", "my take"]),
                   (12, ["wavenet-live", "plot", "t"])]
    assert github_slug("Why the timbre is low, and `lag2` (2026-12-03)") == "why-the-timbre-is-low-and-lag2-2026-12-03"


# ------------------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all the README's commands, in order: what one writes, the next reads."""
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("index, argv", PARAMS)
def test_readme_command(index, argv, workdir, request):
    k = kind(argv)
    if k == "make":
        check_make(argv)
    elif k == "offline":
        check_offline(argv, workdir)
    elif k == "live":
        check_live(argv, workdir, request.getfixturevalue("jack_server"))
    else:
        pytest.fail(f"cannot run {shlex.join(argv)}: not make or wavenet-live")


def check_make(argv: list[str]) -> None:
    targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
    assert targets, f"{shlex.join(argv)}: no target"
    for t in targets:
        r = subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"make has no target {t!r}: {r.stderr.strip()}"


def check_offline(argv: list[str], cwd: Path) -> None:
    sub = argv[1]
    if sub == "render":
        midi = option(argv, "--midi")
        if midi and not (cwd / midi).exists():
            write_song(cwd / midi)
        feed = option(argv, "--input-file")  # an audio file as the input: a render of its own when missing
        if feed and not (cwd / feed).exists():
            render_substitute(cwd, feed)
    elif sub in ("replay", "plot", "repair"):
        src = argv[2]
        if not (cwd / src).exists():
            render_substitute(cwd, src)
    if sub == "repair":
        frames = corrupt_wav_header(cwd / argv[2])
        assert sf.info(str(cwd / argv[2])).frames == 0 < frames  # the damage is real: the header says nothing
    r = run(argv, cwd)
    assert r.returncode == 0, f"{shlex.join(argv)} exited {r.returncode}: {r.stderr[-2000:]}"
    if sub == "render":
        check_render(argv, cwd, last_json(r.stdout))
    elif sub == "replay":
        info = last_json(r.stdout)
        out = cwd / option(argv, "--out")
        assert info["matches_recording"] is True, f"the replay differs from the take: {info}"
        assert sf.info(str(out)).frames == info["samples"] > 0
    elif sub == "plot":
        png = Path(r.stdout.strip().splitlines()[-1])
        png = png if png.is_absolute() else cwd / png
        out = option(argv, "--out")
        expected = cwd / out if out else (cwd / argv[2] / "session.png" if (cwd / argv[2]).is_dir()
                                          else (cwd / argv[2]).with_suffix(".png"))
        assert png.resolve() == expected.resolve(), (png, expected)
        assert_png(png)
    elif sub == "repair":
        info = last_json(r.stdout)
        assert info["frames"] == frames and sf.info(str(cwd / argv[2])).frames == frames > 0


def check_render(argv: list[str], cwd: Path, info: dict) -> None:
    out = cwd / option(argv, "--out")
    rate = int(option(argv, "--samplerate") or MODEL_RATE)
    if option(argv, "--seconds"):
        want = int(round(float(option(argv, "--seconds")) * MODEL_RATE))
    elif option(argv, "--midi"):
        from realtime.control.presets import load_preset
        from realtime.offline.midi_file import load_events

        _, length = load_events(str(cwd / option(argv, "--midi")), MODEL_RATE)
        preset = load_preset(resolved([option(argv, "--preset")])[0] if option(argv, "--preset") else None)
        want = int(round((length + preset.sound.release_ms / 1000.0 + 0.2) * MODEL_RATE))
    else:
        want = 8 * MODEL_RATE
    assert info["samples"] == want and info["sample_rate"] == MODEL_RATE, info
    engine = option(argv, "--engine") or "numba"
    assert info["rtf"] > 0 and (info["engine"] == engine or engine == "auto"), info
    tail = 0  # a preset's effect chain rings out after the end: up to TAIL_MAX_S more (realtime/sound/effects.py)
    if option(argv, "--preset"):
        from realtime.control.presets import load_preset
        from realtime.sound.effects import TAIL_MAX_S

        tail = int(TAIL_MAX_S * MODEL_RATE) if load_preset(resolved([option(argv, "--preset")])[0]).effects else 0
    audio_path = out / "audio.wav" if out.suffix.lower() not in (".wav", ".flac") else out
    if audio_path is not out:  # a session folder, as a live take
        assert (out / "events.jsonl").is_file() and (out / "session.json").is_file()
        assert want + (tail > 0) <= info["frames_written"] <= want + tail, (info, tail)
    audio, sr = sf.read(str(audio_path), dtype="float32")
    assert sr == rate and round(want * rate / MODEL_RATE) + (tail > 0) <= len(audio) <= round((want + tail) * rate
                                                                                              / MODEL_RATE)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01, "the take is silent"


# --------------------------------------------------------------------------------------- live
class Live:
    """A live wavenet-live process; a thread collects stderr so a test can wait for a line."""

    def __init__(self, argv: list[str], cwd: Path, extra_env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*wavenet_live(), *resolved(argv[1:])], cwd=cwd, env={**env(), **extra_env},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._t = threading.Thread(target=lambda: self.err.extend(ln.rstrip("\n") for ln in self.proc.stderr),
                                   daemon=True)
        self._t.start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any(text in ln for ln in list(self.err)):
                return
            time.sleep(0.05)
        tail = "\n".join([ln for ln in self.err if "leaked" not in ln][-30:])
        raise AssertionError(f"no {text!r} from wavenet-live (exit {self.proc.poll()}):\n{tail}")

    def finish(self) -> tuple[int, str, str]:
        try:
            out, _ = self.proc.communicate(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._t.join(5)
        return self.proc.returncode, out, "\n".join(self.err)


class Keyboard:
    """A MIDI keyboard on the JACK server: a virtual output port that exists before wavenet-live starts (so a
    plain ``wavenet-live`` finds it as the first port, as it finds a plugged-in keyboard), or is connected to
    wavenet-live's virtual input."""

    NAME = "wnl-readme-kbd"

    def __init__(self) -> None:
        import rtmidi

        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, self.NAME)
        self.out.open_virtual_port("out")

    def connect_to(self, client: str) -> None:
        import jack
        from jack_server import wait_for_ports

        patch = jack.Client("wnl-readme-patch", no_start_server=True)
        try:
            port = wait_for_ports(patch, rf"{client}-midi:midi_in", is_midi=True)[0]
            patch.connect(f"{self.NAME}:out", port)
        finally:
            patch.close()
        time.sleep(0.2)

    def play(self, cc: bool = True) -> int:
        """A note, a CC every preset here maps (21), the note's end; returns the messages sent."""
        msgs = [([0x90, 60, 100], 0.5), ([0xB0, 21, 64], 0.2), ([0x80, 60, 0], 0.1)]
        msgs = [m for m in msgs if cc or m[0][0] != 0xB0]
        for msg, pause in msgs:
            self.out.send_message(msg)
            time.sleep(pause)
        return len(msgs)

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


_WARM: set[tuple[str | None, str | None]] = set()


def warm_up(argv: list[str], cwd: Path) -> None:
    """Render a moment offline with the command's preset and engine first, once each.

    After a source change the first run compiles the Numba kernels (minutes on a loaded core); in a live run that
    happens in the generator thread and can outlast the host's 120 s prefill timeout. Rendered first, the kernels
    come from the on-disk cache when the live command starts, as they do for a player on the second run."""
    key = (option(argv, "--preset"), option(argv, "--engine"))
    if key in _WARM:
        return
    extra = [a for k, v in zip(("--preset", "--engine"), key) if v for a in (k, v)]
    r = run(["wavenet-live", "render", "--out", "warm-up.wav", "--seconds", "0.2", *extra], cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    _WARM.add(key)


def check_live(argv: list[str], cwd: Path, jack_server) -> None:
    assert os.environ.get("JACK_DEFAULT_SERVER") == jack_server.name
    if "--list-devices" in argv or "-l" in argv or "--list-midi" in argv:
        r = run(argv, cwd)
        assert r.returncode == 0, r.stderr[-2000:]
        if "--list-midi" in argv:
            jack_line = [ln for ln in r.stdout.splitlines() if ln.startswith("jack:")]
            assert jack_line and "(not running)" not in jack_line[0], r.stdout
        else:
            assert "JACK" in r.stdout, r.stdout
        return
    warm_up(argv, cwd)
    seconds = float(option(argv, "--seconds") or LIVE_SECONDS)
    if option(argv, "--seconds") is None:
        argv = [*argv, "--seconds", str(seconds)]
    record = option(argv, "--record")
    virtual = "--virtual-midi" in argv
    kbd, live = Keyboard(), None
    try:
        live = Live(argv, cwd, {"RTMIDI_API": "jack"})  # the MIDI API of this test's server, as --midi-api jack
        live.wait_for("playing", TIMEOUT)
        if virtual:
            kbd.connect_to(option(argv, "--client-name") or "wavenet-live")
        # no CC under MIDI learn: it would bind it and write presets/user.toml in the repository
        sent = kbd.play(cc="--learn" not in argv)
    except BaseException:
        if live is not None and live.proc.poll() is None:
            live.proc.kill()
        raise
    finally:
        kbd.close()
    rc, out, err = live.finish()
    assert rc == 0, f"{shlex.join(argv)} exited {rc}: {err[-2000:]}"
    s = last_json(out)
    assert "playing '" in err and s["device"], err[-2000:]
    # it played for the time asked (no upper bound: a Numba recompile after a source change holds the GIL and can
    # delay the stop by seconds; a run that never stops meets the timeout)
    assert s["seconds"] > seconds - 0.5 and s["frames"] > 0.3 * seconds * s["samplerate"], s
    if virtual:
        name = option(argv, "--virtual-midi")
        port = name if name and not name.startswith("-") else "midi_in"
    else:
        port = Keyboard.NAME
    assert s["midi"] and port in s["midi"], f"wavenet-live did not open the keyboard's port {port}: {s}"
    assert s["events"] >= sent, f"{sent} MIDI messages played, {s['events']} applied: {s}"
    if "--learn" in argv:
        assert f"MIDI learn: move the control to use for {option(argv, '--learn')}" in err, err[-2000:]
    if record:
        take = cwd / record
        audio = take if take.suffix.lower() in (".wav", ".flac") else take / "audio.wav"
        if audio is not take:
            assert (take / "events.jsonl").is_file() and (take / "session.json").is_file()
            manifest = json.loads((take / "session.json").read_text())
            assert manifest.get("kind") == "live", manifest
            logged = [json.loads(ln)["param"] for ln in (take / "events.jsonl").read_text().splitlines()]
            assert logged.count("note_on") == 1 and logged.count("note_off") == 1, logged
        info = sf.info(str(audio))
        assert info.samplerate == s["samplerate"] and info.frames >= 0.8 * s["frames"], (info, s)
        assert info.frames <= (seconds + 1.0) * s["samplerate"], (info, s)
        if "--plot" in argv:
            assert_png(take.with_suffix(".png") if audio is take else take / "session.png")
