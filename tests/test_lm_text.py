"""Raw text for language models: prose, speeches, meetings, sentence lists -> spoken sentences."""

import pytest

from asr.lm_text import (
    TextError,
    is_wrapped,
    iter_sentences,
    read_words,
    spelled_words,
    split_sentences,
    strip_directions,
)

PROSE = """\
It was a bright cold day in April, and the clocks were striking thirteen.
Mr. Smith, his chin nuzzled into his breast in an effort to escape the
vile wind, slipped quickly through the glass doors of Victory Mansions.

"Come here!" said Dr. Jones. She had _never_ seen him so pale; the
hallway smelt of boiled cabbage and old rag mats. At one end of it a
coloured poster, too large for indoor display, had been tacked to the wall.
"""

SPEECH = """\
President: Lyndon B. Johnson

THE PRESIDENT. Good afternoon, ladies and gentlemen. We won in 1964. (Applause.) Thank you.
Q. Mr. President, will you run again?
THE PRESIDENT: I will -- (laughter) -- think about it [inaudible] tomorrow.
"""


def test_wrapped_prose_is_joined_before_it_is_split(tmp_path):
    (tmp_path / "book.txt").write_text(PROSE)
    assert is_wrapped(PROSE.splitlines())
    sentences = [" ".join(s) for s in iter_sentences([tmp_path / "book.txt"])]
    assert sentences == [
        "it was a bright cold day in april and the clocks were striking thirteen",
        "mr smith his chin nuzzled into his breast in an effort to escape the vile wind slipped "
        "quickly through the glass doors of victory mansions",
        "come here",
        "said dr jones",
        "she had never seen him so pale the hallway smelt of boiled cabbage and old rag mats",
        "at one end of it a coloured poster too large for indoor display had been tacked to the "
        "wall",
    ]


def test_speaker_labels_stage_directions_and_numbers(tmp_path):
    (tmp_path / "speech.txt").write_text(SPEECH)
    assert not is_wrapped(SPEECH.splitlines())
    sentences = [" ".join(s) for s in iter_sentences([tmp_path / "speech.txt"])]
    assert sentences == [
        "lyndon b johnson",
        "good afternoon ladies and gentlemen",
        "we won in",  # a word the model cannot spell (1964) ends the run
        "thank you",
        "mr president will you run again",
        "i will think about it tomorrow",
    ]


def test_one_sentence_a_line_and_one_document_a_line(tmp_path):
    (tmp_path / "cv.txt").write_text("the cat sees it\na dog likes the bear\nWhy not?\n")
    (tmp_path / "ami.txt").write_text("Okay. Um so U_C_L_A_. Yeah, that's the one. Mm-hmm.")
    got = [" ".join(s) for s in iter_sentences([tmp_path])]  # a folder: every text file in it
    assert got == [
        "okay",
        "um so u c l a",
        "yeah that's the one",
        "mm hmm",
        "the cat sees it",
        "a dog likes the bear",
        "why not",
    ]


def test_splitting_rules():
    assert split_sentences("I saw Mr. Brown. He left at 5 p.m. today! Did he? U.S. troops.") == [
        "I saw Mr. Brown.",
        "He left at 5 p.m. today!",
        "Did he?",
        "U.S. troops.",
    ]
    assert strip_directions("I. Introduction") == "I. Introduction"  # not a speaker label
    assert strip_directions("MR. NIXON: Yes (nested (aside) here).").split() == ["Yes", "."]


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(TextError, match="nothing.txt: text file or folder not found"):
        list(iter_sentences([tmp_path / "nothing.txt"]))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(TextError, match="latin1.txt: not UTF-8 text"):
        list(iter_sentences([tmp_path / "latin1.txt"]))
    (tmp_path / "blob.txt").write_bytes(b"abc\x00\x01\x02\n")
    with pytest.raises(TextError, match="blob.txt: binary data"):
        list(iter_sentences([tmp_path / "blob.txt"]))
    (tmp_path / "m.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(TextError, match="m.jsonl: line 1: not a manifest line"):
        list(iter_sentences([tmp_path / "m.jsonl"]))


def test_words_spelled_out_from_a_pronouncing_dictionary(tmp_path):
    """CMUdict's layout: variants fold into their word, comments and short or unspellable words
    are left out and counted; the spelled words feed `asr lm build` as a sentence each."""
    d = tmp_path / "cmudict.dict"
    d.write_text(
        ";;; a comment\ncindy S IH1 N D IY0\nread R EH1 D\nread(2) R IY1 D\n"
        "o'brien OW0 B R AY1 AH0 N\na AH0\nMeadow M EH1 D OW0\n\n3d TH R IY1 D IY1\n",
        encoding="utf-8",
    )
    words = list(read_words(d))
    assert words == ["cindy", "read", "read", "o'brien", "a", "Meadow", "3d"]
    spelled, left_out = spelled_words(words)
    assert spelled == ["c i n d y", "m e a d o w", "r e a d"]
    assert left_out == 3  # o'brien, a (one letter), 3d
    (tmp_path / "latin1.txt").write_bytes("cindy\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(TextError, match="latin1.txt: line 2: not UTF-8"):
        list(read_words(tmp_path / "latin1.txt"))
    with pytest.raises(TextError, match="no such word list"):
        list(read_words(tmp_path / "missing.txt"))


def test_asr_lm_spell_then_build(tmp_path):
    import subprocess
    import sys

    words = tmp_path / "names.txt"
    words.write_text("cindy\nlinda\nmeadowgate\n", encoding="utf-8")
    out = tmp_path / "spelled.txt"
    run = [sys.executable, "-m", "asr", "lm"]
    done = subprocess.run(
        run + ["spell", str(words), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "3 words spelled out; 0 left out" in done.stdout
    assert out.read_text().splitlines() == ["c i n d y", "l i n d a", "m e a d o w g a t e"]
    arpa = tmp_path / "lm.arpa"
    done = subprocess.run(
        run + ["build", str(out), "--order", "4", "--out", str(arpa)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "3 sentences, 20 words" in done.stdout  # 5 + 5 + 10 letters
    missing = subprocess.run(
        run + ["spell", str(tmp_path / "none.txt"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "none.txt: no such word list" in missing.stderr
