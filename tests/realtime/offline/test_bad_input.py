"""Bad input on the command line: exit code != 0, one line naming the file, no traceback."""
from __future__ import annotations

import numpy as np
import pytest
from wnl_testutil import run_cli, small_model, write_preset

from realtime.model.model_file import ModelFileError, load_model


def one_line_error(res, must_name: str) -> str:
    assert res.returncode != 0
    err = res.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert must_name in err, err
    return err


def test_missing_model_file(tmp_path):
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(tmp_path / "nope.npz"))
    one_line_error(res, "nope.npz")


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(bad))
    one_line_error(res, "corrupt.npz")


def test_truncated_model_file(tmp_path):
    good = small_model().save(tmp_path / "good.npz")
    data = good.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(bad))
    one_line_error(res, "truncated.npz")


def test_unknown_model_version(tmp_path):
    import json

    m = small_model()
    path = m.save(tmp_path / "v9.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 9
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ModelFileError, match="v9.npz.*unknown version 9"):
        load_model(path)
    one_line_error(run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(path)), "v9.npz")


def test_missing_midi_file(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(model), "--midi",
                  str(tmp_path / "song.mid"))
    one_line_error(res, "song.mid")


def test_garbage_midi_file(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    bad = tmp_path / "garbage.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\xff\xff\x90")
    res = run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(model), "--midi", str(bad))
    one_line_error(res, "garbage.mid")


@pytest.mark.parametrize("text,key", [
    ("[model\npath = 1", "not valid TOML"),
    ("[model]\nengine = 'turbo'", "model.engine"),
    ("[model]\ntemperature = 'hot'", "model.temperature"),
    ("[midi.cc]\n200 = 'temperature'", "midi.cc.200"),
    ("[bogus]\nx = 1", "bogus"),
])
def test_malformed_preset(tmp_path, text, key):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    err = one_line_error(run_cli("render", "--out", str(tmp_path / "x.wav"), "--preset", str(bad)), "bad.toml")
    assert key in err


def test_unwritable_output(tmp_path):
    model = small_model().save(tmp_path / "m.npz")
    preset = write_preset(tmp_path / "p.toml", model)
    res = run_cli("render", "--out", str(tmp_path / "no" / "dir" / "x.wav"), "--preset", str(preset), "--seconds", "0.2")
    one_line_error(res, "x.wav")


@pytest.mark.parametrize("module,args", [
    ("models.train", ["--out", "OUT"]),
    ("models.evaluate", ["--quick", "--model", "MODEL"]),
    ("models.export", ["--ckpt", "CKPT", "--out", "OUT", "--weights", "raw"]),
])
def test_missing_dataset_folder(tmp_path, module, args):
    """The training-side tools name a --data folder that is not a dataset (no silent fall-back to none)."""
    import torch
    from wnl_testutil import run_module

    model = small_model()
    torch.save({"config": model.config.to_dict()}, tmp_path / "c.pt")
    subst = {"OUT": str(tmp_path / "out"), "MODEL": str(model.save(tmp_path / "m.npz")), "CKPT": str(tmp_path / "c.pt")}
    res = run_module(module, "--data", str(tmp_path / "no_such_data"), *[subst.get(x, x) for x in args])
    one_line_error(res, "no_such_data")


def test_unknown_output_extension(tmp_path):
    """Issue 39 item 3: ``--out x.mp3`` names the supported extensions and creates nothing."""
    model = small_model().save(tmp_path / "m.npz")
    err = one_line_error(run_cli("render", "--out", str(tmp_path / "x.mp3"), "--model", str(model)), "x.mp3")
    assert ".wav" in err and ".flac" in err
    assert not (tmp_path / "x.mp3").exists()


@pytest.mark.parametrize("content", [b"hello, not a model\n" * 10, b"\x93NUMPY\x01\x00" + b"\x00" * 200])
def test_non_model_file(tmp_path, content):
    """Issue 39 item 9: a file that is not a model (text, a bare .npy) gets one line, no numpy advice."""
    bad = tmp_path / "notes.txt"
    bad.write_bytes(content)
    err = one_line_error(run_cli("render", "--out", str(tmp_path / "x.wav"), "--model", str(bad)), "notes.txt")
    assert "not a wavenet-live model file" in err
    assert "allow_pickle" not in err
