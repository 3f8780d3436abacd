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
