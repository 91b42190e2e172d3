"""The envelope bank in the model file: saved and loaded beside the seed and level banks, optional (a file
without one, as every model before it, loads with none), and a damaged one refused in one line naming the file."""
from __future__ import annotations

import numpy as np
import pytest
from envelope_bank_data import make_bank
from wnl_testutil import ROOT, small_model

from realtime.model.envelope import BANK_KEYS
from realtime.model.model_file import ModelFileError, load_model


@pytest.mark.parametrize("with_bank", [True, False])
def test_round_trip(tmp_path, with_bank):
    m = small_model(seed=1)
    bank = make_bank()
    m.envelopebank = bank if with_bank else None
    back = load_model(m.save(tmp_path / "m.npz"))
    if not with_bank:
        assert back.envelopebank is None
        return
    for k in BANK_KEYS:
        np.testing.assert_array_equal(getattr(back.envelopebank, k), getattr(bank, k))
    for args in [(0, 61.0, 80, 0.1, None), (0, 60.2, 70, 0.9, 0.2), (1, 48, 90, 0.05, None)]:
        a, b = back.envelopebank.lookup(*args), bank.lookup(*args)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]


def test_a_model_file_from_before_the_bank_loads_without_one():
    m = load_model(ROOT / "models" / "default" / "model.npz")
    assert m.envelopebank is None


@pytest.mark.parametrize("damage,match", [
    (lambda a: a.pop("envelope/gain"), "bad envelope bank"),
    (lambda a: a.__setitem__("envelope/start", a["envelope/start"][:-1]), "bad envelope bank"),
    (lambda a: a.__setitem__("envelope/gain", np.where(np.arange(len(a["envelope/gain"])) == 3, np.nan,
                                                       a["envelope/gain"])), "bad envelope bank.*NaN"),
    (lambda a: a.__setitem__("envelope/lsf", a["envelope/lsf"][:, ::-1].copy()), "bad envelope bank.*LSFs"),
    (lambda a: a.__setitem__("envelope/n_frames", a["envelope/n_frames"] + 100), "bad envelope bank.*outside"),
])
def test_a_damaged_bank_is_a_one_line_error_naming_the_file(tmp_path, damage, match):
    m = small_model()
    m.envelopebank = make_bank()
    path = m.save(tmp_path / "m.npz")
    arrays = dict(np.load(path))
    damage(arrays)
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=r"m\.npz: " + match):
        load_model(path)
