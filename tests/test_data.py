import json
from collections import Counter

import pytest
import torch

from asr.data import (
    BucketBatchSampler,
    Example,
    ManifestError,
    SpeechDataset,
    Utterance,
    collate,
    ctc_min_frames,
    filter_utterances,
    normalized_utterances,
    read_manifest,
    train_weights,
    write_manifest,
)
from asr.text import Tokenizer
from tests.conftest import tone, write_audio


def test_manifest_round_trip_with_relative_paths(tmp_path):
    audio = write_audio(tmp_path / "corpus" / "a.wav", tone(0.5, 16_000), 16_000)
    utts = [
        Utterance("a", str(audio), 0.5, "hello", "spk1"),
        Utterance("b", str(audio), 0.2, "world", "spk2", offset=0.1),
    ]
    path = tmp_path / "manifests" / "train.jsonl"
    assert write_manifest(utts, path) == 2
    first = json.loads(path.read_text().splitlines()[0])
    assert first["audio"] == "../corpus/a.wav" and "offset" not in first
    back = read_manifest(path)
    assert [u.id for u in back] == ["a", "b"]
    assert back[0].audio == str(path.parent / "../corpus/a.wav")
    assert back[1].offset == 0.1


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"id": "x", "audio": "a.wav", "duration": 1.0}', "line 2: missing 'text'"),
        (
            '{"id": "x", "audio": "a.wav", "duration": -1, "text": "a"}',
            "line 2: 'duration' must be a positive",
        ),
        (
            '{"id": "x", "audio": "a.wav", "duration": "long", "text": "a"}',
            "line 2: 'duration' must be a number of seconds, got 'long'",
        ),
        (
            '{"id": "x", "audio": "a.wav", "duration": true, "text": "a"}',
            "line 2: 'duration' must be a number of seconds, got True",
        ),
        (
            '{"id": "x", "audio": "a.wav", "duration": 1, "offset": -2.5, "text": "a"}',
            "line 2: 'offset' must be 0 or more seconds, got -2.5",
        ),
        (
            '{"id": "x", "audio": "a.wav", "duration": 1, "text": "a", "colour": 1}',
            "line 2: unknown keys",
        ),
        ("not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: a manifest line must be a JSON object"),
    ],
)
def test_bad_manifest_lines_name_file_and_line(tmp_path, line, words):
    path = tmp_path / "m.jsonl"
    good = '{"id": "ok", "audio": "a.wav", "duration": 1.0, "text": "a"}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=f"m.jsonl: {words}"):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_ctc_min_frames():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8  # three repeats need three blanks between
    assert ctc_min_frames([]) == 0


def test_filter_counts_every_drop(tmp_path):
    tok = Tokenizer()
    a = str(tmp_path / "a.wav")
    open(a, "wb").close()  # only its existence is checked here
    utts = [
        Utterance("ok", a, 1.0, "hello"),
        Utterance("long", a, 40.0, "hello"),
        Utterance("short", a, 0.01, "hello"),
        Utterance("oov", a, 1.0, "route 66"),
        Utterance("empty", a, 1.0, ""),
        Utterance("cramped", a, 0.1, "a very long transcript indeed"),
        Utterance("gone", str(tmp_path / "gone.wav"), 1.0, "hello"),
    ]
    kept, report = filter_utterances(utts, tok, 0.05, 30.0, out_frames=lambda s: int(s * 33))
    assert [u.id for u in kept] == ["ok"]
    assert (
        report.too_long,
        report.too_short,
        report.oov,
        report.empty_text,
        report.no_room_for_ctc,
        len(report.missing_audio),
    ) == (1, 1, 1, 1, 1, 1)
    assert report.oov_chars["6"] == 2
    assert "too short for their transcript" in report.summary("train")


