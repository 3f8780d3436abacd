"""Every training-only transform, behind one object: :class:`Augment`.

Waves in, waves out: speed perturbation, band-limiting, cropping, pauses, white noise and real
noise recordings (a :class:`NoiseBank`) per utterance (:class:`WaveAugment`), then a batch's
utterances joined with pauses between (:class:`JoiningCollate`). Features in, features out: vocal
tract length perturbation inside the feature extractor, then SpecAugment (:class:`FeatureAugment`,
over the pure functions :func:`warp_frequencies` and :func:`spec_augment`). Each part checks the
options it uses. All of it is off at evaluation.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import torch
import torchaudio.functional as AF

from asr.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, load_audio
from asr.config import AugmentConfig, SpecAugmentConfig
from asr.data import Batch, Example, collate, read_manifest, seeded
from asr.features import FeatureExtractor


def speed_perturb(wave: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``wave`` ``factor`` times faster (pitch moves with it, as in Ko et al., 2015).

    Resampling by ``1/factor`` and reading the result at the original rate is exactly a speed change.
    """
    if factor == 1.0:
        return wave
    orig = int(round(100 * factor))  # the ratio in hundredths; torchaudio reduces it by the gcd
    return AF.resample(wave, orig, 100)


def narrowband(wave: torch.Tensor, sample_rate: int, band_rate: int = 8_000) -> torch.Tensor:
    """Keep only what a ``band_rate`` recording holds (below ``band_rate / 2`` Hz), at ``sample_rate``.

    Resampling down and back up is what loading an 8 kHz file (telephone speech, FSDD) at 16 kHz
    does, so wide-band training speech learns to sound like those corpora.
    """
    if band_rate >= sample_rate:
        return wave
    down = AF.resample(wave, sample_rate, band_rate)
    return AF.resample(down, band_rate, sample_rate)[: len(wave)]


def pad_with_pauses(
    wave: torch.Tensor,
    before: int,
    after: int,
    sample_rate: int = SAMPLE_RATE,
    generator: torch.Generator | None = None,
    quieter_db: float = 0.0,
) -> torch.Tensor:
    """Add ``before`` and ``after`` samples of pause, filled with noise at the clip's own floor.

    The floor is the RMS of the quietest tenth of the clip's 10 ms frames, so the new pause sounds
    like the room the clip was recorded in, not like digital silence. With ``quieter_db`` > 0 the
    pause is a random 0..``quieter_db`` dB below that floor (as behind a noise gate).
    """
    if before <= 0 and after <= 0:
        return wave
    hop = sample_rate // 100
    n = len(wave) // hop
    if n > 0:
        rms = wave[: n * hop].reshape(n, hop).pow(2).mean(1).sqrt()  # (n,)
        floor = float(torch.quantile(rms, 0.1))
    else:
        floor = float(wave.pow(2).mean().sqrt()) if len(wave) else 0.0
    if quieter_db > 0:
        floor *= 10 ** (-quieter_db * float(torch.rand((), generator=generator)) / 20)
    floor = max(floor, 1e-5)  # -100 dBFS at least: a pause is never exactly zero
    noise = torch.randn(before + after, generator=generator) * floor
    return torch.cat([noise[:before], wave, noise[before:]])


