"""General MIDI: the 16 program families, the drum channel, and which family the model plays for which.

Pure data and lookups (any thread). A preset's ``[midi.programs]`` table maps program numbers (0-127,
as sent on the wire; GM's "program 1" is 0 here) to the model's instruments; presets/default.toml maps
each GM family to the model's nearest instrument. :func:`substitution` says when a program's family is
one the model lacks (brass, organ, ...) and so plays the closest instrument instead: the status line and
the render summary say so once per family.
"""
from __future__ import annotations

#: GM's channel for percussion (1-based): a note number picks a drum, program changes pick a kit
DRUM_CHANNEL = 10

#: the 16 GM families, eight programs each: (first program, family name, the instrument that family *is*
#: when a model has it, or None when it is a family of its own that no instrument here is)
FAMILIES = (
    (0, "piano", "piano"),
    (8, "chromatic percussion", None),
    (16, "organ", None),
    (24, "guitar", "guitar"),
    (32, "bass", "bass"),
    (40, "strings", "strings"),
    (48, "ensemble", None),   # 48-51 are string ensembles: see native_instrument
    (56, "brass", None),
    (64, "reed", None),
    (72, "pipe", "flute"),
    (80, "synth lead", "lead"),
    (88, "synth pad", None),
    (96, "synth effects", None),
    (104, "ethnic", None),
    (112, "percussive", "drums"),
    (120, "sound effects", None),
)


def family(program: int) -> str:
    """The GM family name of ``program`` (0-127)."""
    return FAMILIES[max(0, min(127, int(program))) // 8][1]


def native_instrument(program: int) -> str | None:
    """The instrument ``program`` is in General MIDI when a model has one of that name (None: its family
    is one of its own, e.g. brass); string ensembles 1-2 and synth strings 1-2 (48-51) are strings."""
    if 48 <= program <= 51:
        return "strings"
    return FAMILIES[max(0, min(127, int(program))) // 8][2]


def substitution(program: int, instrument: str, instruments) -> tuple[str, str] | None:
    """When ``program`` plays ``instrument`` because the model lacks its GM family: (family, a one-line
    note for the musician); None when the program plays its own family (or the table maps it on purpose
    to another instrument the model has, which is the user's choice, not a substitution)."""
    native = native_instrument(program)
    if native is not None and native in instruments:
        return None
    fam = family(program)
    if 48 <= program <= 55 and native is None:
        fam = "choir and voice"
    if fam == instrument:
        return None
    return fam, f"program {program} ({fam}): the model has no {fam}; plays {instrument}, the closest"
