import dataclasses
from functools import partial

import pytest
import torch

from asr.augment import (
    Augment,
    FeatureAugment,
    JoiningCollate,
    NoiseBank,
    WaveAugment,
    add_noise,
    mix_at_snr,
    narrowband,
    pad_with_pauses,
    spec_augment,
    speed_perturb,
    warp_frequencies,
)
from asr.config import AugmentConfig, FeatureConfig, SpecAugmentConfig
from asr.data import Example, collate
from asr.features import FeatureExtractor
from tests.conftest import tone


def test_speed_perturbation_changes_length_and_pitch():
    sr = 16_000
    t = torch.arange(sr) / sr
    wave = torch.sin(2 * torch.pi * 500 * t)
    fast = speed_perturb(wave, 1.25)
    assert abs(len(fast) - sr / 1.25) <= 1
    peak = torch.fft.rfft(fast).abs().argmax().item() * sr / len(fast)
    assert abs(peak - 625) < 5  # 1.25x faster is 1.25x higher
    assert speed_perturb(wave, 1.0) is wave


def test_noise_at_the_asked_snr():
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(100_000, generator=g) * 0.1
    noisy = add_noise(wave, 20.0, generator=g)
    snr = 10 * torch.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert abs(float(snr) - 20.0) < 0.2


def test_narrowband_keeps_the_length_and_the_low_band_only():
    sr = 16_000
    t = torch.arange(sr) / sr
    low, high = torch.sin(2 * torch.pi * 1_000 * t), torch.sin(2 * torch.pi * 6_000 * t)
    out = narrowband(low + high, sr)
    assert out.shape == low.shape
    spectrum = torch.fft.rfft(out).abs()  # 1 Hz per bin
    assert spectrum[6_000] < 0.01 * spectrum[1_000]
    mid = slice(1_000, -1_000)  # away from the resampler's edge effects
    assert torch.allclose(out[mid], low[mid], atol=0.02)
    assert narrowband(low, 8_000) is low  # already narrow


def test_pauses_at_the_clips_own_noise_floor():
    g = torch.Generator().manual_seed(0)
    quiet = torch.randn(8_000, generator=g) * 0.001  # the room
    word = torch.randn(8_000, generator=g) * 0.3
    clip = torch.cat([quiet, word])
    out = pad_with_pauses(clip, 1_600, 3_200, generator=g)
    assert len(out) == len(clip) + 4_800
    assert torch.equal(out[1_600:-3_200], clip)  # the clip itself is untouched
    for pause in (out[:1_600], out[-3_200:]):
        assert 0.0005 < float(pause.pow(2).mean().sqrt()) < 0.002
    silent = pad_with_pauses(torch.zeros(1_000), 160, 0)
    assert 0 < float(silent[:160].abs().max()) < 1e-3  # never digital silence
    assert pad_with_pauses(clip, 0, 0) is clip
    # quieter_db: each pause 0..30 dB below the room, as behind a noise gate
    levels = [
        float(pad_with_pauses(clip, 1_600, 0, generator=g, quieter_db=30.0)[:1_600].pow(2).mean())
        for _ in range(200)
    ]
    db = 10 * torch.log10(torch.tensor(levels) / 1e-6)  # relative to the room's 0.001 RMS
    assert -31 < float(db.min()) < -25 and -5 < float(db.max()) < 1


