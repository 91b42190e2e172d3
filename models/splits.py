"""Which notes train and which are held out: the one definition of the split (models.train imports it), importable
without the training code, so that a tool which must keep the held-out notes out (the envelope bank,
models/envelope.py) does not import the trainer that imports it back."""
from __future__ import annotations


def split_notes(notes, every: int = 20):
    """Deterministic train/eval split: every ``every``-th note is held out."""
    train = [n for i, n in enumerate(notes) if i % every != every // 2]
    held = [n for i, n in enumerate(notes) if i % every == every // 2]
    return train, held


def extra_train_notes(extra, held) -> list:
    """The notes of ``extra`` (more data beside the main set) that may train: those whose (instrument, pitch)
    no held-out note has."""
    keys = {(n.instrument_id, n.pitch) for n in held}
    return [n for n in extra if (n.instrument_id, n.pitch) not in keys]
