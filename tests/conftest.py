"""Shared fixtures: audio made in the test, and ten FSDD clips shipped in tests/data/."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def tone(
    seconds: float, sr: int, freq: float = 440.0, amp: float = 0.3, seed: int = 0
) -> np.ndarray:
    """A tone with a little noise, float32 in [-1, 1]."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def write_audio(path: Path, data: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    """Write audio in the format its extension names (``.opus``: Ogg Opus)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".opus":
        sf.write(str(path), data, sr, format="OGG", subtype=subtype or "OPUS")
    else:
        sf.write(str(path), data, sr, subtype=subtype)
    return path


_LOCAL = ("127.0.0.1", "localhost", "::1", None)


@pytest.fixture(autouse=True, scope="session")
def _offline():
    """Tests run offline: a connection or name lookup beyond this machine fails the test that
    tries it (the download test fakes ``urlopen``; distributed tests use the loopback)."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address, *args, **kwargs):
        if isinstance(address, tuple) and address[0] not in _LOCAL:
            raise RuntimeError(f"tests must run offline: connection to {address}")
        return connect(sock, address, *args, **kwargs)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL:
            raise RuntimeError(f"tests must run offline: name lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = guarded_connect, guarded_getaddrinfo
    yield
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model file of ``conf/model/tiny.yaml`` trained two epochs on the ten example clips."""
    from asr.config import load_config
    from asr.train import train

    out = tmp_path_factory.mktemp("tiny_model")
    manifest = DATA / "fsdd.jsonl"
    cfg = load_config(
        [ROOT / "conf/model/tiny.yaml"],
        [f"data.train={manifest}", f"data.valid={manifest}", "data.num_workers=0",
         "data.batch_seconds=2.0", "train.epochs=2", "train.warmup_steps=2"],
    )  # fmt: skip
    train(cfg, out, progress=False)
    return out / "last.pt"


@pytest.fixture
def example_manifest() -> Path:
    """Ten FSDD clips (test-split recordings) with their transcripts."""
    return DATA / "fsdd.jsonl"


@pytest.fixture
def example_records(example_manifest) -> list[dict]:
    return [json.loads(line) for line in example_manifest.read_text().splitlines()]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