def test_wave_augment_is_seeded_and_bounded():
    cfg = AugmentConfig(
        speed_factors=[0.9, 1.1],
        noise_prob=0.5,
        crop_end_prob=1.0,
        crop_end_max=0.2,
        narrowband_prob=0.5,
        pad_prob=0.5,
        pad_max=0.1,
    )
    aug = WaveAugment(cfg)
    wave = torch.randn(16_000)
    torch.manual_seed(3)
    a = [aug(wave) for _ in range(10)]
    torch.manual_seed(3)
    b = [aug(wave) for _ in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    shortest = 16_000 * aug.min_length_ratio
    assert all(len(x) >= shortest - 2 for x in a)
    assert all(len(x) <= 16_000 / 0.9 + 2 * 1_600 + 2 for x in a)
    assert len({len(x) for x in a}) > 1
    assert WaveAugment(AugmentConfig()).min_length_ratio == 1.0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("pad_prob", 1.5, "augment.pad_prob must be in"),
        ("narrowband_prob", -0.1, "augment.narrowband_prob must be in"),
        ("pad_max", -1.0, "augment.pad_max must be >= 0"),
        ("pause_quieter_db", -1.0, "augment.pause_quieter_db must be >= 0"),
        ("join_max", 1, "augment.join_max must be at least 2"),
        ("warp", 0.5, r"augment.warp must be in \[0, 0.5\)"),
        ("speed_factors", [0.0, 1.0], "augment.speed_factors must be positive"),
        ("join_prob", 2.0, "augment.join_prob must be in"),
        ("join_pause", [1.0, 0.5], "augment.join_pause must be"),
        ("real_noise_prob", 1.5, "augment.real_noise_prob must be in"),
        ("real_noise_prob", 0.5, "augment.real_noise_prob > 0 needs augment.noise_sources"),
        ("real_noise_snr_db", [20.0, 5.0], "augment.real_noise_snr_db must be"),
        ("noise_snr_db", [30.0], "augment.noise_snr_db must be"),
        ("crop_end_max", 1.0, r"augment.crop_end_max must be in \[0, 1\)"),
        ("specaug", SpecAugmentConfig(time_ratio=1.5), r"augment.specaug.time_ratio must be in"),
        ("specaug", SpecAugmentConfig(freq_masks=-1), "augment.specaug.freq_masks must be >= 0"),
    ],
)
def test_bad_augment_values_are_named(key, value, message):
    with pytest.raises(ValueError, match=message):
        Augment(AugmentConfig(**{key: value}), 16_000, 1)


def test_each_part_checks_only_the_options_it_uses():
    """The per-utterance transform does not refuse a joining or warping value, and the joiner
    does not refuse a waveform one: each option is checked by the part that uses it."""
    WaveAugment(AugmentConfig(join_max=1, warp=0.7, join_pause=[1.0, 0.5]))
    JoiningCollate(AugmentConfig(pad_prob=2.0, warp=0.7), 16_000, 1)
    FeatureAugment(AugmentConfig(pad_prob=2.0, join_max=1))
    with pytest.raises(ValueError, match="augment.warp"):
        FeatureAugment(AugmentConfig(warp=0.7))


def test_augment_draws_each_utterance_from_its_own_seed():
    """``Augment.waves`` (the loader's collate): an utterance's perturbation depends on its seed
    alone, not on its neighbours in the batch or on what the global generator did before."""
    cfg = AugmentConfig(speed_factors=[0.8, 0.9, 1.1, 1.2], noise_prob=1.0, pad_prob=0.5)
    aug = Augment(cfg, 16_000, 1)
    g = torch.Generator().manual_seed(0)
    ex = [
        Example(f"u{i}", 0.1 * torch.randn(8_000, generator=g), [2], "a", seed=i) for i in range(6)
    ]
    whole = aug.waves(ex)
    torch.manual_seed(99)
    part = aug.waves(ex[3:])
    for k in range(3):
        n = int(part.wav_lens[k])
        assert n == int(whole.wav_lens[3 + k])
        assert torch.equal(part.waves[k, :n], whole.waves[3 + k, :n])
    assert len({int(n) for n in whole.wav_lens}) > 1  # the seeds differ, so do the draws


def test_feature_augmentation_keeps_lengths_and_is_off_when_asked():
    extractor = FeatureExtractor(FeatureConfig())
    waves, lens = 0.1 * torch.randn(3, 16_000), torch.tensor([16_000, 12_000, 8_000])
    plain = extractor(waves, lens)
    off = Augment(AugmentConfig(spec_augment=False), 16_000, 1).features(extractor, waves, lens)
    assert torch.equal(off[0], plain[0]) and torch.equal(off[1], plain[1])
    on = Augment(AugmentConfig(warp=0.1), 16_000, 1).features(extractor, waves, lens)
    assert torch.equal(on[1], plain[1]) and on[0].shape == plain[0].shape
    assert not torch.equal(on[0], plain[0])
    masked = on[0] == 0  # SpecAugment zeroes whole bands on real frames
    assert bool(masked[0, :100].all(0).any())


