import json
import re

import pytest
import torch

from asr.cli import main
from asr.model import fold_lhuc
from asr.transcribe import load_model
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small model file (the bundled one, exported without its training state)."""
    return ROOT / "asr" / "pretrained" / "default.pt"


def _inputs():
    torch.manual_seed(1)
    return torch.randn(3, 21_000) * 0.1, torch.tensor([21_000, 9_001, 15_000])


def test_torchscript_matches_pytorch(model_file, tmp_path):
    out = tmp_path / "model.ts"
    assert (
        main(["export", "--model", str(model_file), "--format", "torchscript", "--out", str(out)])
        == 0
    )
    extra = {"tokens.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    rec = load_model(model_file, precision="fp32")  # the exported graphs compute in float32
    waves, lens = _inputs()
    expected, expected_lens = rec.log_probs(waves, lens)
    got, got_lens = scripted(waves, lens)
    assert torch.equal(expected_lens, got_lens)
    assert (expected - got).abs().max() < 1e-4
    assert json.loads(extra["tokens.json"]) == rec.tokenizer.to_list()


def test_onnx_matches_pytorch(model_file, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    assert main(["export", "--model", str(model_file), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out))
    rec = load_model(model_file, precision="fp32")  # the exported graphs compute in float32
    waves, lens = _inputs()
    expected, expected_lens = rec.log_probs(waves, lens)
    got, got_lens = session.run(None, {"waves": waves.numpy(), "wav_lens": lens.numpy()})
    assert (got_lens == expected_lens.numpy()).all()
    assert abs(got - expected.numpy()).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["tokens"]) == rec.tokenizer.to_list()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # one file, no .onnx.data


def test_onnx_over_the_one_file_limit_keeps_its_weights_beside_it_and_says_so(
    model_file, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("onnxscript")
    import asr.export

    monkeypatch.setattr(asr.export, "ONNX_ONE_FILE_BYTES", 0)  # as if past protobuf's 2 GB
    out = tmp_path / "model.onnx"
    assert main(["export", "--model", str(model_file), "--format", "onnx", "--out", str(out)]) == 0
    data = tmp_path / "model.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    printed = capsys.readouterr().out
    assert f"wrote {out} (" in printed and f"and its weights, {data} (" in printed
    assert "keep both" in printed
    # the .onnx names its weights' file and loads them from it (not run here: a second export in
    # one process comes out with fixed shapes, a torch.onnx quirk test_onnx_matches_pytorch avoids)
    import onnx

    proto = onnx.load(str(out))
    assert {e.key for e in proto.metadata_props} >= {"tokens", "sample_rate"}
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    external = onnx.load(str(out), load_external_data=False).graph.initializer
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in external)
    monkeypatch.undo()  # a small model again, over the same name: one file, the stale .data gone
    assert main(["export", "--model", str(model_file), "--format", "onnx", "--out", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_export_averages_model_files_and_refuses_another_models(model_file, tmp_path, capsys):
    """asr export --average: the element-wise mean of several files' weights, as one model file."""
    record = torch.load(model_file, weights_only=True)
    other = {**record, "state_dict": {k: v.float() * 0.5 for k, v in record["state_dict"].items()}}
    other_path = tmp_path / "other.pt"
    torch.save(other, other_path)
    out = tmp_path / "mean.pt"
    argv = ["export", "--model", str(model_file), "--average", str(other_path), "--out", str(out)]
    assert main(argv) == 0
    saved = torch.load(out, weights_only=True)
    assert [part["path"] for part in saved["info"]["averaged_from"]] == [
        str(model_file),
        str(other_path),
    ]
    assert saved["tokens"] == record["tokens"] and saved["model"] == record["model"]
    for k, v in record["state_dict"].items():
        assert torch.allclose(saved["state_dict"][k], v.float() * 0.75, atol=1e-6), k
    assert load_model(out, precision="fp32").transcribe(torch.zeros(8000)).text is not None

    # another vocabulary, model config or shape is refused by name and nothing is written
    first_weight = next(iter(record["state_dict"]))
    lacking = {k: v for k, v in record["state_dict"].items() if k != first_weight}
    for name, change, says in (
        ("vocab.pt", {"tokens": record["tokens"][:-1] + ["#"]}, "vocabulary differs"),
        ("hop.pt", {"features": {**record["features"], "hop_ms": 20.0}}, "features config differs"),
        # a config its weights do not fit is refused before it is built or read
        ("wide.pt", {"model": {**record["model"], "hidden_size": 7}}, "do not fit the model"),
        (
            "fewer.pt",
            {"state_dict": lacking},
            f"do not fit .*{first_weight} is missing in the file",
        ),
    ):
        torch.save({**record, **change}, tmp_path / name)
        bad_out = tmp_path / f"mean_{name}"
        argv = ["export", "--model", str(model_file), "--average", str(tmp_path / name)]
        assert main([*argv, "--out", str(bad_out)]) == 2
        err = capsys.readouterr().err
        assert name in err and re.search(says, err), err
        assert not bad_out.exists()


def test_a_file_with_lhuc_scales_averages_with_a_plain_one(model_file, tmp_path):
    """A file trained with LHUC scales (model.lhuc) averages as the plain model they fold into."""
    record = torch.load(model_file, weights_only=True)
    assert record["state_dict"]["output.weight"].dtype == torch.float16  # a release file
    m = record["model"]
    size = m["hidden_size"] * (2 if m["bidirectional"] else 1)
    scales = {f"lhuc.{i}": torch.linspace(-1, 1, size) for i in range(m["num_layers"])}
    scaled = {**record, "model": {**m, "lhuc": True}, "state_dict": record["state_dict"] | scales}
    torch.save(scaled, tmp_path / "lhuc.pt")
    out = tmp_path / "mean.pt"
    argv = ["export", "--model", str(tmp_path / "lhuc.pt"), "--average", str(model_file)]
    assert main([*argv, "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["model"]["lhuc"] is False
    # folded in float32, as a float16 release file counts as its float32 values
    folded = fold_lhuc({k: v.float() for k, v in scaled["state_dict"].items()})
    assert saved["state_dict"].keys() == record["state_dict"].keys()
    for k, v in record["state_dict"].items():
        want = (folded[k].float() + v.float()) / 2
        assert torch.allclose(saved["state_dict"][k], want, atol=1e-6), k
    assert not torch.equal(folded["output.weight"], record["state_dict"]["output.weight"])
    # exported alone (here as float16) it is a plain model file too
    half = tmp_path / "half.pt"
    argv = ["export", "--model", str(tmp_path / "lhuc.pt"), "--half", "--out", str(half)]
    assert main(argv) == 0
    exported = torch.load(half, weights_only=True)
    assert exported["model"]["lhuc"] is False and "lhuc.0" not in exported["state_dict"]
    assert torch.equal(exported["state_dict"]["output.weight"], folded["output.weight"].half())
