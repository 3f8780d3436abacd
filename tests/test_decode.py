import torch

from asr.decode import greedy_decode
from asr.text import Tokenizer


def _log_probs(frames: list[int], vocab: int) -> torch.Tensor:
    lp = torch.full((len(frames), vocab), -10.0)
    for t, i in enumerate(frames):
        lp[t, i] = -0.01
    return lp.log_softmax(-1)


def test_greedy_hand_worked():
    tok = Tokenizer(["a", "b", " "])  # ids: blank 0, a 1, b 2, space 3
    # frames: a a _ a b b _ _ space b  -> "aab b"
    frames = [1, 1, 0, 1, 2, 2, 0, 0, 3, 2]
    lp = _log_probs(frames, 4)[None]
    hyp = greedy_decode(lp, torch.tensor([10]), tok)[0]
    assert hyp.text == "aab b"
    assert hyp.tokens == [1, 1, 2, 3, 2]
    assert hyp.frames == [0, 3, 4, 8, 9]


def test_greedy_ignores_padding_frames():
    tok = Tokenizer(["a", "b"])
    lp = torch.stack([_log_probs([1, 0, 2, 2], 3), _log_probs([2, 1, 1, 1], 3)])
    hyps = greedy_decode(lp, torch.tensor([4, 2]), tok)
    assert [h.text for h in hyps] == ["ab", "ba"]


def test_greedy_empty():
    tok = Tokenizer(["a"])
    assert greedy_decode(_log_probs([0, 0], 2)[None], torch.tensor([2]), tok)[0].text == ""


# --- beam search ---

import itertools  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from asr import decode  # noqa: E402
from asr.config import DecoderConfig  # noqa: E402
from asr.decode import BeamDecoder, DecoderError, build_decoder  # noqa: E402
from asr.lm import write_arpa  # noqa: E402


def test_beam_of_one_without_lm_equals_greedy():
    tok = Tokenizer()
    torch.manual_seed(0)
    # peaky, model-like posteriors: mostly blank, with random characters
    logits = torch.randn(4, 60, len(tok)) * 4
    logits[..., 0] += 3
    lp = logits.log_softmax(-1)
    lens = torch.tensor([60, 45, 30, 12])
    greedy = greedy_decode(lp, lens, tok)
    beam = BeamDecoder(tok, DecoderConfig(kind="beam", beam_size=1, beam_threshold=1e9))(lp, lens)
    assert [h.text for h in beam] == [h.text for h in greedy]
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.frames for h in beam] == [h.frames for h in greedy]


def _ctc_log_prob(lp: torch.Tensor, labels: list[int]) -> float:
    """log P(labels | x): CTC's sum over every alignment (by torch's ctc_loss)."""
    if not labels:
        return float(lp[:, 0].sum())
    loss = F.ctc_loss(
        lp[:, None],
        torch.tensor([labels]),
        torch.tensor([lp.shape[0]]),
        torch.tensor([len(labels)]),
        reduction="sum",
    )
    return -float(loss)


def test_beam_finds_the_brute_force_best_labelling():
    tok = Tokenizer(["a", "b", " "])
    # blank wins every frame (greedy says ""), but "ab" collects more probability over its paths
    probs = torch.tensor(
        [
            [0.40, 0.35, 0.20, 0.05],
            [0.40, 0.35, 0.20, 0.05],
            [0.40, 0.20, 0.35, 0.05],
            [0.40, 0.20, 0.35, 0.05],
        ]
    )
    lp = probs.log()
    labels = [1, 2]  # a, b (space excluded to keep words single)
    candidates = [list(s) for n in range(0, 5) for s in itertools.product(labels, repeat=n)]
    best = max(candidates, key=lambda c: _ctc_log_prob(lp, c))
    assert greedy_decode(lp[None], torch.tensor([4]), tok)[0].text == ""
    cfg = DecoderConfig(kind="beam", beam_size=32, beam_threshold=1e9)  # log_add: the default
    assert cfg.log_add  # paths of one labelling summed, as the brute force sums them
    hyp = BeamDecoder(tok, cfg)(lp[None], torch.tensor([4]))[0]
    assert hyp.tokens == best == [1, 2]


def _cat_or_cap(tok: Tokenizer) -> torch.Tensor:
    """Emissions that spell "cap" slightly more clearly than "cat"."""
    frames = [("c", 0.9), ("a", 0.9), (None, 0.0)]
    lp = torch.full((len(frames) + 2, len(tok)), 1e-4)
    for t, (ch, p) in enumerate(frames):
        if ch:
            lp[t, tok.encode(ch)[0]] = p
    lp[2, tok.encode("p")[0]] = 0.55
    lp[2, tok.encode("t")[0]] = 0.45
    lp[3:, 0] = 1.0
    return (lp / lp.sum(-1, keepdim=True)).log()[None]


