import math

from asr.metrics import char_errors, score, word_errors, write_report


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
