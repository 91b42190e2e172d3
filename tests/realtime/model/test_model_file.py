"""The model file round-trips and refuses what does not match."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import ROOT, SMALL, small_model

from realtime.model.model_file import ModelFile, ModelFileError, SeedBank, load_model


def test_round_trip_keeps_everything(tmp_path):
    m = small_model(seed=3)
    m.seedbank = SeedBank(np.arange(10 * 200).reshape(10, 200) % 256, np.arange(10) % 3, np.arange(40, 50),
                          np.full(10, 90))
    m.metadata = {"training": {"steps": 12}}
    back = load_model(m.save(tmp_path / "m.npz"))
    assert back.config == m.config
    for k, v in m.weights.items():
        np.testing.assert_array_equal(back.weights[k], v)
    assert back.metadata["training"] == {"steps": 12}
    assert back.metadata["receptive_field"] == SMALL.receptive_field
    assert back.metadata["instruments"] == ["a", "b", "c"]
    np.testing.assert_array_equal(back.seedbank.snippets, m.seedbank.snippets)
    snip = back.seedbank.lookup(instrument=1, pitch=47)
    np.testing.assert_array_equal(snip, m.seedbank.snippets[7])  # instrument 1 at pitches 41, 44, 47


def test_shape_mismatch_names_file_and_weight(tmp_path):
    m = small_model()
    w = dict(m.weights)
    w["w_rs"] = w["w_rs"][:, :, :-1].copy()
    path = ModelFile(m.config, w).save(tmp_path / "shape.npz")
    with pytest.raises(ModelFileError, match="shape.npz.*w_rs"):
        load_model(path)


def test_nan_weights_refused(tmp_path):
    m = small_model()
    m.weights["b_out2"][3] = np.nan
    path = m.save(tmp_path / "nan.npz")
    with pytest.raises(ModelFileError, match="nan.npz.*b_out2"):
        load_model(path)


def test_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="other.npz.*no header"):
        load_model(path)


def test_a_seed_bank_with_a_missing_array_is_a_one_line_error_naming_the_file(tmp_path):
    src = load_model(ROOT / "models" / "default" / "model.npz")
    path = tmp_path / "m.npz"
    src.save(path)
    arrays = dict(np.load(path))
    del arrays["seed/pitch"]
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=r"m\.npz: bad seed bank"):
        load_model(path)
