import pytest
import torch

from asr.align import AlignmentError, align
from asr.cli import main
from asr.text import Tokenizer
from tests.conftest import DATA


def _emissions(tok: Tokenizer, frames: list[str]) -> torch.Tensor:
    """One-hot-ish log-probs: each frame's character ('_' blank) gets 0.9."""
    lp = torch.full((len(frames), len(tok)), 0.1 / (len(tok) - 1))
    for t, ch in enumerate(frames):
        lp[t, 0 if ch == "_" else tok.encode(ch)[0]] = 0.9
    return lp.log()


def test_hand_worked_word_times():
    tok = Tokenizer()
    frames = list("__ab___") + [" "] + list("__cc_c__")  # "ab" then "ccc"? no: "cc" merges -> "c c"
    lp = _emissions(tok, frames)
    words = align(lp, "ab cc", tok, frame_seconds=0.1, offset=1.0)
    assert [w.word for w in words] == ["ab", "cc"]
    assert (words[0].start, words[0].end) == (1.2, 1.4)
    assert [(c.start, c.end) for c in words[1].chars] == [
        (1.0 + 1.0, 1.0 + 1.2),
        (1.3 + 1.0, 1.4 + 1.0),
    ]
    assert all(0.8 < w.confidence <= 1.0 for w in words)


def test_alignment_errors_are_clear():
    tok = Tokenizer()
    lp = _emissions(tok, list("_ab_"))
    with pytest.raises(AlignmentError, match="need at least"):
        align(lp, "abcdef", tok, 0.03)
    with pytest.raises(AlignmentError, match="outside the model's vocabulary"):
        align(lp, "a1", tok, 0.03)
    assert align(lp, "", tok, 0.03) == []


def test_cli_align_formats(tmp_path, capsys):
    audio = DATA / "fsdd" / "7_yweweler_2.wav"
    assert main(["align", str(audio), "seven"]) == 0
    out = capsys.readouterr().out
    assert '"word": "seven"' in out
    assert (
        main(
            [
                "align",
                str(audio),
                "seven",
                "--format",
                "textgrid",
                "--out",
                str(tmp_path / "a.TextGrid"),
            ]
        )
        == 0
    )
    assert 'name = "chars"' in (tmp_path / "a.TextGrid").read_text()
    png = tmp_path / "seven.png"
    assert main(["align", str(audio), "seven", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["align", str(audio), "seven " * 20]) == 2
    assert "cannot align the transcript" in capsys.readouterr().err
