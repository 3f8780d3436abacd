"""Helpers for recipe tests: archives of a tree built in the test, and manifest reading."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path


def make_tar(tree: Path, archive: Path, top: str) -> str:
    """Pack ``tree`` as ``top/...`` into a .tar.gz/.tgz/.tar.bz2; returns the archive's md5."""
    mode = "w:bz2" if archive.name.endswith(".bz2") else "w:gz"
    with tarfile.open(archive, mode) as t:
        t.add(tree, top)
    return hashlib.md5(archive.read_bytes()).hexdigest()


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
