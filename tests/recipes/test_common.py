"""Downloads: local files and file:// URLs, resume of a .part file, checksums, .done markers."""

import hashlib
import io

import pytest

from asr.recipes import common
from asr.recipes.common import download, extract, fetch_archive, parse_checksum


def _payload(tmp_path, size=300_000):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(bytes(range(256)) * (size // 256))
    return src, hashlib.md5(src.read_bytes()).hexdigest()


def test_parse_checksum():
    assert parse_checksum("a" * 32) == ("md5", "a" * 32)
    assert parse_checksum("SHA256:" + "B" * 64) == ("sha256", "b" * 64)
    with pytest.raises(ValueError, match="not md5:HEX"):
        parse_checksum("crc:1234")


def test_file_url_resumes_a_part_file_and_verifies(tmp_path):
    src, md5 = _payload(tmp_path)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    dest.with_name("blob.bin.part").write_bytes(src.read_bytes()[:100_000])  # an interrupted run
    assert download(src.as_uri(), dest, f"md5:{md5}") == dest
    assert dest.read_bytes() == src.read_bytes()
    assert not dest.with_name("blob.bin.part").exists()
    assert dest.with_name("blob.bin.done").read_text().strip() == f"md5:{md5}"


def test_checksum_mismatch_is_named_and_the_file_removed(tmp_path):
    src, _ = _payload(tmp_path)
    dest = tmp_path / "dl" / "blob.bin"
    with pytest.raises(ValueError, match=r"blob.bin: checksum mismatch: expected md5 0{32}, got"):
        download(str(src), dest, "0" * 32)
    assert not dest.exists() and not dest.with_name("blob.bin.part").exists()
    assert not dest.with_name("blob.bin.done").exists()


def test_done_marker_skips_the_fetch(tmp_path):
    src, md5 = _payload(tmp_path)
    dest = tmp_path / "dl" / "blob.bin"
    download(str(src), dest, md5)
    src.unlink()  # a re-run must not need the source again
    assert download(str(src), dest, md5) == dest
    with pytest.raises(FileNotFoundError, match="file not found"):
        download(str(src), tmp_path / "dl" / "other.bin")


def test_http_range_resume(tmp_path, monkeypatch):
    """An HTTP server that honours Range (urlopen replaced: no socket); the .part file resumes."""
    src, md5 = _payload(tmp_path)
    ranges = []

    class Response(io.BytesIO):
        def __init__(self, data: bytes, status: int) -> None:
            super().__init__(data)
            self.status = status
            self.headers = {"Content-Length": str(len(data))}

    def fake_urlopen(request, timeout):
        assert request.full_url == "http://example.invalid/blob.bin"
        ranges.append(request.get_header("Range"))
        data = src.read_bytes()
        start = int(request.get_header("Range")[6:-1]) if request.get_header("Range") else 0
        return Response(data[start:], 206 if start else 200)

    monkeypatch.setattr(common.urllib.request, "urlopen", fake_urlopen)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    dest.with_name("blob.bin.part").write_bytes(src.read_bytes()[:12_345])
    download("http://example.invalid/blob.bin", dest, md5)
    assert ranges == ["bytes=12345-"] and dest.read_bytes() == src.read_bytes()


def test_fetch_archive_extracts_once_and_refuses_escaping_members(tmp_path):
    import tarfile

    (tmp_path / "tree" / "corpus").mkdir(parents=True)
    (tmp_path / "tree" / "corpus" / "a.txt").write_text("hello")
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tmp_path / "tree" / "corpus", "corpus")
    out = fetch_archive(str(archive), tmp_path / "dl", "corpus.tar.gz", None, keep=False)
    assert (out / "corpus" / "a.txt").read_text() == "hello"
    assert not (tmp_path / "dl" / "corpus.tar.gz").exists()  # keep=False removed it
    (out / "corpus" / "a.txt").write_text("changed")
    fetch_archive(str(archive), tmp_path / "dl", "corpus.tar.gz", None)  # skipped: .done
    assert (out / "corpus" / "a.txt").read_text() == "changed"

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        t.add(tmp_path / "tree" / "corpus" / "a.txt", "../escaped.txt")
    with pytest.raises(ValueError, match="evil.tar: refused an unsafe member|leaves"):
        extract(evil, tmp_path / "x")
    assert not (tmp_path / "escaped.txt").exists()