def add_noise(
    wave: torch.Tensor, snr_db: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add white Gaussian noise at ``snr_db`` decibels below the signal's power."""
    power = wave.pow(2).mean().clamp(min=1e-10)
    noise = torch.randn(wave.shape, generator=generator)
    return wave + noise * torch.sqrt(power / (10 ** (snr_db / 10)))


class NoiseBank:
    """Real noise recordings to mix into training audio: manifests' audio, or folders of files.

    Speech Commands' ``_silence_`` and ``_background_noise_`` clips (``asr prepare speechcommands``
    writes them to ``noise.jsonl``), or any folder of audio (searched recursively). The files are
    read on first use, resampled, and kept in memory (each loader worker has its own copy).

    Args:
        sources: comma-separated manifests (``.jsonl``) and folders.
        sample_rate: the model's rate in Hz.
    """

    def __init__(self, sources: str, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.paths: list[str] = []
        for source in (s.strip() for s in sources.split(",")):
            if not source:
                continue
            path = Path(source)
            if path.is_dir():
                self.paths += sorted(
                    str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                )
            elif path.is_file():
                self.paths += [u.audio for u in read_manifest(path)]
            else:
                raise FileNotFoundError(f"augment.noise_sources: {source}: no such file or folder")
        if not self.paths:
            raise ValueError(f"augment.noise_sources: no audio files in {sources!r}")
        self._waves: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def wave(self, index: int) -> torch.Tensor:
        if index not in self._waves:
            self._waves[index] = load_audio(self.paths[index], self.sample_rate)
        return self._waves[index]

    def sample(self, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``length`` samples of one recording, from a random place, looped if it is shorter."""
        noise = self.wave(int(torch.randint(len(self.paths), (), generator=generator)))
        if len(noise) == 0:
            return torch.zeros(length)
        start = int(torch.randint(len(noise), (), generator=generator))
        reps = -(-(start + length) // len(noise))
        return noise.repeat(reps)[start : start + length]


def mix_at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave`` plus ``noise`` (same length) scaled to ``snr_db`` decibels below ``wave``'s power."""
    power = wave.pow(2).mean().clamp(min=1e-10)
    noise_power = noise.pow(2).mean()
    if noise_power <= 1e-12:  # a digitally silent clip adds nothing
        return wave
    return wave + noise * torch.sqrt(power / (noise_power * 10 ** (snr_db / 10)))


def _check(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"augment.{key} must be {rule}, got {value}")


def _check_prob(cfg: AugmentConfig, *keys: str) -> None:
    for key in keys:
        value = getattr(cfg, key)
        _check(0.0 <= value <= 1.0, key, "in [0, 1]", value)


def _check_span(cfg: AugmentConfig, key: str, least: float | None = None) -> None:
    """A ``[low, high]`` option: ``low <= high``, and ``least <= low`` if given."""
    value = getattr(cfg, key)
    ok = len(value) == 2 and value[0] <= value[1] and (least is None or least <= value[0])
    bound = "low <= high" if least is None else f"{least:g} <= low <= high"
    _check(ok, key, f"[low, high], {bound}", value)


class WaveAugment:
    """One utterance's waveform perturbations (speed, band-limiting, cropping, pauses, real and
    white noise), in that order, each with its own chance.

    Randomness comes from torch's global generator, which :meth:`Augment.waves` seeds per item
    from ``(train.seed, epoch, utterance)`` (:func:`asr.data.seeded`), so a seeded run, and a
    resumed one, sees the same perturbations whatever the number of loader workers.

    Raises:
        ValueError: an option this transform uses is out of range, named.
        FileNotFoundError: a ``noise_sources`` entry does not exist.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int = SAMPLE_RATE) -> None:
        _check_prob(
            cfg, "noise_prob", "narrowband_prob", "crop_end_prob", "pad_prob", "real_noise_prob"
        )
        factors = cfg.speed_factors
        _check(all(f > 0 for f in factors), "speed_factors", "positive", factors)
        _check(0 <= cfg.crop_end_max < 1, "crop_end_max", "in [0, 1)", cfg.crop_end_max)
        _check(cfg.pad_max >= 0, "pad_max", ">= 0", cfg.pad_max)
        _check(cfg.pause_quieter_db >= 0, "pause_quieter_db", ">= 0", cfg.pause_quieter_db)
        _check_span(cfg, "noise_snr_db")
        _check_span(cfg, "real_noise_snr_db")
        if cfg.real_noise_prob > 0 and not cfg.noise_sources:
            raise ValueError("augment.real_noise_prob > 0 needs augment.noise_sources")
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.noise_bank = (
            NoiseBank(cfg.noise_sources, sample_rate)
            if cfg.noise_sources and cfg.real_noise_prob > 0
            else None
        )

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave (N,)`` perturbed; its length may change (speed, cropping, pauses)."""
        factors = self.cfg.speed_factors
        if factors:
            wave = speed_perturb(wave, factors[int(torch.randint(len(factors), ()))])
        if self.cfg.narrowband_prob > 0 and float(torch.rand(())) < self.cfg.narrowband_prob:
            wave = narrowband(wave, self.sample_rate)
        if self.cfg.crop_end_prob > 0 and float(torch.rand(())) < self.cfg.crop_end_prob:
            cut = float(torch.rand(())) * self.cfg.crop_end_max
            wave = wave[: max(1, int(round(len(wave) * (1 - cut))))]
        if self.cfg.pad_prob > 0 and float(torch.rand(())) < self.cfg.pad_prob:
            most = self.cfg.pad_max * self.sample_rate
            before, after = (int(float(torch.rand(())) * most) for _ in range(2))
            wave = pad_with_pauses(
                wave, before, after, self.sample_rate, quieter_db=self.cfg.pause_quieter_db
            )
        if self.noise_bank is not None and float(torch.rand(())) < self.cfg.real_noise_prob:
            lo, hi = self.cfg.real_noise_snr_db
            snr = lo + (hi - lo) * float(torch.rand(()))
            wave = mix_at_snr(wave, self.noise_bank.sample(len(wave)), snr)
        if self.cfg.noise_prob > 0 and float(torch.rand(())) < self.cfg.noise_prob:
            lo, hi = self.cfg.noise_snr_db
            wave = add_noise(wave, lo + (hi - lo) * float(torch.rand(())))
        return wave

    @property
    def min_length_ratio(self) -> float:
        """The shortest a clip can become, as a fraction of its length (for the CTC length check)."""
        crop = self.cfg.crop_end_max if self.cfg.crop_end_prob > 0 else 0.0
        return (1 - crop) / max(self.cfg.speed_factors, default=1.0)


def join_groups(
    examples: list[Example],
    pause: tuple[float, float],
    sample_rate: int,
    space_id: int,
    max_size: int = 2,
    quieter_db: float = 0.0,
) -> list[Example]:
    """Join consecutive examples in groups: ``a``, a pause at ``a``'s noise floor, ``b``, a pause
    at ``b``'s floor, ``c`` ...

    The transcript becomes ``a b c`` (labels joined by ``space_id``). One group size, 2..
    ``max_size``, is drawn per call (per batch), and the batch is cut into as few groups as it
    allows, of sizes differing by at most one (13 clips, size 4: 4 + 3 + 3 + 3, not 4 + 4 + 4 + 1),
    so the padded batch stays near its audio plus the pauses. ``max_size=2`` joins pairs: 0+1,
    2+3, ..., an odd last clip alone. ``quieter_db``: see :func:`pad_with_pauses`.
    """
    lo, hi = pause
    size = 2 if max_size <= 2 else int(torch.randint(2, max_size + 1, ()))
    n_groups = -(-len(examples) // size)
    sizes = [len(examples) // n_groups + (k < len(examples) % n_groups) for k in range(n_groups)]
    out, i = [], 0
    for group_size in sizes:
        group, i = examples[i : i + group_size], i + group_size
        waves, labels = [], []
        for k, ex in enumerate(group):
            if k + 1 < len(group):
                gap = int((lo + (hi - lo) * float(torch.rand(()))) * sample_rate)
                waves.append(pad_with_pauses(ex.wave, 0, gap, sample_rate, quieter_db=quieter_db))
            else:
                waves.append(ex.wave)
            labels += ([space_id] if k else []) + ex.labels
        out.append(
            Example(
                "+".join(ex.id for ex in group),
                torch.cat(waves),
                labels,
                " ".join(ex.text for ex in group),
            )
            if len(group) > 1
            else group[0]
        )
    return out


class JoiningCollate:
    """A batch's utterances joined, with probability ``cfg.join_prob``, in groups of
    2..``cfg.join_max`` (:func:`join_groups`), then padded into a :class:`~asr.data.Batch`.

    The draw is seeded by the batch's first item, so a resumed run joins a batch as an unbroken
    one did. Picklable, for loader workers.

    Raises:
        ValueError: ``join_prob``, ``join_pause``, ``join_max`` or ``pause_quieter_db`` out of
            range, named.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int, space_id: int) -> None:
        _check_prob(cfg, "join_prob")
        _check_span(cfg, "join_pause", least=0.0)  # seconds
        _check(cfg.join_max >= 2, "join_max", "at least 2", cfg.join_max)
        _check(cfg.pause_quieter_db >= 0, "pause_quieter_db", ">= 0", cfg.pause_quieter_db)
        self.prob, self.pause = cfg.join_prob, (cfg.join_pause[0], cfg.join_pause[1])
        self.max_size, self.quieter_db = cfg.join_max, cfg.pause_quieter_db
        self.sample_rate, self.space_id = sample_rate, space_id

    def __call__(self, examples: list[Example]) -> Batch:
        with seeded(examples[0].seed + 1 if examples else 0):
            if len(examples) > 1 and self.prob > 0 and float(torch.rand(())) < self.prob:
                examples = join_groups(
                    list(examples),
                    self.pause,
                    self.sample_rate,
                    self.space_id,
                    self.max_size,
                    self.quieter_db,
                )
        return collate(examples)


def spec_augment(
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    cfg: SpecAugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment (Park et al., 2019): zero random frequency bands and time spans.

    Time masks fall inside each utterance's true length and cover at most ``cfg.time_ratio`` of it.

    Args:
        feats: ``(B, T, F)`` normalised features (masked values become 0, the mean).
        feat_lens: ``(B,)``.
        cfg: mask counts and widths.
        generator: random source (the global one by default).

    Returns:
        a masked copy of ``feats``.
    """
    B, T_, F = feats.shape
    device = feats.device
    keep = torch.ones(B, T_, F, dtype=torch.bool, device=device)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(device)

    if cfg.freq_masks > 0 and cfg.freq_width > 0:
        width = (rand(B, cfg.freq_masks) * (cfg.freq_width + 1)).long()  # (B, M)
        start = (rand(B, cfg.freq_masks) * (F - width + 1).clamp(min=1)).long()
        bins = torch.arange(F, device=device)[None, None, :]  # (1, 1, F)
        hit = (bins >= start[..., None]) & (bins < (start + width)[..., None])  # (B, M, F)
        keep &= ~hit.any(1)[:, None, :]
    if cfg.time_masks > 0 and cfg.time_width > 0:
        lens = feat_lens.to(device)
        # (B,): each utterance's widest time mask
        max_w = torch.minimum(
            torch.full_like(lens, cfg.time_width), (lens.float() * cfg.time_ratio).long()
        )
        width = (rand(B, cfg.time_masks) * (max_w[:, None] + 1)).long()  # (B, M)
        start = (rand(B, cfg.time_masks) * (lens[:, None] - width + 1).clamp(min=1)).long()
        frames = torch.arange(T_, device=device)[None, None, :]  # (1, 1, T)
        hit = (frames >= start[..., None]) & (frames < (start + width)[..., None])  # (B, M, T)
        keep &= ~hit.any(1)[:, :, None]
    return feats * keep


def warp_frequencies(
    spec: torch.Tensor, factors: torch.Tensor, boundary: float = 0.6
) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton, 2013) of a linear-frequency spectrogram.

    Each utterance's frequency axis is scaled by its factor ``a`` (its formants move from ``f`` to
    ``a * f``, as a shorter or longer vocal tract would put them) up to a boundary, above which a
    second straight line takes the rest of the band to the Nyquist frequency, so nothing is cut or
    left empty. Frames are warped one at a time: padding never changes a result.

    Args:
        spec: ``(B, F, T)`` power (or magnitude) spectrogram, bin ``F - 1`` at the Nyquist frequency.
        factors: ``(B,)`` warp factors, e.g. drawn from [0.9, 1.1]; 1 leaves an utterance as it is.
        boundary: where the scaled part ends, as a fraction of the band (for ``a`` <= 1).

    Returns:
        ``(B, F, T)``, each output bin read from the input by linear interpolation.
    """
    n_bins = spec.shape[1]
    top = float(n_bins - 1)
    alpha = factors.to(spec.device, torch.float32)[:, None]  # (B, 1)
    out_bins = torch.arange(n_bins, device=spec.device, dtype=torch.float32)[None, :]  # (1, F)
    # the output bin g is read from input bin g / a below the knee, and on a line to the top above
    knee_out = boundary * top * torch.clamp(alpha, max=1.0)  # (B, 1)
    knee_in = knee_out / alpha
    above = knee_in + (top - knee_in) * (out_bins - knee_out) / (top - knee_out)
    src = torch.where(out_bins <= knee_out, out_bins / alpha, above).clamp(0, top)  # (B, F)
    low = src.floor().long().clamp(max=n_bins - 2)
    frac = (src - low)[:, :, None]  # (B, F, 1)
    index = low[:, :, None].expand(-1, -1, spec.shape[2])
    lower = spec.gather(1, index)
    upper = spec.gather(1, index + 1)
    return lower * (1 - frac) + upper * frac  # exact at whole bins, the top one included


class FeatureAugment:
    """A batch's training features: each utterance's frequency axis warped by a factor in
    ``1 +- cfg.warp`` (vocal tract length perturbation, inside the extractor, before the mel
    filterbank), then SpecAugment's masks if ``cfg.spec_augment``.

    Draws from torch's global generator in the training process: checkpoints carry its state.

    Raises:
        ValueError: ``warp`` or a ``specaug`` option out of range, named.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        _check(0 <= cfg.warp < 0.5, "warp", "in [0, 0.5)", cfg.warp)
        spec = cfg.specaug
        for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
            _check(getattr(spec, key) >= 0, f"specaug.{key}", ">= 0", getattr(spec, key))
        _check(0 <= spec.time_ratio <= 1, "specaug.time_ratio", "in [0, 1]", spec.time_ratio)
        self.warp, self.spec_augment, self.specaug = cfg.warp, cfg.spec_augment, spec

    def __call__(
        self, extractor: FeatureExtractor, waves: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves (B, N)``, ``wav_lens (B,)`` -> augmented ``feats (B, T, F)``, ``feat_lens (B,)``."""
        warp = None
        if self.warp > 0:  # one factor per utterance, uniform in 1 +- warp
            factors = 1 + self.warp * (2 * torch.rand(len(wav_lens)) - 1)  # (B,)
            warp = partial(warp_frequencies, factors=factors)
        feats, feat_lens = extractor(waves, wav_lens, warp)
        if self.spec_augment:
            feats = spec_augment(feats, feat_lens, self.specaug)
        return feats, feat_lens


class Augment:
    """Every training-only transform behind one object: waves in, waves out; features in,
    features out.

    :meth:`waves` is the training loader's collate: once per batch, in the loader workers (so the
    audio work overlaps training), it perturbs each utterance (:class:`WaveAugment`) under the
    utterance's own seed, joins the batch's utterances (:class:`JoiningCollate`) and pads them.
    :meth:`features` is what the training step calls once per batch for its features
    (:class:`FeatureAugment`). Each part checks the options it uses when it is built.

    Args:
        cfg: the ``augment`` section.
        sample_rate: the model's rate in Hz.
        space_id: the tokenizer's id of the space that joins transcripts.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int, space_id: int) -> None:
        self.wave = WaveAugment(cfg, sample_rate)
        self.join = JoiningCollate(cfg, sample_rate, space_id)
        self.feature = FeatureAugment(cfg)

    def waves(self, examples: list[Example]) -> Batch:
        """A batch of loaded utterances, each carrying its seed -> the augmented, padded batch."""
        perturbed = []
        for ex in examples:
            with seeded(ex.seed):  # a function of (train.seed, epoch, utterance) alone
                perturbed.append(dataclasses.replace(ex, wave=self.wave(ex.wave)))
        return self.join(perturbed)

    def features(
        self, extractor: FeatureExtractor, waves: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves (B, N)``, ``wav_lens (B,)`` -> ``feats (B, T, F)``, ``feat_lens (B,)``."""
        return self.feature(extractor, waves, wav_lens)

    @property
    def min_length_ratio(self) -> float:
        """The shortest a clip can become, as a fraction of its length (for the CTC length check)."""
        return self.wave.min_length_ratio
