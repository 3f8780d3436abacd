import pickle
import subprocess
import sys
import zipfile
from dataclasses import asdict

import pytest
import torch

from asr.checkpoint import ModelFileError, SaveError, atomic_save, model_record, read_model_file
from asr.config import FeatureConfig, ModelConfig
from asr.features import FeatureExtractor
from asr.model import AcousticModel
from asr.text import Tokenizer
from asr.transcribe import load_model
from tests.conftest import DATA


def _save_tiny(path, half=False):
    tok = Tokenizer()
    fe = FeatureExtractor(FeatureConfig())
    model = AcousticModel(
        ModelConfig(hidden_size=8, num_layers=1), fe.num_features, len(tok)
    ).eval()
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    atomic_save(
        model_record(asdict(FeatureConfig()), asdict(model.cfg), tok.to_list(), state), path
    )
    return fe, model


def test_save_load_identical_outputs(tmp_path):
    fe, model = _save_tiny(tmp_path / "m.pt")
    rec = load_model(tmp_path / "m.pt", precision="fp32")  # bit-exact against the float32 model
    waves, lens = torch.randn(2, 8000), torch.tensor([8000, 5000])
    with torch.no_grad():
        expected, _ = model(*fe(waves, lens))
    got, _ = rec.log_probs(waves, lens)
    assert torch.equal(expected, got)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_half_precision_weights_load_as_float(tmp_path):
    _save_tiny(tmp_path / "h.pt", half=True)
    rec = load_model(tmp_path / "h.pt")
    assert all(p.dtype == torch.float32 for p in rec.model.parameters())


class Evil:
    def __reduce__(self):
        return (print, ("this ran on load",))


def test_foreign_and_broken_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        read_model_file(tmp_path / "none.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"format": "asr-model", "x": Evil()}, evil)
    with pytest.raises(ModelFileError, match="evil.pt: refused to load"):
        read_model_file(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelFileError, match="foreign.pt: not an asr model file"):
        read_model_file(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match="garbage.pt"):
        read_model_file(garbage)
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="plain.pkl"):
        read_model_file(pickled)


def test_weights_that_do_not_fit(tmp_path):
    _save_tiny(tmp_path / "m.pt")
    record = torch.load(tmp_path / "m.pt", weights_only=True)
    record["model"]["hidden_size"] = 16
    torch.save(record, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="weights do not fit"):
        load_model(tmp_path / "bad.pt")


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": 1}, path)

    def boom(obj, f):
        f.write(b"partial")  # atomic_save hands torch.save an open file
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(SaveError, match="ckpt.pt: cannot write it .disk full.; the previous"):
        atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert list(tmp_path.iterdir()) == [path]


def _peak_mb(*args: str) -> tuple[int, str, float]:
    """``asr ARGS`` in a subprocess: its exit status, stderr, and peak resident memory in MB
    (VmHWM: ru_maxrss would count the forking test process's own peak too)."""
    code = (
        "import re, sys; from asr.cli import main; rc = main(sys.argv[1:]); "
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
        "print('PEAK', hwm, file=sys.stderr); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    err, peak = done.stderr.rsplit("PEAK", 1)
    return done.returncode, err, int(peak) / 1024


def _deflated(path):
    """``path`` rewritten with every record deflate-compressed (torch.save stores them raw)."""
    out = path.with_name("deflated-" + path.name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
    return out


def test_a_forged_config_or_tensor_is_refused_before_memory_is_spent(tmp_path):
    """A config that describes a big model, or a small file holding a big (compressed) tensor,
    is checked against the weights' shapes (read without their data) before anything is built."""
    _save_tiny(tmp_path / "m.pt")
    clip = str(DATA / "fsdd" / "0_jackson_0.wav")
    rc, err, base_mb = _peak_mb("transcribe", clip, "--model", str(tmp_path / "m.pt"))
    assert rc == 0, err
    record = torch.load(tmp_path / "m.pt", weights_only=True)
    record["model"]["hidden_size"] = 4000  # 512 MB of LSTM weights, were it built
    torch.save(record, tmp_path / "big-config.pt")
    rc, err, peak_mb = _peak_mb("transcribe", clip, "--model", str(tmp_path / "big-config.pt"))
    assert rc == 2
    assert "big-config.pt: weights do not fit the model it describes: " in err
    assert (
        "hidden_size=4000" in err
        and "output.weight is (29, 16) in the file, (29, 8000) in the model" in err
    )
    assert peak_mb < base_mb + 100, (peak_mb, base_mb)

    # a window of a million seconds would build a filterbank of gigabytes: refused by its bound
    record = torch.load(tmp_path / "m.pt", weights_only=True)
    record["features"]["win_ms"] = 1e9
    torch.save(record, tmp_path / "big-window.pt")
    rc, err, peak_mb = _peak_mb("transcribe", clip, "--model", str(tmp_path / "big-window.pt"))
    assert rc == 2 and "win_ms must be > 0 and <= 100, got 1000000000.0" in err, err
    assert peak_mb < base_mb + 100, (peak_mb, base_mb)

    record = torch.load(tmp_path / "m.pt", weights_only=True)
    record["info"]["notes"] = torch.zeros(64 << 20)  # 256 MB of zeros: 250 KB deflated
    torch.save(record, tmp_path / "bomb.pt")
    bomb = _deflated(tmp_path / "bomb.pt")
    assert bomb.stat().st_size < 2e6
    rc, err, peak_mb = _peak_mb("transcribe", clip, "--model", str(bomb))
    assert rc == 2
    assert "info.notes holds 67,108,864 values, more than the " in err
    assert "parameters of the model its config describes: refused before loading it" in err
    assert peak_mb < base_mb + 100, (peak_mb, base_mb)
