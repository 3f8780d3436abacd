"""Numeric precision: which dtype the model's matrix products run in, chosen once per device.

``auto`` picks bfloat16 autocast where the hardware multiplies bfloat16 natively (a CPU with
AMX-BF16 or AVX512-BF16 instructions, a CUDA device that supports bf16), float16 autocast on an
older CUDA device (training then scales the loss), and float32 elsewhere; ``fp32``, ``bf16`` and
``fp16`` (CUDA only) force one. Under autocast only the recurrent layers, convolutions and linear
layers compute in bfloat16: the features, log-softmax and CTC loss stay float32 (the model casts
its logits back before the log-softmax), and so do master weights and optimizer state, since
autocast casts a float32 weight per use and never stores the copy. Inference
(:class:`asr.transcribe.Recognizer`) runs a stored copy of the model in the chosen dtype instead:
the same numbers as autocast, without casting every weight again on every call, which at batch
size 1 took as long as the LSTMs themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class PrecisionChoice:
    """What :func:`resolve_precision` chose: ``dtype`` (``None``: float32, no autocast) and why."""

    dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp16" if self.dtype else "fp32"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context to run a model's forward pass in (a no-op for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def cpu_bf16_native() -> tuple[bool, str]:
    """Whether this CPU multiplies bfloat16 in hardware, and the instruction set that does it."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch: ask oneDNN's own probes
        caps = {
            "amx_bf16": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
            "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        }
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")):
        if caps.get(flag):
            return True, name
    return False, "no AMX-BF16 or AVX512-BF16"


def resolve_precision(name: str, device: torch.device | str) -> PrecisionChoice:
    """Turn a ``precision`` setting into a dtype for ``device``, with the reason in words.

    Args:
        name: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: where the model runs.

    Raises:
        ValueError: an unknown name, ``bf16`` on a CUDA device without it, or ``fp16`` off CUDA.
    """
    device = torch.device(device)
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "fp32":
        return PrecisionChoice(None, "fp32 asked for")
    if name == "fp16":
        if device.type != "cuda":
            raise ValueError(f"precision fp16 is for CUDA devices, not {device}")
        return PrecisionChoice(torch.float16, "fp16 autocast: asked for")
    if device.type == "cuda":
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if supported:
            why = (
                "asked for"
                if name == "bf16"
                else f"{torch.cuda.get_device_name(device)} supports it"
            )
            return PrecisionChoice(torch.bfloat16, f"bf16 autocast: {why}")
        if name == "bf16":
            raise ValueError(f"precision bf16: {device} does not support bfloat16")
        return PrecisionChoice(torch.float16, f"fp16 autocast: {device} has no bfloat16 support")
    if device.type != "cpu":
        if name == "bf16":
            return PrecisionChoice(torch.bfloat16, "bf16 autocast: asked for")
        return PrecisionChoice(None, f"fp32: no bfloat16 detection for {device.type}")
    native, what = cpu_bf16_native()
    if name == "bf16":
        suffix = f" (native: {what})" if native else f" (emulated: this CPU has {what}; slow)"
        return PrecisionChoice(torch.bfloat16, "bf16 autocast: asked for" + suffix)
    if native:
        return PrecisionChoice(torch.bfloat16, f"bf16 autocast: this CPU has {what}")
    return PrecisionChoice(None, f"fp32: this CPU has {what}")
