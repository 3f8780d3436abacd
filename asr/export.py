"""Exporting a model for use without this package: TorchScript or ONNX.

Both files take the whole front end with them: ``waves (B, N)`` float32 at the model's sample rate
and ``wav_lens (B,)`` int64 in, ``log_probs (B, T', V)`` and ``out_lens (B,)`` out. The vocabulary
travels beside them (TorchScript: the ``tokens.json`` extra file; ONNX: the ``tokens`` metadata
entry), so a consumer can greedy-decode without asr.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from asr.transcribe import Recognizer

ONNX_ONE_FILE_BYTES = 1_800_000_000  # float32 weights up to this go inside the .onnx (2 GB cap)


class _Pipeline(nn.Module):
    """Features and acoustic model as one module: waveforms in, log-probabilities out."""

    def __init__(self, rec: Recognizer) -> None:
        super().__init__()
        self.features = rec.features
        self.model = rec.model

    def forward(
        self, waves: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats, feat_lens = self.features(waves, wav_lens)
        return self.model(feats, feat_lens)


def _example(rec: Recognizer) -> tuple[torch.Tensor, torch.Tensor]:
    # two lengths of opposite parity, so no shape-dependent branch is frozen for one case only
    n = rec.sample_rate
    return torch.randn(2, n), torch.tensor([n, n * 3 // 5 + 161])


def export_torchscript(rec: Recognizer, path: str | Path) -> Path:
    """Trace the pipeline to TorchScript (``torch.jit.load`` reads it back)."""
    path = Path(path)
    module = _Pipeline(rec).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, _example(rec), check_trace=False)
    extra = {
        "tokens.json": json.dumps(rec.tokenizer.to_list()),
        "sample_rate": str(rec.sample_rate),
    }
    torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def export_onnx(rec: Recognizer, path: str | Path) -> Path:
    """Export the pipeline to ONNX (opset 17+) with dynamic batch and length axes.

    Raises:
        RuntimeError: the ``onnx``/``onnxscript`` packages are missing (``pip install onnx onnxscript``).
    """
    try:
        import onnx
    except ImportError:
        raise RuntimeError(
            "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript"
        ) from None
    path = Path(path)
    module = _Pipeline(rec).eval()
    # one file when the weights fit in protobuf's 2 GB; past that, ONNX keeps them beside it
    external = sum(t.numel() * 4 for t in module.state_dict().values()) > ONNX_ONE_FILE_BYTES
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=400)
    with torch.no_grad():
        torch.onnx.export(
            module,
            _example(rec),
            str(path),
            input_names=["waves", "wav_lens"],
            output_names=["log_probs", "out_lens"],
            dynamic_shapes={"waves": {0: batch, 1: samples}, "wav_lens": {0: batch}},
            dynamo=True,
            external_data=external,
        )
    proto = onnx.load(str(path))  # the weights too, from the external file if any
    for key, value in (
        ("tokens", json.dumps(rec.tokenizer.to_list())),
        ("sample_rate", str(rec.sample_rate)),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if external:
        onnx.save(proto, str(path), save_as_external_data=True, location=onnx_data_path(path).name)
    else:
        onnx.save(proto, str(path))
        onnx_data_path(path).unlink(missing_ok=True)  # a bigger model's before it: now stale
    return path


def onnx_data_path(path: str | Path) -> Path:
    """Where an ONNX export over :data:`ONNX_ONE_FILE_BYTES` keeps its weights: ``NAME.data``
    beside it (ONNX's external data; the ``.onnx`` file names it, and needs it to load)."""
    return Path(path).with_name(Path(path).name + ".data")
