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


def test_word_edges_at_pauses_snap_to_the_sound():
    """CTC fires a word's last letter in the pause after it, or its first one before it: the
    edges move onto the sound; an edge between words spoken without a pause stays where CTC put
    it; a short closure inside a word (before a final "t") does not end the word."""
    from asr.vad import frame_energies_db

    sr, fs = 16_000, 0.03
    rng = torch.Generator().manual_seed(0)
    wave = 1e-3 * torch.randn(int(2.4 * sr), generator=rng)  # -60 dBFS room noise
    sound = [(0.50, 0.90), (1.20, 2.00), (2.10, 2.16)]  # "ab" | "cd" + "ef" | the "f" burst
    for a, b in sound:
        wave[int(a * sr) : int(b * sr)] += 0.1 * torch.randn(int((b - a) * sr), generator=rng)
    frames = ["_"] * int(2.4 / fs)
    fire = {0.60: "a", 1.05: "b", 1.14: "c", 1.50: "d", 1.71: "e", 1.89: "f"}
    for t, ch in fire.items():
        frames[round(t / fs)] = ch
    lp = _emissions(Tokenizer(), frames)
    tok = Tokenizer()
    plain = align(lp, "ab cd ef", tok, fs)
    assert plain[0].end == pytest.approx(1.08) and plain[1].start == pytest.approx(1.14)
    words = align(lp, "ab cd ef", tok, fs, energy_db=frame_energies_db([wave], sr))
    got = [(w.word, w.start, w.end) for w in words]
    assert got == [
        ("ab", pytest.approx(0.50, abs=0.011), pytest.approx(0.90, abs=0.011)),  # "b" fired late
        ("cd", pytest.approx(1.20, abs=0.011), plain[1].end),  # "c" early; "cd|ef" joined: kept
        ("ef", plain[2].start, pytest.approx(2.16, abs=0.011)),  # the closure is bridged
    ]
    for w in words:  # characters stay inside their word
        assert all(w.start <= c.start <= c.end <= w.end for c in w.chars)
    # the same with an offset (a piece of a longer file)
    moved = align(lp, "ab cd ef", tok, fs, offset=10.0, energy_db=frame_energies_db([wave], sr))
    assert [round(w.start - 10.0, 3) for w in moved] == [w.start for w in words]


def _word_in_room(seconds: float, rng: torch.Generator, sr: int = 16_000) -> torch.Tensor:
    """-60 dBFS room noise with a loud word (0.1 RMS) from 0.5 to 0.8 s."""
    wave = 1e-3 * torch.randn(int(seconds * sr), generator=rng)
    wave[int(0.5 * sr) : int(0.8 * sr)] += 0.1 * torch.randn(int(0.3 * sr), generator=rng)
    return wave


def _faint(wave: torch.Tensor, a: float, b: float, rng: torch.Generator, sr: int = 16_000) -> None:
    """Add sound ~4 dB above the room noise from ``a`` to ``b`` seconds (a fading tail, a burst)."""
    wave[int(a * sr) : int(b * sr)] += 1.2e-3 * torch.randn(int(round((b - a) * sr)), generator=rng)


def test_a_fading_end_stays_with_its_word():
    """A word's tail that fades to a few dB above the noise (quieter than the 6 dB margin that
    finds the word) still belongs to it: the end lands where the tail meets the noise."""
    from asr.align import snap_to_sound
    from asr.vad import frame_energies_db

    sr, fs = 16_000, 0.03
    rng = torch.Generator().manual_seed(0)
    wave = _word_in_room(2.0, rng)
    _faint(wave, 0.8, 1.0, rng)
    frames = ["_"] * int(2.0 / fs)
    frames[round(0.6 / fs)], frames[round(1.2 / fs)] = "a", "b"  # "b" fires late, in the pause
    words = align(_emissions(Tokenizer(), frames), "ab", Tokenizer(), fs)
    energy = frame_energies_db([wave], sr)
    (faded,) = snap_to_sound(words, energy)
    assert faded.start == pytest.approx(0.5, abs=0.011)
    assert faded.end == pytest.approx(1.0, abs=0.021)
    (cut,) = snap_to_sound(words, energy, tail_db=6.0)  # no hysteresis: the tail is lost
    assert cut.end == pytest.approx(0.8, abs=0.011)


def test_a_faint_release_after_a_closure_ends_the_word():
    """A final "t": a closure of room noise, then a faint burst that the word's end takes in."""
    from asr.align import snap_to_sound
    from asr.vad import frame_energies_db

    sr, fs = 16_000, 0.03
    rng = torch.Generator().manual_seed(0)
    wave = _word_in_room(2.0, rng)
    _faint(wave, 0.88, 0.92, rng)  # closure 0.80-0.88 s, then the burst
    frames = ["_"] * int(2.0 / fs)
    frames[round(0.6 / fs)], frames[round(1.5 / fs)] = "a", "t"
    words = align(_emissions(Tokenizer(), frames), "at", Tokenizer(), fs)
    (word,) = snap_to_sound(words, frame_energies_db([wave], sr))
    assert word.start == pytest.approx(0.5, abs=0.011)
    assert word.end == pytest.approx(0.92, abs=0.021)


def test_no_burst_too_late_and_no_chain_of_blips_in_wandering_noise():
    """A faint burst later than the closure gap does not extend the word, and in noise whose
    level wanders (a burst after a burst after a burst ...) the end moves at most once."""
    from asr.align import snap_to_sound
    from asr.vad import frame_energies_db

    sr, fs = 16_000, 0.03
    rng = torch.Generator().manual_seed(0)
    frames = ["_"] * int(3.0 / fs)
    frames[round(0.6 / fs)], frames[round(2.8 / fs)] = "a", "t"  # "t" fires at the very end
    words = align(_emissions(Tokenizer(), frames), "at", Tokenizer(), fs)

    late = _word_in_room(3.0, rng)
    _faint(late, 1.0, 1.04, rng)
    (word,) = snap_to_sound(words, frame_energies_db([late], sr))
    assert word.end == pytest.approx(0.8, abs=0.011)  # 0.2 s of quiet: not its release

    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        level = 10 ** (torch.randn(60, generator=g) * 1.0 / 20)  # +-1 dB every 50 ms
        wandering = 1e-3 * torch.randn(3 * sr, generator=g) * level.repeat_interleave(800)
        wandering[int(0.5 * sr) : int(0.8 * sr)] += 0.1 * torch.randn(int(0.3 * sr), generator=g)
        (word,) = snap_to_sound(words, frame_energies_db([wandering], sr))
        assert word.end <= 0.8 + 0.15 + 0.1, (seed, word.end)  # one burst's worth at most
