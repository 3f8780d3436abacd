"""Training throughput of model configs on real utterances, in float32 and bfloat16 side by side.

Prints one table per model config, one column per precision:
- the matrix-multiply peak of that precision (2048 x 2048), measured in the same run: the
  baseline every ratio is taken against;
- the recurrent layers alone (forward + backward) in achieved GFLOP/s, for our exact dense scheme
  (backward direction reversed within each length) and, in fp32, PyTorch's packed bidirectional
  LSTM;
- full training steps (features, SpecAugment, model, CTC loss, backward, AdamW) in seconds of
  audio per second of wall time, and their speed-up over fp32.

    python benchmarks/train_throughput.py --manifest data/default/librispeech/train.jsonl \
        -c conf/model/small.yaml -c conf/model/medium.yaml
    python benchmarks/train_throughput.py --device cuda ...   # on a GPU

FLOPs are counted analytically: a recurrent layer does ``2 * gates * H * (I + H)`` multiply-adds x2
per frame per direction in the forward pass, and twice that in the backward pass (gates: LSTM 4,
GRU 3, RNN 1); element-wise work is not counted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from asr.augment import spec_augment
from asr.config import load_config
from asr.data import BucketBatchSampler, SpeechDataset, collate, normalized_utterances
from asr.features import FeatureExtractor
from asr.model import AcousticModel, ctc_loss
from asr.precision import PrecisionChoice, resolve_precision
from asr.text import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10
) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def rnn_train_flops(model: AcousticModel, frames: int) -> float:
    """Forward + backward FLOPs of the recurrent stack over ``frames`` real output frames."""
    total = 0.0
    for layer in model.rnns:
        for rnn in (layer.fwd, layer.bwd):
            if rnn is not None:
                g, h, i = GATES[model.cfg.rnn_type], rnn.hidden_size, rnn.input_size
                total += 3 * 2 * g * h * (i + h) * frames  # forward 1x, backward 2x
    return total


def time_it(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeats


def measure(cfg, batches, device: torch.device, precision: PrecisionChoice, packed: bool) -> dict:
    """Time full training steps and the recurrent layers alone under ``precision``."""
    torch.manual_seed(0)
    tok = Tokenizer()
    features = FeatureExtractor(cfg.features).to(device)
    model = AcousticModel(cfg.model, features.num_features, len(tok)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.dtype == torch.float16)

    def step(batch):
        feats, feat_lens = features(batch.waves, batch.wav_lens)
        feats = spec_augment(feats, feat_lens, cfg.augment.specaug)
        with precision.autocast(device):
            log_probs, out_lens = model(feats, feat_lens)
        loss = ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()

    step(batches[0])  # warm-up
    audio = sum(float(b.wav_lens.sum()) for b in batches) / cfg.features.sample_rate
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    sync(device)
    train_time = time.perf_counter() - t0

    # the recurrent stack alone, on the same shapes: ours (dense, exact) and packed bidirectional
    ours_time = packed_time = flops = 0.0
    for batch in batches:
        with torch.no_grad():
            feats, feat_lens = features(batch.waves, batch.wav_lens)
            x = model.subsample(feats, feat_lens).detach()
            out_lens = model.output_lengths(feat_lens)
        flops += rnn_train_flops(model, int(out_lens.sum()))

        def ours(x=x, out_lens=out_lens):
            h = x.requires_grad_()
            with precision.autocast(device):
                for layer in model.rnns:
                    h = layer(h, out_lens)
            h.float().sum().backward()

        ours_time += time_it(ours, 2, device)
        if packed and cfg.model.bidirectional and cfg.model.rnn_type == "lstm":
            packed_rnns = [
                nn.LSTM(
                    layer.fwd.input_size,
                    layer.fwd.hidden_size,
                    batch_first=True,
                    bidirectional=True,
                ).to(device)
                for layer in model.rnns
            ]

            def run_packed(x=x, out_lens=out_lens, packed_rnns=packed_rnns):
                h = x.requires_grad_()
                for rnn in packed_rnns:
                    p = nn.utils.rnn.pack_padded_sequence(
                        h, out_lens.cpu(), batch_first=True, enforce_sorted=False
                    )
                    h, _ = nn.utils.rnn.pad_packed_sequence(
                        rnn(p)[0], batch_first=True, total_length=x.shape[1]
                    )
                h.sum().backward()

            packed_time += time_it(run_packed, 2, device)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "params": n_params,
        "audio": audio,
        "step": audio / train_time,
        "rnn": flops / ours_time / 1e9,
        "packed": flops / packed_time / 1e9 if packed_time else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=ROOT / "examples/examples.jsonl")
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        type=Path,
        default=None,
        help="a model config to measure; repeat for several (each measured on its own)",
    )
    parser.add_argument("--batches", type=int, default=8, help="training batches to time")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma-separated precisions to compare (fp32 first: the speed-up baseline)",
    )
    parser.add_argument("--no-packed", action="store_true", help="skip the packed-LSTM comparison")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    choices = [resolve_precision(p.strip(), device) for p in args.precisions.split(",")]
    peaks = {c.name: matmul_gflops(device, c.dtype or torch.float32) for c in choices}

    configs = args.config or [ROOT / "conf/model/small.yaml"]
    tok = Tokenizer()
    utts = [u for u in normalized_utterances(str(args.manifest)) if not tok.oov_chars(u.text)]
    print(
        f"{args.batches} batches from {args.manifest}; {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; device {device_name(device)}; "
        + ", ".join(f"{c.name}: {c.reason}" for c in choices)
    )
    for path in configs:
        cfg = load_config([path], args.overrides)
        dataset = SpeechDataset(utts, tok, cfg.features.sample_rate)
        sampler = BucketBatchSampler(
            dataset.durations(), cfg.data.batch_seconds, cfg.data.max_batch_size, seed=0
        )
        batches = [
            collate([dataset[i] for i in b]).to(device) for b in list(sampler)[: args.batches]
        ]
        results = {
            c.name: measure(cfg, batches, device, c, packed=not args.no_packed and i == 0)
            for i, c in enumerate(choices)
        }
        first = results[choices[0].name]
        print()
        print(
            f"{path.stem}: {first['params'] / 1e6:.2f}M parameters ({cfg.model.num_layers} x "
            f"{cfg.model.rnn_type} {cfg.model.hidden_size}, subsample {cfg.model.subsample} "
            f"x{cfg.model.subsample_factor}); {first['audio']:.1f} s of audio"
        )
        names = list(results)
        print("| measure | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        print(
            "| matmul 2048x2048 peak, GFLOP/s | "
            + " | ".join(f"{peaks[n]:.0f}" for n in names)
            + " |"
        )
        print(
            "| RNN layers fwd+bwd (ours, exact), GFLOP/s (of that peak) | "
            + " | ".join(
                f"{results[n]['rnn']:.0f} ({results[n]['rnn'] / peaks[n]:.2f})" for n in names
            )
            + " |"
        )
        if first["packed"]:
            print(
                f"| RNN layers fwd+bwd, packed bi-LSTM, GFLOP/s | {first['packed']:.0f} "
                f"({first['packed'] / peaks[names[0]]:.2f}) |" + " - |" * (len(names) - 1)
            )
        print(
            "| full training step, audio s/s (speed-up) | "
            + " | ".join(
                f"{results[n]['step']:.0f} ({results[n]['step'] / first['step']:.2f}x)"
                for n in names
            )
            + " |"
        )


if __name__ == "__main__":
    main()