def test_a_language_model_pulls_toward_its_word(tmp_path):
    tok = Tokenizer()
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("cat c a t |\ncap c a p |\n")
    lm = write_arpa(
        [["the", "cat"]] * 20 + [["cat"]] * 20 + [["cap"]], tmp_path / "lm.arpa", order=2
    )
    lp, lens = _cat_or_cap(tok), torch.tensor([5])
    plain = BeamDecoder(tok, DecoderConfig(kind="beam", lexicon=str(lexicon)))(lp, lens)[0]
    assert plain.text == "cap"
    with_lm = BeamDecoder(
        tok, DecoderConfig(kind="beam", lexicon=str(lexicon), lm=str(lm), lm_weight=2.0)
    )
    assert with_lm(lp, lens)[0].text == "cat"
    # the lexicon can also come from the ARPA model's own words
    auto = BeamDecoder(tok, DecoderConfig(kind="beam", lm=str(lm), lm_weight=2.0))
    assert auto(lp, lens)[0].text == "cat"
    nbest = BeamDecoder(tok, DecoderConfig(kind="beam", lexicon=str(lexicon), nbest=2)).nbest(
        lp, lens
    )[0]
    assert [h.text for h in nbest] == ["cap", "cat"] and nbest[0].score >= nbest[1].score


def test_loading_a_language_model_prints_nothing(tmp_path, capfd):
    """KenLM writes "Loading the LM will be faster..." and a progress bar to fd 2 on every load:
    held back, so that `asr transcribe` prints transcripts only."""
    lm = write_arpa([["the", "cat"]] * 20 + [["cap"]], tmp_path / "lm.arpa", order=2)
    capfd.readouterr()
    BeamDecoder(Tokenizer(), DecoderConfig(kind="beam", lm=str(lm)))
    assert capfd.readouterr().err == ""


def test_native_stderr_is_passed_on_but_kenlm_chatter(capfd):
    chatter = b"Loading the LM will be faster if you build a binary file.\nReading /x/lm.arpa\n"
    chatter += b"----5---10---15---20---25---30---35---40---45---50---55---60---65---70---75---80"
    chatter += b"---85---90---95--100\n" + b"*" * 100 + b"\n"
    with decode._native_stderr_held():
        os.write(2, chatter + b"a warning of someone else's\n")
    assert capfd.readouterr().err == "a warning of someone else's\n"
    with pytest.raises(RuntimeError, match="cannot load"):
        with decode._native_stderr_held():
            os.write(2, chatter + b"why it failed\n")
            raise RuntimeError("cannot load")
    assert capfd.readouterr().err == (chatter + b"why it failed\n").decode()  # all of it
    os.write(2, b"after\n")  # fd 2 is itself again
    assert capfd.readouterr().err == "after\n"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open fds in /proc")
def test_holding_native_stderr_leaks_no_descriptor(monkeypatch):
    before = len(list(Path("/proc/self/fd").iterdir()))
    for _ in range(5):
        with decode._native_stderr_held():
            pass
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, daemons: no Python-level stderr
    with decode._native_stderr_held():
        pass
    assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_bad_lm_and_lexicon_files(tmp_path):
    tok = Tokenizer()
    with pytest.raises(DecoderError, match="nope.arpa: language model not found"):
        BeamDecoder(tok, DecoderConfig(kind="beam", lm=str(tmp_path / "nope.arpa")))
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"\x00garbage" * 10)
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("cat c a t |\n")
    with pytest.raises(DecoderError, match="corrupt.bin: cannot load"):
        BeamDecoder(tok, DecoderConfig(kind="beam", lm=str(corrupt), lexicon=str(lexicon)))
    bad_arpa = tmp_path / "bad.arpa"
    bad_arpa.write_text("this is not an arpa file\n")
    with pytest.raises(DecoderError, match="bad.arpa"):
        BeamDecoder(tok, DecoderConfig(kind="beam", lm=str(bad_arpa)))
    bad_lex = tmp_path / "bad_lexicon.txt"
    bad_lex.write_text("cat c a t |\nnaïve n a ï v e |\n")
    with pytest.raises(DecoderError, match=r"bad_lexicon.txt: line 2: tokens \['ï'\]"):
        BeamDecoder(tok, DecoderConfig(kind="beam", lexicon=str(bad_lex)))
    assert isinstance(build_decoder(tok, DecoderConfig(kind="greedy")), object)


def test_lexicon_search_keeps_the_last_word(tmp_path):
    """Models never emit a word separator after an utterance's last word (transcripts do not end
    in a space), yet lexicon words are spelled with a closing one: the last word must still come
    out, alone or in a padded batch, with frames inside the utterance."""
    tok = Tokenizer()

    def spell(frames: str, pad: int = 0) -> torch.Tensor:
        """Each frame's character certain (1 - 1e-12); '_' blank; padding frames blank."""
        lp = torch.full((len(frames) + pad, len(tok)), 1e-12)
        for t, ch in enumerate(frames + "_" * pad):
            lp[t, 0 if ch == "_" else tok.encode(ch)[0]] = 1.0
        return (lp / lp.sum(-1, keepdim=True)).log()

    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("the t h e |\ncat c a t |\nsat s a t |\n")
    dec = BeamDecoder(tok, DecoderConfig(kind="beam", lexicon=str(lexicon), beam_size=8))
    assert dec(spell("_c_a_t__")[None], torch.tensor([8]))[0].text == "cat"
    batch = torch.stack([spell("_c_a_t__", pad=2), spell("the_ _cat_")])
    lens = torch.tensor([8, 10])
    hyps = dec(batch, lens)
    assert [h.text for h in hyps] == ["cat", "the cat"]
    assert all(f < int(n) for h, n in zip(hyps, lens) for f in h.frames)
