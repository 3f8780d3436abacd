import math

import pytest

from asr.metrics import char_errors, compare, score, word_errors, write_report


def test_hand_counted_word_edits():
    # ref: the cat sat on the mat ; hyp: the bat sat the mat today
    # cat->bat (S), on deleted (D), today inserted (I)
    e = word_errors("the cat sat on the mat", "the bat sat the mat today")
    assert (e.substitutions, e.deletions, e.insertions, e.hits) == (1, 1, 1, 4)
    assert math.isclose(e.rate, 3 / 6)


def test_char_edits_count_spaces():
    e = char_errors("ab c", "abc")
    assert e.deletions == 1 and e.errors == 1 and e.ref_len == 4


def test_empty_sides():
    assert word_errors("", "").rate == 0.0
    assert word_errors("a b", "").deletions == 2
    assert word_errors("", "a").insertions == 1


def test_corpus_score_sums_errors(tmp_path):
    s = score(["u1", "u2"], ["one two three four", "five"], ["one two three four", "six"])
    assert s.word.errors == 1 and s.word.ref_len == 5
    assert math.isclose(s.wer, 0.2)  # summed, not the mean of per-utterance rates (0.5)
    write_report(s, tmp_path / "r.tsv")
    rows = (tmp_path / "r.tsv").read_text().splitlines()
    assert rows[0].startswith("id\twer") and rows[1].startswith("u2\t1.0000")
    write_report(s, tmp_path / "r.jsonl")
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


def _pair(refs, hyps_a, hyps_b):
    ids = [f"u{i}" for i in range(len(refs))]
    return score(ids, refs, hyps_a), score(ids, refs, hyps_b)


def test_compare_identical_systems_and_a_sure_gain():
    refs = ["one two three", "four five", "six seven eight nine"] * 4
    a, b = _pair(refs, refs, refs)
    same = compare(a, b, samples=500)
    assert (same.low, same.high, same.p_b_better) == (0.0, 0.0, 0.0)
    worse = [r.replace("two", "too").replace("five", "fife") for r in refs]
    a, b = _pair(refs, worse, refs)  # b is right wherever a errs, and never worse
    gain = compare(a, b, samples=500)
    assert gain.wer_a > 0 and gain.wer_b == 0
    assert gain.high < 0 and gain.p_b_better == 1.0 and gain.groups == len(refs)


def test_compare_one_group_is_the_observed_difference():
    a, b = _pair(["a b c d", "e f"], ["a x c d", "e f"], ["a b c d", "e y z"])
    one = compare(a, b, groups=["spk"] * 2, samples=200)
    observed = b.wer - a.wer  # 2 errors (f -> y, z inserted) against 1, in 6 words
    assert math.isclose(one.low, observed) and math.isclose(one.high, observed)
    assert one.groups == 1 and one.p_b_better == 0.0
    assert "16.67% -> 33.33% (+16.67 points" in one.summary()


def test_compare_by_speaker_is_wider_when_errors_cluster():
    # b fixes every error of speaker 1 and adds errors to speaker 2: utterances of one speaker
    # move together, so resampling speakers (2 here, 10 utterances each) must be less sure
    refs = ["the cat sat down"] * 20
    a_hyps = ["the bat sat down"] * 10 + ["the cat sat down"] * 10
    b_hyps = ["the cat sat down"] * 10 + ["the bat sad down"] * 10
    a, b = _pair(refs, a_hyps, b_hyps)
    speakers = ["s1"] * 10 + ["s2"] * 10
    by_utt = compare(a, b, samples=2000)
    by_spk = compare(a, b, groups=speakers, samples=2000)
    assert by_spk.groups == 2 and by_utt.groups == 20
    assert (by_spk.high - by_spk.low) > 1.5 * (by_utt.high - by_utt.low)


def test_compare_refuses_mismatched_scores():
    a = score(["u1", "u2"], ["a", "b"], ["a", "b"])
    b = score(["u2", "u1"], ["b", "a"], ["b", "a"])
    with pytest.raises(ValueError, match="same utterances"):
        compare(a, b)
    with pytest.raises(ValueError, match="1 group labels for 2"):
        compare(a, a, groups=["s"])