def test_sampler_caps_and_covers():
    durations = [0.5 + (i % 17) * 0.3 for i in range(200)]
    sampler = BucketBatchSampler(durations, batch_seconds=10.0, max_batch_size=8, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 8
        # one long item alone may exceed
        assert len(b) * max(durations[i] for i in b) <= 10.0 + max(durations)
        if len(b) > 1:
            assert len(b) * max(durations[i] for i in b) <= 10.0
    sampler.set_epoch(1)
    e1 = list(sampler)
    sampler.set_epoch(2)
    e2 = list(sampler)
    assert e1 != e2
    sampler.set_epoch(1)
    assert list(sampler) == e1  # the order depends on (seed, epoch) only
    sampler.set_epoch(0, sorted_first=True)
    longest = [max(durations[i] for i in b) for b in sampler]
    assert longest == sorted(longest)  # SortaGrad: shortest first


def test_sampler_starts_an_epoch_where_a_mid_epoch_checkpoint_stopped():
    """``set_epoch(e, start=n)`` gives the epoch's batches from the n-th on, seeds and all: what an
    unbroken iteration gives after its first n (the length stays the whole epoch's)."""
    durations = [0.5 + (i % 7) * 0.2 for i in range(60)]
    sampler = BucketBatchSampler(durations, 4.0, 6, seed=5, num_replicas=2, seed_items=True)
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.set_epoch(3, start=4)
    assert list(sampler) == whole[4:] and len(sampler) == len(whole)
    sampler.set_epoch(3, start=len(whole))
    assert list(sampler) == []
    with pytest.raises(ValueError, match="start must be in"):
        sampler.set_epoch(3, start=len(whole) + 1)


def test_weighted_sampler_draws_each_group_by_its_weight():
    """Weight 3 draws an item three times an epoch, each copy with its own augmentation seed;
    0.5 draws half of the items of that weight, another half each epoch; an epoch's size is fixed,
    and a resumed epoch (``start``) draws what the unbroken one did."""
    durations = [1.0 + (i % 5) * 0.1 for i in range(40)]
    weights = [3.0] * 10 + [1.0] * 10 + [0.5] * 20
    sampler = BucketBatchSampler(durations, 6.0, 5, seed=2, seed_items=True, weights=weights)
    counts = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        items = [pair for b in sampler for pair in b]
        counts[epoch] = Counter(i for i, _ in items)
        assert len(items) == 3 * 10 + 10 + 10
        assert all(counts[epoch][i] == 3 for i in range(10))
        assert all(counts[epoch][i] == 1 for i in range(10, 20))
        assert sum(counts[epoch][i] for i in range(20, 40)) == 10
        assert max(counts[epoch][i] for i in range(20, 40)) == 1
        seeds = [s for i, s in items if i == 0]
        assert len(set(seeds)) == 3  # three copies, three augmentations
    half = [{i for i in range(20, 40) if counts[e][i]} for e in (0, 1)]
    assert half[0] != half[1]  # a new half every epoch
    sampler.set_epoch(1)
    whole = list(sampler)
    sampler.set_epoch(0)
    sampler.set_epoch(1, start=3)
    assert list(sampler) == whole[3:]


def test_weights_of_one_leave_the_sampler_as_it_was():
    durations = [0.5 + (i % 9) * 0.2 for i in range(50)]
    plain = BucketBatchSampler(durations, 4.0, 6, seed=7)
    ones = BucketBatchSampler(durations, 4.0, 6, seed=7, weights=[1.0] * 50)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        ones.set_epoch(epoch)
        assert list(plain) == list(ones)
    with pytest.raises(ValueError, match="2 weights for 50 utterances"):
        BucketBatchSampler(durations, 4.0, 6, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        BucketBatchSampler(durations, 4.0, 6, weights=[-1.0] * 50)


def test_train_weights_follow_each_manifest_after_filtering(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_manifest([Utterance(f"a{i}", "x.wav", 1.0, "a") for i in range(3)], a)
    write_manifest([Utterance(f"b{i}", "x.wav", 1.0, "b") for i in range(2)], b)
    paths = f"{a},{b},{a}"  # a manifest listed twice keeps a weight per listing
    utts = normalized_utterances(paths)
    kept = [u for u in utts if u.id != "a1"]  # as if filtered
    assert train_weights(kept, paths, []) is None
    got = train_weights(kept, paths, [2.0, 0.5, 1.0])
    assert got == [2.0, 2.0, 0.5, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="data.train_weights: 2 weights for 3 manifests"):
        train_weights(kept, paths, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"b.jsonl: weight -1.0"):
        train_weights(kept, paths, [1.0, -1.0, 1.0])


def test_sampler_shards_across_ranks():
    durations = [1.0] * 50
    ranks = [BucketBatchSampler(durations, 4.0, 4, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == len(ranks[0])
    assert not {i for x in a for i in x} & {i for x in b for i in x}


def test_collate_pads_and_keeps_lengths():
    batch = collate(
        [
            Example("a", torch.ones(5), [1, 2, 3], "abc"),
            Example("b", torch.ones(3) * 2, [4], "d"),
        ]
    )
    assert batch.waves.shape == (2, 5) and batch.wav_lens.tolist() == [5, 3]
    assert batch.waves[1, 3:].abs().sum() == 0
    assert batch.targets.tolist() == [[1, 2, 3], [4, 0, 0]] and batch.target_lens.tolist() == [3, 1]


def test_dataset_loads_lazily_and_encodes(tmp_path):
    audio = write_audio(tmp_path / "a.wav", tone(1.0, 8000), 8000)
    ds = SpeechDataset([Utterance("a", str(audio), 1.0, "ab")], Tokenizer(), 16_000)
    ex = ds[0]
    assert abs(len(ex.wave) - 16_000) <= 1 and ex.labels == Tokenizer().encode("ab")
    seg = SpeechDataset([Utterance("s", str(audio), 0.25, "a", offset=0.5)], Tokenizer(), 16_000)[0]
    assert abs(len(seg.wave) - 4000) <= 1


def test_ranks_of_one_step_get_neighbouring_lengths():
    import random

    durations = [0.5 + 0.1 * (i % 97) for i in range(400)]
    one = BucketBatchSampler(durations, 6.0, 8, seed=4)
    one.set_epoch(3)
    expected = list(one.batches)
    random.Random(4 * 1_000_003 + 3).shuffle(expected)
    assert list(one) == expected  # one process: the plain shuffle of batches, as before
    for world, accumulate in ((4, 1), (2, 3)):
        ranks = [
            BucketBatchSampler(
                durations, 6.0, 8, seed=4, num_replicas=world, rank=r, step_batches=accumulate
            )
            for r in range(world)
        ]
        for s in ranks:
            s.set_epoch(3)
        orders = [list(s) for s in ranks]
        assert len({len(o) for o in orders}) == 1 and len(orders[0]) == len(ranks[0])
        sorted_pos = {tuple(b): i for i, b in enumerate(ranks[0].batches)}
        n_steps = len(orders[0]) // accumulate
        for k in range(n_steps):
            step = [tuple(b) for o in orders for b in o[k * accumulate : (k + 1) * accumulate]]
            positions = sorted(sorted_pos[b] for b in step)
            assert positions[-1] - positions[0] <= world * accumulate  # one run of neighbours
        seen = [i for o in orders for b in o for i in b]
        assert len(seen) == len(set(seen))  # no utterance twice
