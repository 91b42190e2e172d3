"""The model file: config + weights + metadata + seed bank in one ``.npz``.

Readable with numpy alone (no torch, no training code). Layout: an entry
``header`` holding UTF-8 JSON ``{"format": "wavenet-live-model", "version": 1,
"config": {...}, "metadata": {...}}``, weights as ``w/<name>`` (engine layout,
see :func:`models.wavenet.export_weights`), an optional seed bank as
``seed/<name>``, an optional level bank (realtime.model.level.LevelBank) as ``level/<name>`` and an optional
envelope bank (realtime.model.envelope.EnvelopeBank) as ``envelope/<name>``.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from realtime.model.config import ConditioningSpec, SourceFilterSpec, WaveNetConfig
from realtime.model.envelope import BANK_KEYS as _ENVELOPE_KEYS
from realtime.model.envelope import EnvelopeBank
from realtime.model.level import LevelBank
from realtime.model.note_keys import note_keys

FORMAT = "wavenet-live-model"
VERSION = 1

REQUIRED_WEIGHTS = ("embed", "w_dil", "b_dil", "w_glob", "w_loc", "w_rs", "b_res", "b_skip",
                    "w_out1", "b_out1", "w_out2", "b_out2", "pitch_embed", "instrument_embed")


#: the model file's ``seed/<key>`` and ``level/<key>`` arrays (``envelope/<key>``: realtime.model.envelope.BANK_KEYS)
_SEED_KEYS = ("snippets", "instrument", "pitch", "velocity")
_LEVEL_KEYS = ("params", "instrument", "pitch", "velocity")


class ModelFileError(Exception):
    """A model file is missing, unreadable or does not match this version."""


@dataclass
class SeedBank:
    """Short real snippets per (instrument, pitch), stored mu-law (uint8), at the model rate.

    ``snippets`` (K, N) uint8; ``instrument`` (K,) int; ``pitch`` (K,) MIDI; ``velocity`` (K,) MIDI.
    """

    snippets: np.ndarray
    instrument: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __post_init__(self) -> None:
        self.snippets = np.ascontiguousarray(self.snippets, dtype=np.uint8)
        if self.snippets.ndim != 2:
            raise ValueError("seed bank arrays disagree in length")
        self.instrument, self.pitch, self.velocity = note_keys(self.instrument, self.pitch, self.velocity,
                                                               len(self.snippets), "seed bank")

    def __len__(self) -> int:
        return int(self.snippets.shape[0])

    def lookup(self, instrument: int, pitch: int, velocity: int = 100) -> np.ndarray | None:
        """The snippet (mu-law uint8) closest in pitch (then velocity) for ``instrument``, or None."""
        k = self.index(instrument, pitch, velocity)
        return None if k is None else self.snippets[k]

    def index(self, instrument: int, pitch: int, velocity: int = 100) -> int | None:
        """The row of :meth:`lookup`'s snippet, or None (no snippet of ``instrument``)."""
        idx = np.flatnonzero(self.instrument == instrument)
        if idx.size == 0:
            return None
        cost = np.abs(self.pitch[idx] - pitch) * 1000 + np.abs(self.velocity[idx] - velocity)
        return int(idx[int(np.argmin(cost))])