def test_joined_batches_hold_pairs_with_a_pause_between():
    """A joined batch: utterances in pairs, ``a`` + a pause of the asked length at ``a``'s noise
    floor + ``b``, transcripts joined by a space; an odd last one alone; off: plain collate."""
    torch.manual_seed(0)
    sr, space = 16_000, 0 + 1  # the space's id in the English tokenizer is 1
    ex = [
        Example(f"u{i}", 0.1 * torch.randn(sr // 2 + 100 * i), [i + 2, i + 3], f"w{i}")
        for i in range(5)
    ]
    for e in ex:  # a quiet stretch gives each clip a floor far below its speech
        e.wave[:4000] *= 0.01
    joined = JoiningCollate(AugmentConfig(join_prob=1.0, join_pause=[0.2, 0.3]), sr, space)(ex)
    assert joined.ids == ["u0+u1", "u2+u3", "u4"]
    assert joined.texts == ["w0 w1", "w2 w3", "w4"]
    assert joined.targets[0, : joined.target_lens[0]].tolist() == [2, 3, space, 3, 4]
    for k, (a, b) in enumerate([(ex[0], ex[1]), (ex[2], ex[3])]):
        n = int(joined.wav_lens[k])
        gap = n - len(a.wave) - len(b.wave)
        assert 0.2 * sr <= gap <= 0.3 * sr
        wave = joined.waves[k, :n]
        assert torch.equal(wave[: len(a.wave)], a.wave) and torch.equal(
            wave[-len(b.wave) :], b.wave
        )
        pause = wave[len(a.wave) : len(a.wave) + gap]
        assert 0 < pause.abs().max() < 0.05  # noise at the floor: neither silence nor speech
    plain = JoiningCollate(AugmentConfig(join_prob=0.0), sr, space)(ex)
    assert torch.equal(plain.waves, collate(ex).waves) and plain.ids == [e.id for e in ex]


def test_joined_groups_of_up_to_join_max():
    """``join_max`` > 2: consecutive utterances joined in groups of 2..join_max (one size a
    batch, so the padded batch stays near its audio plus pauses), each with its labels in order,
    spaces between, and a pause after every clip but the group's last."""
    torch.manual_seed(1)
    sr, space = 16_000, 1
    ex = [  # 13: no group size divides it, so the groups cannot all be of one size
        Example(f"u{i}", 0.1 * torch.randn(sr // 4 + 50 * i), [i + 2], f"w{i}") for i in range(13)
    ]
    collate_fn = JoiningCollate(
        AugmentConfig(join_prob=1.0, join_pause=[0.2, 0.3], join_max=4), sr, space
    )
    sizes = set()
    for k in range(12):  # batches of other seeds (as the sampler gives): other group sizes
        joined = collate_fn([dataclasses.replace(e, seed=k) for e in ex])
        groups = [ident.split("+") for ident in joined.ids]
        assert [u for g in groups for u in g] == [e.id for e in ex]  # every utterance, in order
        lengths = [len(g) for g in groups]
        assert max(lengths) - min(lengths) <= 1  # 4 + 3 + 3 + 3, never 4 + 4 + 4 + 1
        assert len(groups) == -(-len(ex) // max(lengths))  # as few groups as that size allows
        sizes.add(max(lengths))
        audio = sum(len(e.wave) for e in ex) + 0.3 * sr * (len(ex) - len(groups))
        assert joined.waves.numel() <= 1.2 * audio  # padding: at most 20% over audio + pauses
    assert sizes == {2, 3, 4}
    for k, g in enumerate(groups):
        members = [ex[int(u[1:])] for u in g]
        assert joined.texts[k] == " ".join(m.text for m in members)
        expected = [t for i, m in enumerate(members) for t in ([space] if i else []) + m.labels]
        assert joined.targets[k, : joined.target_lens[k]].tolist() == expected
        gaps = int(joined.wav_lens[k]) - sum(len(m.wave) for m in members)
        assert 0.2 * sr * (len(g) - 1) <= gaps <= 0.3 * sr * (len(g) - 1)
        wave, at = joined.waves[k, : joined.wav_lens[k]], 0
        for m in members:  # each clip whole and in order, a pause of noise after all but the last
            at = next(i for i in range(at, len(wave)) if torch.equal(wave[i : i + 50], m.wave[:50]))
            assert torch.equal(wave[at : at + len(m.wave)], m.wave)
            at += len(m.wave)
    with pytest.raises(ValueError, match="join_max"):
        JoiningCollate(AugmentConfig(join_max=1), sr, space)
    # pause_quieter_db reaches the joined pauses: 0..40 dB below the clips' 0.1 RMS
    loud = [Example(f"v{i}", 0.1 * torch.randn(sr // 4), [2], "w") for i in range(40)]
    quiet = JoiningCollate(
        AugmentConfig(join_prob=1.0, join_pause=[0.2, 0.2], pause_quieter_db=40.0), sr, space
    )(loud)
    pauses = [
        float(quiet.waves[k, sr // 4 : sr // 4 + 3000].pow(2).mean().sqrt()) for k in range(20)
    ]
    assert min(pauses) < 0.1 * 10 ** (-20 / 20) and max(pauses) <= 0.11


def _noise_files(folder):
    """Two 'recordings': a hum at 8 kHz (resampled on reading) and a quiet hiss, in subfolders."""
    from tests.conftest import write_audio

    write_audio(folder / "a" / "hum.wav", tone(0.5, 8_000, freq=100.0), 8_000)
    write_audio(folder / "b" / "hiss.flac", tone(0.25, 16_000, amp=0.0), 16_000)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_noise_bank_reads_folders_and_manifests_and_loops_short_clips(tmp_path):
    bank = NoiseBank(str(_noise_files(tmp_path / "noise")), 16_000)
    assert len(bank) == 2 and [p.rsplit("/", 1)[1] for p in bank.paths] == ["hum.wav", "hiss.flac"]
    assert len(bank.wave(0)) == 8_000  # 0.5 s at 16 kHz
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # longer than either clip: looped to the length asked
        assert bank.sample(40_000, g).shape == (40_000,)
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text('{"id": "n", "audio": "noise/a/hum.wav", "duration": 0.5, "text": ""}\n')
    assert NoiseBank(f"{manifest}, ", 16_000).paths == [str(tmp_path / "noise/a/hum.wav")]
    with pytest.raises(FileNotFoundError, match="augment.noise_sources: .*missing"):
        NoiseBank(str(tmp_path / "missing"), 16_000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        NoiseBank(str(tmp_path / "empty"), 16_000)


def test_real_noise_is_mixed_at_the_asked_snr(tmp_path):
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(32_000, generator=g) * 0.1
    noise = torch.sin(torch.arange(32_000) * 0.05) * 3.0
    for snr in (0.0, 10.0, 25.0):
        mixed = mix_at_snr(wave, noise, snr)
        got = 10 * torch.log10(wave.pow(2).mean() / (mixed - wave).pow(2).mean())
        assert abs(float(got) - snr) < 1e-3
    assert torch.equal(mix_at_snr(wave, torch.zeros(32_000), 5.0), wave)  # silence adds nothing
    cfg = AugmentConfig(
        noise_sources=str(_noise_files(tmp_path / "noise")),
        real_noise_prob=1.0,
        real_noise_snr_db=[10.0, 10.0],
        spec_augment=False,
    )
    augment = WaveAugment(cfg, 16_000)
    out = augment(wave)
    assert out.shape == wave.shape and not torch.equal(out, wave)
    snr = 10 * torch.log10(wave.pow(2).mean() / (out - wave).pow(2).mean())
    assert abs(float(snr) - 10.0) < 1e-3
    off = WaveAugment(AugmentConfig(noise_sources=cfg.noise_sources), 16_000)
    assert off.noise_bank is None and torch.equal(off(wave), wave)  # prob 0: never read


def test_a_batch_is_joined_the_same_way_for_the_same_seed():
    """The joining draw is a function of the batch's seed: a resumed run joins as an unbroken one."""
    sr, space = 16_000, 1
    ex = [Example(f"u{i}", 0.1 * torch.randn(4_000), [i + 2], f"w{i}", seed=7) for i in range(9)]
    collate_fn = JoiningCollate(AugmentConfig(join_prob=0.5, join_max=4), sr, space)
    first = collate_fn(ex)
    torch.manual_seed(123)  # whatever the global generator did in between
    again = collate_fn(ex)
    assert first.ids == again.ids and torch.equal(first.waves, again.waves)


def test_spec_augment_masks_within_length():
    feats = torch.ones(3, 100, 40)
    lens = torch.tensor([100, 50, 20])
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=8, time_masks=2, time_width=30, time_ratio=0.2)
    g = torch.Generator().manual_seed(0)
    out = spec_augment(feats, lens, cfg, generator=g)
    zero_frames = (out == 0).all(-1)  # (B, T): frames masked in every bin
    for b, length in enumerate(lens.tolist()):
        masked = torch.nonzero(zero_frames[b]).flatten()
        assert masked.numel() <= 2 * int(0.2 * length)
        assert (masked < length).all()
    zero_bins = (out == 0).all(1)  # (B, F)
    assert (zero_bins.sum(1) <= 16).all()
    again = spec_augment(feats, lens, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def _by(factors: list[float]):
    """The extractor's ``warp`` for these factors, one per utterance."""
    return partial(warp_frequencies, factors=torch.tensor(factors))


def test_warp_moves_formants_below_the_knee_and_keeps_the_band():
    """Vocal tract length perturbation: a tone's peak moves from f to a * f; factor 1 changes
    nothing; the band's ends stay put; an utterance warped in a padded batch equals it alone."""
    sr = 16_000
    fe = FeatureExtractor(FeatureConfig(kind="linear", normalize=False))
    wave = torch.from_numpy(tone(1.0, sr, freq=2000.0))[None]
    hz_per_bin = sr / fe.n_fft
    for factor in (0.9, 1.0, 1.1):
        feats, _ = fe(wave, torch.tensor([sr]), warp=_by([factor]))
        peak = float(feats[0, 10:-10].mean(0).argmax()) * hz_per_bin
        assert abs(peak - 2000.0 * factor) <= hz_per_bin
    plain, _ = fe(wave, torch.tensor([sr]))
    same, _ = fe(wave, torch.tensor([sr]), warp=_by([1.0]))
    assert torch.allclose(plain, same, atol=1e-5)
    # on a spectrum equal to its bin index, interpolation reads back the source bin exactly: bin
    # g comes from g / a up to the knee (0.6 of the band, times a when a < 1), then from a
    # straight line that ends on the top bin; the map is continuous and monotonic
    top = 256
    ramp = torch.arange(top + 1, dtype=torch.float32)[None, :, None].expand(3, -1, 2)
    factors = torch.tensor([0.8, 1.0, 1.2])
    warped = warp_frequencies(ramp, factors)[:, :, 0]  # (3, F)
    for row, a in enumerate(factors.tolist()):
        knee = 0.6 * top * min(a, 1.0)
        g = torch.arange(top + 1, dtype=torch.float32)
        below, above = g <= knee, g > knee
        assert torch.allclose(warped[row, below], g[below] / a, atol=1e-3)
        line = knee / a + (top - knee / a) * (g[above] - knee) / (top - knee)
        assert torch.allclose(warped[row, above], line, atol=1e-3)
    assert torch.allclose(warped[:, 0], torch.zeros(3)) and torch.allclose(
        warped[:, -1], torch.full((3,), float(top))
    )
    assert (warped.diff(dim=1) > 0).all() and warped.diff(dim=1).max() < 1.3
    # log-mel, batched with padding: the short utterance's frames equal it warped alone
    fe = FeatureExtractor(FeatureConfig())
    a, b = torch.randn(16_000), torch.randn(9_000)
    batch = torch.zeros(2, 16_000)
    batch[0], batch[1, :9_000] = a, b
    feats, lens = fe(batch, torch.tensor([16_000, 9_000]), warp=_by([0.95, 1.08]))
    alone, _ = fe(b[None], torch.tensor([9_000]), warp=_by([1.08]))
    assert torch.allclose(feats[1, : lens[1]], alone[0], atol=1e-4)
    assert not torch.allclose(alone, fe(b[None], torch.tensor([9_000]))[0], atol=1e-2)
