import pytest

from asr.text import BLANK_ID, Tokenizer, normalize_text


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Don't STOP -- the 'rock-and-roll'!  ", "don't stop the rock and roll"),
        ("Hello,\tWorld.\n", "hello world"),
        ("It\u2019s the cat\u2019s", "it's the cat's"),
        ("ﬁne  Ｆｕｌｌ", "fine full"),  # NFKC folds the ligature and full-width letters
        ("rock 'n' roll", "rock n roll"),
        ("", ""),
        ("WE CALL IT BEAR", "we call it bear"),
    ],
)
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


def test_round_trip_and_blank():
    tok = Tokenizer()
    assert tok.tokens[BLANK_ID] == "<blank>"
    text = "it's a test"
    ids = tok.encode(text)
    assert BLANK_ID not in ids
    assert tok.decode(ids) == text
    assert tok.decode([BLANK_ID, *ids, BLANK_ID]) == text


def test_out_of_vocabulary():
    tok = Tokenizer()
    assert tok.oov_chars("route 66é") == {"6": 2, "é": 1}
    with pytest.raises(ValueError, match="'6'"):
        tok.encode("route 66")


def test_save_load(tmp_path):
    tok = Tokenizer(["a", "b", " "])
    tok.save(tmp_path / "tokens.json")
    again = Tokenizer.load(tmp_path / "tokens.json")
    assert again.tokens == tok.tokens
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="distinct"):
        Tokenizer(["a", "a"])
