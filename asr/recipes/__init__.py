"""Corpus importers: each turns a corpus's native layout into the project's manifests.

Each corpus is one module here, ending in a :class:`~asr.recipes.common.Corpus` record; ``CORPORA``
lists them, and ``asr prepare`` offers them in this order. Adding a corpus is one new module (and its
``recipes/<corpus>/``) plus its line here.
"""

from asr.recipes import (
    an4,
    commonvoice,
    espeak,
    folder,
    fsdd,
    kaldi,
    librispeech,
    ljspeech,
    nemo,
    speechcommands,
    speechocean,
    tedlium,
)
from asr.recipes.corpus import Corpus

CORPORA: tuple[Corpus, ...] = (
    librispeech.CORPUS,
    an4.CORPUS,
    speechcommands.CORPUS,
    commonvoice.CORPUS,
    tedlium.CORPUS,
    fsdd.CORPUS,
    ljspeech.CORPUS,
    speechocean.CORPUS,
    espeak.CORPUS,
    kaldi.CORPUS,  # the generic layouts last
    folder.CORPUS,
    nemo.CORPUS,
)
