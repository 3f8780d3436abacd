import math
import random
import signal
import subprocess
import sys

import kenlm
import pytest

from asr.cli import main
from asr.lm import (
    LMError,
    arpa_words,
    build_arpa,
    build_model,
    load_kenlm,
    mix,
    perplexity,
    read_arpa,
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
    with pytest.raises(LMError, match="missing.txt: text file or folder not found"):
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


CONTEXTS = ([], ["<s>"], ["<s>", "the"], ["the", "cat"], ["we", "sees"], ["unseen", "words"])


def _assert_normalised(path, contexts=CONTEXTS):
    model = load_kenlm(path)
    vocab = arpa_words(path) + ["</s>", "<unk>"]
    for context in contexts:
        assert _next_word_mass(model, vocab, context) == pytest.approx(1.0, abs=1e-4), context


def _noisy_corpus(n, seed, extra=()):
    """The grammar's sentences with random word swaps: many rare n-grams for pruning to drop."""
    rng = random.Random(seed)
    words = sorted({w for s in _corpus(50, 0) for w in s} | set(extra))
    out = []
    for sentence in _corpus(n, seed):
        out.append([rng.choice(words) if rng.random() < 0.2 else w for w in sentence])
    return out


@pytest.mark.parametrize("prune", [(0, 1), (0, 1, 1), (0, 0, 2), (0, 2, 5)])
def test_pruned_models_are_smaller_and_still_normalised(tmp_path, prune):
    corpus = _noisy_corpus(400, 4)
    full, pruned = build_model(corpus, 3), build_model(corpus, 3, prune)
    assert len(pruned.grams[3]) < len(full.grams[3])
    assert len(pruned.grams[1]) == len(full.grams[1])  # unigrams are never pruned
    path = pruned.write_arpa(tmp_path / "pruned.arpa")
    _assert_normalised(path)
    # each kept n-gram's prefix and suffix are kept (KenLM refuses a file without them)
    for n in (2, 3):
        lower = {tuple(r) for r in pruned.grams[n - 1].tolist()}
        for row in pruned.grams[n].tolist():
            assert tuple(row[:-1]) in lower and tuple(row[1:]) in lower
    held_out = _noisy_corpus(100, 5)
    assert perplexity(load_kenlm(path), held_out) < 1.5 * perplexity(
        load_kenlm(full.write_arpa(tmp_path / "full.arpa")), held_out
    )


def test_rare_words_become_unk(tmp_path):
    corpus = _corpus(200, 6) + [["zyzzyva", "sees", "it"]]
    model = build_model(corpus, 3, min_count=2)
    assert "zyzzyva" not in model.words and "<unk>" in model.words
    _assert_normalised(model.write_arpa(tmp_path / "lm.arpa"), [*CONTEXTS, ["<unk>", "sees"]])


def test_mixed_models_interpolate_and_stay_normalised(tmp_path):
    a = build_model(_noisy_corpus(300, 7), 3, (0, 1, 1))
    b = build_model(_noisy_corpus(300, 8, extra=["zebra", "yak"]), 2)  # another order and words
    pa, pb = a.write_arpa(tmp_path / "a.arpa"), b.write_arpa(tmp_path / "b.arpa")
    back = read_arpa(pa)  # ARPA round trip: the same n-grams and (6-digit) probabilities
    assert all((back.grams[n] == a.grams[n]).all() for n in a.grams)
    assert back.words == a.words
    mixed = mix(read_arpa(pa), read_arpa(pb), 0.3)
    path = mixed.write_arpa(tmp_path / "mix.arpa")
    _assert_normalised(path, [*CONTEXTS, ["zebra"], ["zebra", "yak"]])
    # an n-gram both models know: p = 0.3 p_a + 0.7 p_b
    ka, kb, km = load_kenlm(pa), load_kenlm(pb), load_kenlm(path)
    words = ["the", "cat", "sees"]
    cond = []
    for k in (ka, kb, km):
        state, nxt = kenlm.State(), kenlm.State()
        k.NullContextWrite(state)
        for w in words[:2]:
            k.BaseScore(state, w, nxt)
            state, nxt = nxt, kenlm.State()
        cond.append(10 ** k.BaseScore(state, words[2], nxt))
    assert cond[2] == pytest.approx(0.3 * cond[0] + 0.7 * cond[1], rel=1e-4)


def test_cli_build_prunes_and_mixes(tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("\n".join(" ".join(s) for s in _noisy_corpus(200, 9)) + "\n")
    a, b = tmp_path / "a.arpa", tmp_path / "b.arpa"
    assert main(["lm", "build", str(text), "--prune", "0,1,1", "--out", str(a)]) == 0
    assert "3-grams" in capsys.readouterr().out
    assert main(["lm", "build", str(text), "--order", "2", "--out", str(b)]) == 0
    out = tmp_path / "m.arpa"
    assert main(["lm", "mix", str(a), str(b), "--weight", "0.5", "--out", str(out)]) == 0
    _assert_normalised(out)
    assert main(["lm", "build", str(text), "--prune", "2,1", "--out", str(a)]) == 2
    assert "--prune must be non-decreasing" in capsys.readouterr().err
    assert main(["lm", "mix", str(a), str(b), "--weight", "1.5", "--out", str(out)]) == 2


def test_a_build_stopped_by_sigterm_leaves_no_partial_arpa(tmp_path):
    """SIGTERM (systemd, docker) mid-write: the partial .arpa.tmp is removed, the process still
    dies by SIGTERM; here the write is made to stall after its first lines."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\nthe dog sat\n")
    out = tmp_path / "lm.arpa"
    code = (
        "import sys, time; from asr import lm; from asr.cli import main\n"
        "real = lm.NgramModel._write_arpa_lines\n"
        "def stall(self, tmp):\n"
        "    tmp.write_text('\\\\data\\\\\\n'); print('WRITING', flush=True); time.sleep(60)\n"
        "lm.NgramModel._write_arpa_lines = stall\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "lm", "build", str(text), "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        assert (tmp_path / "lm.arpa.tmp").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM
    finally:
        proc.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def _build_peak_mb(text, out) -> float:
    """``asr lm build TEXT`` in a subprocess; its peak resident memory (VmHWM) in MB."""
    code = (
        "import re, sys; from asr.cli import main; assert main(sys.argv[1:]) == 0; "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "lm", "build", str(text), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_build_memory_follows_the_distinct_ngrams_not_the_text(tmp_path):
    """8 MB and 32 MB of text over 13 words, a sentence a line: the same peak (the text is
    streamed a line at a time, counted a chunk at a time). It grew with the text (1.22 GB for
    200 MB)."""
    rng = random.Random(0)
    words = "the cat sat on a mat and dog ran to big red house".split()
    line = lambda: " ".join(rng.choice(words) for _ in range(10)) + ".\n"  # noqa: E731
    peaks = []
    for mb in (8, 32):
        text = tmp_path / f"t{mb}.txt"
        with text.open("w") as f:
            while f.tell() < mb * 1_000_000:
                f.write(line())
        peaks.append(_build_peak_mb(text, tmp_path / f"t{mb}.arpa"))
    assert peaks[1] - peaks[0] < 20, peaks
