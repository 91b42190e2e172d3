"""Record the live stream to disk: a tee sink with its own ring and writer thread.

Threads: ``write``/``event`` run in the generator thread and only copy into a
preallocated ring / append to a deque (never block, never touch the disk);
the writer thread drains them to the files every ``flush_s`` seconds and
keeps the WAV header's sizes current, so a killed process leaves a readable
file that misses at most the last flush interval. If the writer falls
behind, the ring fills to its bounded size and further frames are counted as
dropped; a disk error stops the writing (playback goes on) and is reported.

Layout: ``PATH.wav``/``PATH.flac`` is just the audio file; any other PATH is
a session folder with ``audio.wav`` (float32), ``events.jsonl`` (one applied
control change per line, with its model-rate sample index) and
``session.json`` (what is needed to replay the take, and at close the counts); with an audio input (issue 40)
also ``input.wav``: the input the session used, float32 at the model rate, one sample per generated sample
from the take's first (``write_input``; replay feeds it back, so input-primed notes replay exactly).
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from realtime.live.ring import Ring

SFC_UPDATE_HEADER_NOW = 0x1060  # libsndfile command: rewrite the header with the current sizes


class RecordError(OSError):
    """The recording cannot be started (path not writable, disk full, ...)."""


def session_paths(path: str | Path, audio_format: str = "wav") -> tuple[Path, Path | None, Path | None]:
    """(audio file, events.jsonl or None, session.json or None) for a --record PATH."""
    p = Path(path)
    if p.suffix.lower() in (".wav", ".flac"):
        return p, None, None
    return p / f"audio.{audio_format}", p / "events.jsonl", p / "session.json"


class Recorder:
    """Tee sink that writes what the generator produced (device rate, mono float32) to disk."""

    def __init__(self, path: str | Path, audio_format: str = "wav", max_buffer_s: float = 30.0,
                 flush_s: float = 0.25, min_free_bytes: int = 16 << 20, synchronous: bool = False) -> None:
        """``synchronous``: write in the caller's thread (offline renders, which must not drop)."""
        self.path = Path(path)
        self.synchronous = synchronous
        self.audio_path, self.events_path, self.session_path = session_paths(path, audio_format)
        self.max_buffer_s, self.flush_s = max_buffer_s, flush_s
        self.min_free_bytes = min_free_bytes
        self.frames_written = 0
        self.dropped_full = 0     # generator thread: the ring was full
        self.dropped_error = 0    # writer thread: discarded after a disk error
        self.events_written = 0
        self.error: str = ""
        self.manifest: dict[str, Any] = {}
        self.manifest_base: dict[str, Any] = {}  # merged into the manifest at begin()
        self._events: collections.deque = collections.deque()
        self._in_ring: Ring | None = None  # the audio input (write_input), when the manifest has input_rate
        self._in_sf = None
        self.input_frames = 0
        self._ring: Ring | None = None
        self._sf = None
        self._events_fh = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._closed = False
        self.check_writable()

    # ------------------------------------------------------------ main thread
    def check_writable(self) -> None:
        """Create the folder and probe that files can be written there; RecordError otherwise."""
        folder = self.audio_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".wavenet-live-probe-{os.getpid()}"
            with open(probe, "wb") as fh:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as e:
            raise RecordError(f"record {self.path}: cannot write there ({e.strerror or e})") from None
        free = _free_bytes(folder)
        if free is not None and free < self.min_free_bytes:
            raise RecordError(f"record {self.path}: disk full ({free // 1024} KiB free)")

    def begin(self, samplerate: float, manifest: dict[str, Any]) -> None:
        """Open the files and start the writer thread (main thread, before the stream starts)."""
        import soundfile as sf

        self.samplerate = int(round(samplerate))
        self._ring = Ring(int(self.max_buffer_s * self.samplerate))
        self._chunk = np.zeros(self._ring.capacity, np.float32)
        fmt = "FLAC" if self.audio_path.suffix.lower() == ".flac" else "WAV"
        subtype = "PCM_24" if fmt == "FLAC" else "FLOAT"
        try:
            self._sf = sf.SoundFile(str(self.audio_path), "w", self.samplerate, 1, subtype=subtype, format=fmt)
            if self.events_path is not None:
                self._events_fh = open(self.events_path, "w", buffering=1)
        except (OSError, RuntimeError) as e:
            raise RecordError(f"record {self.audio_path}: cannot open ({e})") from None
        self.manifest = {**self.manifest_base, **manifest, "audio": self.audio_path.name, "device_rate": self.samplerate,
                         "audio_subtype": subtype, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        in_rate = int(self.manifest.get("input_rate") or 0)
        if in_rate and self.events_path is not None:  # a session folder with an audio input
            in_path = self.audio_path.parent / "input.wav"
            try:
                self._in_sf = sf.SoundFile(str(in_path), "w", in_rate, 1, subtype="FLOAT", format="WAV")
            except (OSError, RuntimeError) as e:
                raise RecordError(f"record {in_path}: cannot open ({e})") from None
            self._in_ring = Ring(int(self.max_buffer_s * in_rate))
            self._in_chunk = np.zeros(self._in_ring.capacity, np.float32)
            self.manifest["input"] = in_path.name
        self._write_manifest()
        self._running = True
        if not self.synchronous:
            self._thread = threading.Thread(target=self._run, name="wavenet-live-recorder", daemon=True)
            self._thread.start()

    def close(self, stats: dict[str, Any] | None = None) -> None:
        """Drain everything, close the files, write the final manifest (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=30.0)
        self._drain()
        if self._sf is not None:
            try:
                self._sf.close()
            except Exception as e:  # noqa: BLE001 - a full disk can fail here too
                self.error = self.error or f"closing {self.audio_path}: {e}"
        if self._events_fh is not None:
            self._events_fh.close()
        if self._in_sf is not None:
            try:
                self._in_sf.close()
            except Exception as e:  # noqa: BLE001 - a full disk can fail here too
                self.error = self.error or f"closing input.wav: {e}"
            self.manifest["input_frames"] = self.input_frames
        self.manifest.update({"closed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frames_written": self.frames_written,
                              "frames_dropped": self.frames_dropped, "events_written": self.events_written,
                              "error": self.error, **(stats or {})})
        self._write_manifest()

    @property
    def frames_dropped(self) -> int:
        """Frames that did not reach the file (ring full, or after a disk error)."""
        return self.dropped_full + self.dropped_error

    # ------------------------------------------------------- generator thread
    def write(self, block: np.ndarray) -> None:
        """Copy a block into the record ring; frames that do not fit are counted as dropped."""
        if self._ring is None or not self._running:
            return
        pos = 0
        while True:
            pos += self._ring.write(block[pos:])
            if pos == len(block) or not self.synchronous:
                break
            self._drain()  # offline: make room by writing now
        if pos < len(block):
            self.dropped_full += len(block) - pos

    def write_input(self, block: np.ndarray) -> None:
        """Copy a block of the audio input (model rate) into its ring (generator thread); what does not fit
        is counted as dropped (and the take then cannot replay exactly)."""
        if self._in_ring is None or not self._running:
            return
        pos = 0
        while True:
            pos += self._in_ring.write(block[pos:])
            if pos == len(block) or not self.synchronous:
                break
            self._drain()
        if pos < len(block):
            self.dropped_full += len(block) - pos

    def event(self, ev: dict[str, Any]) -> None:
        """Queue an applied control change for events.jsonl."""
        if self._running:
            self._events.append(ev)

    # --------------------------------------------------------- writer thread
    def _run(self) -> None:
        while self._running:
            time.sleep(self.flush_s)
            self._drain()

    def _drain(self) -> None:
        if self.error or self._sf is None:
            self._discard()
            return
        n = self._ring.read(self._chunk)
        try:
            k = self._in_ring.read(self._in_chunk) if self._in_ring is not None else 0
            if k:
                self._in_sf.write(self._in_chunk[:k])
                self._in_sf.flush()
                _update_header(self._in_sf)
                self.input_frames += k
            if n:
                self._sf.write(self._chunk[:n])
                self._sf.flush()
                _update_header(self._sf)
                self.frames_written += n
                n = 0
            if self._events_fh is not None and self._events:
                lines = []
                while self._events:
                    lines.append(json.dumps(_jsonable(self._events.popleft())))
                self._events_fh.write("\n".join(lines) + "\n")
                self._events_fh.flush()
                self.events_written += len(lines)
        except (OSError, RuntimeError) as e:  # disk full mid-session: stop writing, keep playing
            self.dropped_error += n
            self.error = f"record {self.audio_path}: writing stopped ({e})"

    def _discard(self) -> None:
        if self._in_ring is not None:
            self._in_ring.read(self._in_chunk)
        if self._ring is not None:
            n = self._ring.read(self._chunk)
            self.dropped_error += n
        self._events.clear()

    def _write_manifest(self) -> None:
        if self.session_path is None:
            return
        tmp = self.session_path.with_name(self.session_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(_jsonable(self.manifest), indent=2))
            tmp.replace(self.session_path)
        except OSError as e:
            self.error = self.error or f"record {self.session_path}: {e}"


def _update_header(f) -> None:
    """Ask libsndfile to rewrite the header with the current sizes (readable after a crash)."""
    from soundfile import _ffi, _snd

    _snd.sf_command(f._file, SFC_UPDATE_HEADER_NOW, _ffi.NULL, 0)


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return list(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def repair_wav(path: str | Path) -> int:
    """Fix the RIFF and data chunk sizes of a WAV cut short (e.g. a killed recorder); returns frames.

    Only the size fields are rewritten, from the file's length; a torn last frame is dropped.
    """
    import struct

    path = Path(path)
    with open(path, "r+b") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"repair {path}: not a RIFF/WAVE file")
        size = path.stat().st_size
        pos, block_align = 12, None
        while pos + 8 <= size:
            fh.seek(pos)
            cid, clen = struct.unpack("<4sI", fh.read(8))
            if cid == b"fmt ":
                fmt = fh.read(16)
                block_align = struct.unpack("<HHIIHH", fmt)[4]
            if cid == b"data":
                if not block_align:
                    raise ValueError(f"repair {path}: data chunk before fmt chunk")
                data_len = (size - pos - 8) // block_align * block_align
                fh.seek(pos + 4)
                fh.write(struct.pack("<I", data_len))
                fh.seek(4)
                fh.write(struct.pack("<I", pos + 8 + data_len - 8))
                fh.truncate(pos + 8 + data_len)
                return data_len // block_align
            pos += 8 + clen + (clen & 1)
    raise ValueError(f"repair {path}: no data chunk")
