import math
import random

import kenlm
import pytest

from asr.cli import main
from asr.lm import (
    LMError,
    arpa_words,
    build_arpa,
    load_kenlm,
    perplexity,
    read_sentences,
    write_arpa,
    write_lexicon,
)
from asr.text import Tokenizer


def _corpus(n: int, seed: int) -> list[list[str]]:
    """Sentences from a small grammar: structure an n-gram can learn."""
    rng = random.Random(seed)
    subjects, verbs, objects = (
        ["the cat", "a dog", "my friend", "we"],
        ["sees", "likes", "calls"],
        ["it", "the bear", "a tree", "them"],
    )
    return [
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}".split()
        for _ in range(n)
    ]


def _next_word_mass(model, vocab: list[str], context: list[str]) -> float:
    state, out = kenlm.State(), kenlm.State()
    if context and context[0] == "<s>":
        model.BeginSentenceWrite(state)
        context = context[1:]
    else:
        model.NullContextWrite(state)
    for word in context:
        nxt = kenlm.State()
        model.BaseScore(state, word, nxt)
        state = nxt
    return sum(10 ** model.BaseScore(state, w, out) for w in vocab)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_probabilities_sum_to_one_in_kenlm(tmp_path, order):
    path = write_arpa(_corpus(300, 0), tmp_path / "lm.arpa", order)
    model = load_kenlm(path)
    vocab = arpa_words(path) + ["</s>", "<unk>"]
    for context in (
        [],
        ["<s>"],
        ["<s>", "the"],
        ["the", "cat"],
        ["we", "sees"],
        ["unseen", "words"],
        ["<s>", "a", "dog", "likes"],
    ):
        assert _next_word_mass(model, vocab, context) == pytest.approx(1.0, abs=1e-4), context


def test_held_out_perplexity_beats_a_unigram(tmp_path):
    train, held_out = _corpus(400, 1), _corpus(100, 2)
    trigram = load_kenlm(write_arpa(train, tmp_path / "3.arpa", 3))
    ppl3 = perplexity(trigram, held_out)
    # the unigram model's perplexity, read straight from its ARPA file (KenLM loads order >= 2 only)
    unigram = {}
    for line in build_arpa(train, 1).splitlines():
        fields = line.split("\t")
        if len(fields) == 2 and fields[1] not in ("<s>",):
            unigram[fields[1]] = float(fields[0])
    log10 = sum(unigram.get(w, unigram["<unk>"]) for s in held_out for w in [*s, "</s>"])
    ppl1 = 10 ** (-log10 / sum(len(s) + 1 for s in held_out))
    assert math.isfinite(ppl3) and ppl3 < 0.5 * ppl1, (ppl3, ppl1)


def test_arpa_header_counts_and_sparse_data(tmp_path):
    text = build_arpa([["hello"]], order=3)  # too little data to estimate discounts: fall back
    counts = {
        int(l.split("=")[0][6:]): int(l.split("=")[1])
        for l in text.splitlines()
        if l.startswith("ngram ")
    }
    rows: dict[int, int] = {}
    order = 0
    for line in text.splitlines():
        if line.endswith("-grams:"):
            order = int(line[1:].split("-")[0])
        elif line.startswith("\\"):
            order = 0
        elif order and line:
            rows[order] = rows.get(order, 0) + 1
    assert rows == counts
    path = tmp_path / "tiny.arpa"
    path.write_text(text)
    assert load_kenlm(path).score("hello", bos=True, eos=True) < 0
    with pytest.raises(LMError, match="no sentences"):
        build_arpa([], 3)


def test_read_sentences_normalises_text_and_manifests(tmp_path):
    (tmp_path / "a.txt").write_text("Hello, World!\n\nIt's ME.\n")
    (tmp_path / "m.jsonl").write_text(
        '{"id": "x", "audio": "a.wav", "duration": 1, "text": "WE CALL IT BEAR"}\n'
    )
    assert read_sentences([tmp_path / "a.txt", tmp_path / "m.jsonl"]) == [
        ["hello", "world"],
        ["it's", "me"],
        ["we", "call", "it", "bear"],
    ]
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(LMError, match="bad.jsonl: line 1"):
        read_sentences([tmp_path / "bad.jsonl"])
    with pytest.raises(LMError, match="missing.txt: text file not found"):
        read_sentences([tmp_path / "missing.txt"])


def test_lexicon_skips_unspellable_words(tmp_path):
    n, bad = write_lexicon(["cat", "naïve", "cat", "it's"], Tokenizer(), tmp_path / "lex.txt")
    assert n == 2 and bad == {"ï": 1}
    assert (tmp_path / "lex.txt").read_text() == "cat c a t |\nit's i t ' s |\n"


def test_cli_build_lexicon_and_bad_lm(tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(" ".join(s) for s in _corpus(50, 3)) + "\n")
    assert main(["lm", "build", str(text), "--order", "3", "--out", str(tmp_path / "lm.arpa")]) == 0
    assert (
        main(["lm", "lexicon", str(tmp_path / "lm.arpa"), "--out", str(tmp_path / "lex.txt")]) == 0
    )
    assert "tree t r e e |" in (tmp_path / "lex.txt").read_text()
    assert main(["lm", "build", str(text), "--order", "1", "--out", str(tmp_path / "x.arpa")]) == 2
    assert "--order must be 2 or more" in capsys.readouterr().err
    with pytest.raises(LMError, match="not a readable ARPA"):
        bad = tmp_path / "bad.arpa"
        bad.write_text("garbage")
        load_kenlm(bad)