@dataclass
class ModelFile:
    """Everything the engines need to play a trained model."""

    config: WaveNetConfig
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    seedbank: SeedBank | None = None
    path: Path | None = None
    levelbank: LevelBank | None = None
    envelopebank: EnvelopeBank | None = None

    @property
    def instruments(self) -> tuple[str, ...]:
        return self.config.conditioning.instruments

    def save(self, path: str | Path) -> Path:
        """Write the model file atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.metadata)
        meta.setdefault("sample_rate", self.config.sample_rate)
        meta.setdefault("receptive_field", self.config.receptive_field)
        meta.setdefault("instruments", list(self.instruments))
        header = {"format": FORMAT, "version": VERSION, "config": self.config.to_dict(), "metadata": meta}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        arrays.update({f"w/{k}": v for k, v in self.weights.items()})
        if self.seedbank is not None:
            for k in _SEED_KEYS:
                arrays[f"seed/{k}"] = getattr(self.seedbank, k)
        if self.levelbank is not None:
            for k in _LEVEL_KEYS:
                arrays[f"level/{k}"] = getattr(self.levelbank, k)
        if self.envelopebank is not None:
            for k in _ENVELOPE_KEYS:
                arrays[f"envelope/{k}"] = getattr(self.envelopebank, k)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        tmp.replace(path)
        self.path = path
        return path


def load_model(path: str | Path) -> ModelFile:
    """Read a model file; raise :class:`ModelFileError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path}: not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        # numpy's own text (e.g. its allow_pickle advice for any non-.npz file) is no help to a player
        why = "a damaged or cut-short archive" if isinstance(e, (zipfile.BadZipFile, EOFError, KeyError)) \
            else "not an .npz archive"
        raise ModelFileError(f"model file {path}: not a wavenet-live model file ({why})") from None
    if "header" not in arrays:
        raise ModelFileError(f"model file {path}: no header entry; not a wavenet-live model")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"model file {path}: corrupt header ({e})") from None
    if not isinstance(header, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        raise ModelFileError(f"model file {path}: corrupt header (JSON {kind.get(type(header), 'null')}, "
                             f"not an object)")
    if header.get("format") != FORMAT:
        raise ModelFileError(f"model file {path}: not a wavenet-live model (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise ModelFileError(f"model file {path}: unknown version {header.get('version')!r} "
                             f"(this wavenet-live reads version {VERSION})")
    _check_config_types(path, header.get("config"))
    try:
        cfg = WaveNetConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"model file {path}: bad config ({e})") from None
    if not isinstance(header.get("metadata", {}), dict):
        raise ModelFileError(f"model file {path}: metadata: expected a JSON object")
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w/")}
    missing = [k for k in REQUIRED_WEIGHTS if k not in weights]
    if missing:
        raise ModelFileError(f"model file {path}: missing weights {', '.join(missing)}")
    _check_shapes(path, cfg, weights)
    seed = _load_bank(path, arrays, "seed", _SEED_KEYS, SeedBank, "seed bank")
    levels = _load_bank(path, arrays, "level", _LEVEL_KEYS, LevelBank, "level bank")
    envelopes = _load_bank(path, arrays, "envelope", _ENVELOPE_KEYS, EnvelopeBank, "envelope bank")
    return ModelFile(cfg, {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()},
                     header.get("metadata", {}), seed, path, levels, envelopes)


def _load_bank(path: Path, arrays, prefix: str, keys: tuple[str, ...], cls, what: str):
    """The optional per-note table stored as ``prefix/<key>`` (present when its first key is), or None;
    ModelFileError naming the file when it is incomplete or inconsistent."""
    if f"{prefix}/{keys[0]}" not in arrays:
        return None
    try:
        return cls(**{k: arrays[f"{prefix}/{k}"] for k in keys})
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"model file {path}: bad {what} ({e})") from None


def _check_config_types(path: Path, d: Any) -> None:
    """JSON types of the config values (WaveNetConfig only checks some, and only by calling int() on them)."""
    def check(where: str, d: Any, cls) -> None:
        if not isinstance(d, dict):
            raise ModelFileError(f"model file {path}: {where}: expected a JSON object, got {d!r}")
        for f in fields(cls):
            if f.name not in d or f.name in ("conditioning", "source_filter"):
                continue
            v = d[f.name]
            if f.type == "int":
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
            elif f.type == "float":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            elif f.type == "bool":
                ok = isinstance(v, bool)
            else:  # tuple[str, ...]
                ok = isinstance(v, list) and all(isinstance(x, str) for x in v) and (v or f.name != "instruments")
            if not ok:
                want = {"int": "an int >= 0", "float": "a number", "bool": "true or false"}.get(f.type,
                                                                                               "a list of strings")
                want += " (at least one)" if f.name == "instruments" else ""
                raise ModelFileError(f"model file {path}: {where}.{f.name}: expected {want}, got {v!r}")

    check("config", d, WaveNetConfig)
    if "conditioning" in d:
        check("config.conditioning", d["conditioning"], ConditioningSpec)
    if d.get("source_filter") is not None:
        check("config.source_filter", d["source_filter"], SourceFilterSpec)


def _check_shapes(path: Path, cfg: WaveNetConfig, w: dict[str, np.ndarray]) -> None:
    r, s, L, c = cfg.residual_channels, cfg.skip_channels, cfg.n_layers, cfg.conditioning
    expect = {
        "embed": (256, r), "w_dil": (L, 2 * r, 2 * r), "b_dil": (L, 2 * r),
        "w_glob": (L, c.global_dim, 2 * r), "w_loc": (L, len(c.local), 2 * r),
        "w_rs": (L, r, r + s), "b_res": (L, r), "b_skip": (s,), "w_out1": (s, s), "b_out1": (s,),
        "w_out2": (s, 256), "b_out2": (256,), "pitch_embed": (128, c.pitch_dim),
        "instrument_embed": (c.n_instruments, c.instrument_dim),
    }
    for k, shape in expect.items():
        if not (np.issubdtype(w[k].dtype, np.floating) or np.issubdtype(w[k].dtype, np.integer)):
            raise ModelFileError(f"model file {path}: weight {k} has dtype {w[k].dtype}, need a real number type")
        if tuple(w[k].shape) != shape:
            raise ModelFileError(f"model file {path}: weight {k} has shape {tuple(w[k].shape)}, config needs {shape}")
        if not np.all(np.isfinite(w[k])):
            raise ModelFileError(f"model file {path}: weight {k} holds NaN or Inf")


def model_bytes_hash(path: str | Path) -> str:
    """SHA-256 of a model file's bytes (for session manifests)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def random_model(cfg: WaveNetConfig, seed: int = 0, scale: float = 1.0) -> ModelFile:
    """A model file with random weights drawn as torch's default init draws them (embeddings N(0, 1),
    every other weight and bias uniform within +-1/sqrt(fan_in)), times ``scale``; for tests and benchmarks.
    numpy only, so that the benchmark needs no lab code."""
    rng = np.random.default_rng(seed)
    r, s, n_layers, q = cfg.residual_channels, cfg.skip_channels, cfg.n_layers, cfg.quantization
    c = cfg.conditioning
    g, nl = c.global_dim, len(c.local)

    def uni(fan_in: int, *shape: int) -> np.ndarray:
        bound = 1.0 / np.sqrt(fan_in) if fan_in else 0.0
        return rng.uniform(-bound, bound, shape)

    w = {
        "embed": rng.standard_normal((q, r)),
        "w_dil": uni(2 * r, n_layers, 2 * r, 2 * r), "b_dil": uni(2 * r, n_layers, 2 * r),
        "w_glob": uni(g, n_layers, g, 2 * r), "w_loc": uni(nl, n_layers, nl, 2 * r),
        "w_rs": uni(r, n_layers, r, r + s), "b_res": uni(r, n_layers, r),
        "b_skip": uni(r, n_layers, s).sum(axis=0),
        "w_out1": uni(s, s, s), "b_out1": uni(s, s), "w_out2": uni(s, s, q), "b_out2": uni(s, q),
        "pitch_embed": rng.standard_normal((128, c.pitch_dim)),
        "instrument_embed": rng.standard_normal((c.n_instruments, c.instrument_dim)),
    }
    weights = {k: np.ascontiguousarray(v * scale, dtype=np.float32) for k, v in w.items()}
    return ModelFile(cfg, weights, {"kind": "random", "seed": seed})
