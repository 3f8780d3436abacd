"""Training throughput of a model config on real utterances, and how close its RNNs get to the matmul peak.

Prints one table:
- full training steps (features, SpecAugment, model, CTC loss, backward, AdamW) in seconds of audio
  per second of wall time;
- the recurrent layers alone (forward + backward) in achieved GFLOP/s, for our exact dense scheme
  (backward direction reversed within each length) and for PyTorch's packed bidirectional LSTM;
- the float32 matrix-multiply GFLOP/s measured in the same run, as the baseline for the ratio.

    python benchmarks/train_throughput.py --manifest data/fsdd/train.jsonl -c conf/model/small.yaml
    python benchmarks/train_throughput.py --device cuda --amp ...   # on a GPU (bf16 autocast)

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

from asr.config import load_config
from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.features import FeatureExtractor, spec_augment
from asr.model import AcousticModel
from asr.text import Tokenizer
from asr.train import ctc_loss, normalized_utterances

ROOT = Path(__file__).resolve().parent.parent
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=ROOT / "examples/examples.jsonl")
    parser.add_argument("-c", "--config", action="append", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=8, help="training batches to time")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--amp", action="store_true", help="bf16/fp16 autocast in the training step (CUDA only)"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    use_amp = args.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    cfg = load_config(args.config or [ROOT / "conf/model/small.yaml"], args.overrides)
    tok = Tokenizer()
    utts = [u for u in normalized_utterances(str(args.manifest)) if not tok.oov_chars(u.text)]
    dataset = SpeechDataset(utts, tok, cfg.features.sample_rate)
    sampler = BucketBatchSampler(
        dataset.durations(), cfg.data.batch_seconds, cfg.data.max_batch_size, seed=0
    )
    batches = [collate([dataset[i] for i in b]).to(device) for b in list(sampler)[: args.batches]]
    features = FeatureExtractor(cfg.features).to(device)
    model = AcousticModel(cfg.model, features.num_features, len(tok)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch):
        feats, feat_lens = features(batch.waves, batch.wav_lens)
        feats = spec_augment(feats, feat_lens, cfg.augment.specaug)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            log_probs, out_lens = model(feats, feat_lens)
        loss = ctc_loss(log_probs, out_lens, batch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

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
            for layer in model.rnns:
                h = layer(h, out_lens)
            h.sum().backward()

        ours_time += time_it(ours, 2, device)
        if cfg.model.bidirectional:
            packed_rnns = [
                nn.LSTM(
                    layer.fwd.input_size,
                    layer.fwd.hidden_size,
                    batch_first=True,
                    bidirectional=True,
                ).to(device)
                if cfg.model.rnn_type == "lstm"
                else None
                for layer in model.rnns
            ]
            if all(packed_rnns):

                def packed(x=x, out_lens=out_lens, packed_rnns=packed_rnns):
                    h = x.requires_grad_()
                    for rnn in packed_rnns:
                        p = nn.utils.rnn.pack_padded_sequence(
                            h, out_lens.cpu(), batch_first=True, enforce_sorted=False
                        )
                        h, _ = nn.utils.rnn.pad_packed_sequence(
                            rnn(p)[0], batch_first=True, total_length=x.shape[1]
                        )
                    h.sum().backward()

                packed_time += time_it(packed, 2, device)

    peak = matmul_gflops(device)
    ours_gflops = flops / ours_time / 1e9
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params / 1e6:.2f}M parameters ({cfg.model.num_layers} x {cfg.model.rnn_type} "
        f"{cfg.model.hidden_size}, subsample {cfg.model.subsample} x{cfg.model.subsample_factor}); "
        f"{len(batches)} batches, {audio:.1f} s of audio from {args.manifest}; "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; device {device_name(device)}"
        + (f", {amp_dtype} autocast in the training step" if use_amp else "")
    )
    print()
    print(f"| {'measure':<46} | {'value':>12} | {'vs fp32 matmul':>14} |")
    print(f"|{'-' * 48}|{'-' * 14}|{'-' * 16}|")
    print(f"| {'float32 matmul 2048x2048 (baseline), GFLOP/s':<46} | {peak:12.1f} | {'1.00':>14} |")
    print(
        f"| {'RNN layers, fwd+bwd, ours (exact dense), GFLOP/s':<46} | {ours_gflops:12.1f} | {ours_gflops / peak:14.2f} |"
    )
    if packed_time:
        g = flops / packed_time / 1e9
        print(
            f"| {'RNN layers, fwd+bwd, packed bi-LSTM, GFLOP/s':<46} | {g:12.1f} | {g / peak:14.2f} |"
        )
    print(
        f"| {'full training step, audio seconds per second':<46} | {audio / train_time:12.1f} | {'':>14} |"
    )
    if packed_time:
        print(
            f"\nours is {packed_time / ours_time:.2f}x faster than packed sequences on these batches"
        )


if __name__ == "__main__":
    main()
