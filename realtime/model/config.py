"""Model configuration: sizes, sample rate and the conditioning spec.

Pure data, no torch: the real-time engines read it without the training code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Per-sample local conditioning channels the engines know how to compute, in the column order of
#: realtime.model.local_cond's feature rows.
LOCAL_CHANNELS = ("gate", "f0_sin", "f0_cos", "level", "lag", "lag2", "lagavg", "pred")
#: The channels a new model reads unless its config says otherwise.
DEFAULT_LOCAL = ("gate", "f0_sin", "f0_cos", "level")


@dataclass(frozen=True)
class ConditioningSpec:
    """Which conditioning the model reads.

    Global (per note, added to every layer through its own projection):
    pitch embedding (MIDI 0-127), instrument embedding, velocity scalar (0-1).
    Local (per sample, computed by the engine from control state): note gate,
    sin/cos of the phase of the note's f0, the loudness level the note
    should have now (see realtime.model.level), and ``lag``: the network's own input one
    period of the note's f0 earlier (see realtime.model.local_cond.fill_lag), a
    pitch-synchronous tap into its past, so continuing the tone at the played
    pitch is one read away; ``lag2``: the same two periods earlier (the two taps
    let it average out the noise of one period); ``lagavg``: the mean of its inputs one to
    eight periods earlier (the noise of one period averaged down eightfold in power); ``pred``: a
    source-filter model's short-term prediction of the sample (realtime.model.source_filter), companded.
    A dimension of 0 switches a global input off; ``local=()`` switches local
    conditioning off. ``pitch_interp``: a fractional pitch (a bend, a glide) reads the two
    nearest pitch embeddings linearly interpolated, as the model was trained (``train
    --detune``); otherwise the pitch embedding stays at the played note.
    """

    pitch_dim: int = 16
    instrument_dim: int = 16
    velocity: bool = True
    local: tuple[str, ...] = DEFAULT_LOCAL
    instruments: tuple[str, ...] = ("default",)
    pitch_interp: bool = False

    def __post_init__(self) -> None:
        for name in self.local:
            if name not in LOCAL_CHANNELS:
                raise ValueError(f"unknown local conditioning channel {name!r}; known: {', '.join(LOCAL_CHANNELS)}")
        if not self.instruments:
            raise ValueError("conditioning needs at least one instrument name")

    @property
    def global_dim(self) -> int:
        """Length of the global conditioning vector."""
        return self.pitch_dim + self.instrument_dim + int(self.velocity)

    @property
    def n_instruments(self) -> int:
        return len(self.instruments)


@dataclass(frozen=True)
class SourceFilterSpec:
    """A source-filter model (LPCNet's structure, realtime.model.source_filter): the network models the excitation
    e_t / (g_t exc_scale) of the pre-emphasised signal, whose envelope (LPC of ``order``) and gain g come from the
    envelope bank; ``emphasis``: the pre-emphasis coefficient."""

    order: int = 16
    emphasis: float = 0.85
    exc_scale: float = 32.0

    def __post_init__(self) -> None:
        if self.order <= 0 or self.order % 2:
            raise ValueError(f"source_filter.order {self.order}: must be a positive even number")
        if not 0.0 <= self.emphasis < 1.0:
            raise ValueError(f"source_filter.emphasis {self.emphasis}: must be in [0, 1)")
        if self.exc_scale <= 0.0:
            raise ValueError(f"source_filter.exc_scale {self.exc_scale}: must be positive")


@dataclass(frozen=True)
class WaveNetConfig:
    """Sizes of a WaveNet. Units: channels, layers; sample_rate in Hz."""

    residual_channels: int = 32
    skip_channels: int = 64
    layers_per_stack: int = 10
    stacks: int = 2
    sample_rate: int = 16000
    quantization: int = 256
    conditioning: ConditioningSpec = field(default_factory=ConditioningSpec)
    #: None: the network models the audio itself (every model before the source-filter one)
    source_filter: SourceFilterSpec | None = None

    def __post_init__(self) -> None:
        if self.quantization != 256:
            raise ValueError("only 8-bit mu-law (quantization=256) is supported")
        for name in ("residual_channels", "skip_channels", "layers_per_stack", "stacks", "sample_rate"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive")
        if ("pred" in self.conditioning.local) != (self.source_filter is not None):
            raise ValueError("the local input 'pred' and source_filter go together: a source-filter model reads its "
                             "prediction, no other model has one")

    @property
    def n_layers(self) -> int:
        return self.layers_per_stack * self.stacks

    @property
    def dilations(self) -> list[int]:
        """Dilation of each layer in samples: 1, 2, ..., 2^(k-1), repeated per stack."""
        return [2**i for i in range(self.layers_per_stack)] * self.stacks

    @property
    def receptive_field(self) -> int:
        """Receptive field in samples (kernel size 2)."""
        return sum(self.dilations) + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conditioning"]["local"] = list(self.conditioning.local)
        d["conditioning"]["instruments"] = list(self.conditioning.instruments)
        if self.source_filter is None:
            del d["source_filter"]  # model files from before it stay byte-identical in their config
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WaveNetConfig":
        d = dict(d)
        c = dict(d.pop("conditioning", {}))
        if "local" in c:
            c["local"] = tuple(c["local"])
        if "instruments" in c:
            c["instruments"] = tuple(c["instruments"])
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        sf = d.pop("source_filter", None)
        return cls(conditioning=ConditioningSpec(**c), source_filter=None if sf is None else SourceFilterSpec(**sf),
                   **d)

    def macs_per_sample(self) -> int:
        """Multiply-accumulates per generated sample in the incremental engine."""
        r, s = self.residual_channels, self.skip_channels
        per_layer = (2 * r) * (2 * r) + r * (r + s) + len(self.conditioning.local) * 2 * r
        return self.n_layers * per_layer + s * s + s * self.quantization
