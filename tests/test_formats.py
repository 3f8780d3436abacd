import json
import re

from asr.formats import render, to_textgrid
from asr.transcript import Char, Transcript, Word, make_segments, wrap_lines


def _words(n: int, step: float = 0.5, gap_at: int | None = None) -> list[Word]:
    words, t = [], 0.0
    for i in range(n):
        if gap_at is not None and i == gap_at:
            t += 2.0
        words.append(Word(f"word{i}", round(t, 3), round(t + 0.4, 3), 0.9, [Char("w", t, t + 0.1)]))
        t += step
    return words


def test_cues_respect_length_width_and_pauses():
    segments = make_segments(_words(40, gap_at=5))
    assert segments[0].text.split()[-1] == "word4"  # the pause starts a new cue
    for seg in segments:
        assert seg.end - seg.start <= 7.0
        assert len(seg.lines) <= 2 and all(len(line) <= 42 for line in seg.lines)
    assert sum(len(s.words) for s in segments) == 40
    assert wrap_lines("a bb ccc", 4) == ["a bb", "ccc"]


def test_srt_and_vtt_parse():
    words = _words(30)
    t = Transcript(" ".join(w.word for w in words), words, make_segments(words), 15.0, "a.wav")
    srt = render(t, "srt")
    blocks = [b for b in srt.strip().split("\n\n")]
    assert len(blocks) == len(t.segments)
    stamp = r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)"
    previous_end = -1.0
    for i, block in enumerate(blocks, 1):
        lines = block.splitlines()
        assert lines[0] == str(i)
        m = re.fullmatch(stamp, lines[1])
        assert m
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, m.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert previous_end <= start < end
        previous_end = end
        assert 1 <= len(lines[2:]) <= 2
    vtt = render(t, "vtt")
    assert vtt.startswith("WEBVTT\n")
    assert len(re.findall(r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d", vtt)) == len(
        t.segments
    )
    record = json.loads(render(t, "json"))
    assert record["file"] == "a.wav" and len(record["words"]) == 30
    assert render(t, "tsv").splitlines()[1].startswith("0.000\t0.400\tword0\t0.9000")


def test_textgrid_tiers():
    grid = to_textgrid(_words(3), 2.0)
    assert grid.startswith('File type = "ooTextFile"')
    assert 'name = "words"' in grid and 'name = "chars"' in grid
    assert grid.count('text = "word1"') == 1
