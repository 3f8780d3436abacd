"""recipes/default/score.py: the table that picks the bundled model, checked by hand counts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "default" / "score.py"
spec = importlib.util.spec_from_file_location("default_score", SCRIPT)
score_script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = score_script  # dataclasses look their module up there
spec.loader.exec_module(score_script)
SetResult = score_script.SetResult


def two_sets() -> list:
    # set a: greedy makes 1 substitution in 4 words, beam none; set b: greedy 1 in 1, beam none.
    # Both sets use the id "u1": pooling must keep them apart.
    a = SetResult(
        label="a",
        rel="a/dev.jsonl",
        ids=["u1", "u2"],
        refs=["the cat", "a dog"],
        groups=["a/dev.jsonl:s1", "a/dev.jsonl:s2"],
        greedy=["the bat", "a dog"],
        beam=["the cat", "a dog"],
    )
    b = SetResult(
        label="b",
        rel="b/dev.jsonl",
        ids=["u1"],
        refs=["yes"],
        groups=["b/dev.jsonl:s1"],
        greedy=["no"],
        beam=["yes"],
    )
    return [a, b]


def test_pooled_sums_errors_over_sets_and_keeps_same_ids_apart():
    s, groups = score_script.pooled(two_sets(), ["a/dev.jsonl", "b/dev.jsonl"], "greedy")
    assert (s.word.errors, s.word.ref_len) == (2, 5)  # 1 + 1 errors over 4 + 1 words
    assert [u.id for u in s.utterances] == ["a/dev.jsonl:u1", "a/dev.jsonl:u2", "b/dev.jsonl:u1"]
    assert groups == ["a/dev.jsonl:s1", "a/dev.jsonl:s2", "b/dev.jsonl:s1"]
    only_b, _ = score_script.pooled(two_sets(), ["b/dev.jsonl"], "beam")
    assert (only_b.word.errors, only_b.word.ref_len) == (0, 1)


def test_table_rows_pooled_and_mean_are_distinct():
    rows = score_script.table(two_sets(), ["a/dev.jsonl", "b/dev.jsonl"])
    assert rows[2].startswith("| a | 2 | 25.0% / ")  # 1 of 4 words
    assert rows[3].startswith("| b | 1 | 100.0% / ")
    # pooled counts errors over all words (2 / 5); the mean averages the sets' rates (25 + 100) / 2
    assert rows[4].startswith("| the dev sets together | 3 | 40.00% / ")
    assert rows[4].endswith("| 0.00% / 0.00% |")
    assert rows[5] == "| mean of the dev sets' WERs | | 62.50% | 0.00% |"


def test_table_without_dev_sets_has_no_pooled_rows():
    rows = score_script.table(two_sets(), [])
    assert len(rows) == 4


def test_bootstrap_lines_per_pool_decoding_and_unit():
    base = two_sets()
    model = two_sets()
    model[0].greedy = list(model[0].beam)  # the model fixes set a's greedy error
    lines = score_script.bootstrap(base, model, {"dev": ["a/dev.jsonl", "b/dev.jsonl"], "test": []})
    assert len(lines) == 4  # an empty pool prints nothing
    assert lines[0].startswith("- dev pooled, greedy, resampling utterances: WER 40.00% -> 20.00%")
    assert lines[1].startswith("- dev pooled, greedy, resampling speakers: WER 40.00% -> 20.00%")
    assert lines[2].startswith("- dev pooled, beam, resampling utterances: WER 0.00% -> 0.00%")


def test_unknown_decoding_is_named():
    with pytest.raises(ValueError, match="'lm'"):
        two_sets()[0].hyps("lm")


def test_speakers_of_falls_back_to_the_id(tmp_path):
    m = tmp_path / "dev.jsonl"
    lines = [
        {"id": "u1", "audio": "u1.wav", "text": "yes", "duration": 1.0, "speaker": "s7"},
        {"id": "u2", "audio": "u2.wav", "text": "no", "duration": 1.0},
    ]
    m.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert score_script.speakers_of(m, ["u2", "u1"], "x/dev.jsonl") == [
        "x/dev.jsonl:u2",
        "x/dev.jsonl:s7",
    ]
