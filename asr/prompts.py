"""Sentences to read aloud: the CMU ARCTIC prompts, for recording an enrolment (``asr enrol``).

CMU ARCTIC's 1,132 prompts are sentences from out-of-copyright books (Project Gutenberg) that
Kominek and Black chose greedily for diphone coverage: read in their order (set ``a`` first), the
first few dozen already cover most of English's sound pairs, which is what a short enrolment
needs. The text ships as ``asr/pretrained/arctic_prompts.txt`` (as the CC0 kathleen recordings
read it).
"""

from __future__ import annotations

from pathlib import Path

PROMPTS_FILE = Path(__file__).parent / "pretrained" / "arctic_prompts.txt"


def arctic_prompts() -> list[tuple[str, str]]:
    """All the prompts in ARCTIC's order: ``(id, text)``, e.g. ``("a0001", "Author of ...")``."""
    prompts = []
    for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            pid, text = line.split("\t", 1)
            prompts.append((pid, text))
    return prompts


def choose_prompts(n: int, start: int = 0) -> list[tuple[str, str]]:
    """``n`` prompts from the ``start``-th on, in ARCTIC's order (the greedy coverage order).

    Raises:
        ValueError: ``n`` is not between 1 and the number of prompts left after ``start``.
    """
    prompts = arctic_prompts()
    if not 0 <= start < len(prompts) or not 1 <= n <= len(prompts) - start:
        raise ValueError(
            f"there are {len(prompts)} prompts: choose 1 to {len(prompts) - max(0, start)} "
            f"from the {start}-th, not {n}"
        )
    return prompts[start : start + n]


def write_prompts(prompts: list[tuple[str, str]], folder: str | Path) -> list[Path]:
    """Write each prompt as ``folder/arctic_<id>.txt``: record ``arctic_<id>.wav`` beside it and
    the folder is what ``asr enrol`` reads. Existing transcripts are left as they are."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for pid, text in prompts:
        path = folder / f"arctic_{pid}.txt"
        if not path.exists():
            path.write_text(text + "\n", encoding="utf-8")
            written.append(path)
    return written
