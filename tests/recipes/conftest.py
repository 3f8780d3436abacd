"""Helpers for recipe tests: archives of a tree built in the test, manifest reading, and the
default recipe's scripts loaded as modules."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "default"


def make_tar(tree: Path, archive: Path, top: str) -> str:
    """Pack ``tree`` as ``top/...`` into a .tar.gz/.tgz/.tar.bz2; returns the archive's md5."""
    mode = "w:bz2" if archive.name.endswith(".bz2") else "w:gz"
    with tarfile.open(archive, mode) as t:
        t.add(tree, top)
    return hashlib.md5(archive.read_bytes()).hexdigest()


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def load_default_script(name: str) -> ModuleType:
    """``recipes/default/<name>.py`` (``name`` may hold a folder: ``experiments/adapt``) as a
    module, able to import the recipe's ``score.py`` as the script does when run, and leaving no
    module named ``score`` behind for other tests."""
    path = DEFAULT_RECIPE / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"default_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    other_score = sys.modules.pop("score", None)
    sys.path.insert(0, str(DEFAULT_RECIPE))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DEFAULT_RECIPE))
        sys.modules.pop("score", None)
        if other_score is not None:
            sys.modules["score"] = other_score
    return module
