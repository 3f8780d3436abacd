"""Downloads: local files and file:// URLs, resume of a .part file, checksums, .done markers."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

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


def test_http_range_resume_on_loopback(tmp_path):
    """A local HTTP server (127.0.0.1, no network) that honours Range; the .part file resumes."""
    src, md5 = _payload(tmp_path)
    ranges = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            ranges.append(self.headers.get("Range"))
            data = src.read_bytes()
            start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(src.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = tmp_path / "dl" / "blob.bin"
        dest.parent.mkdir()
        dest.with_name("blob.bin.part").write_bytes(src.read_bytes()[:12_345])
        download(f"http://127.0.0.1:{server.server_port}/blob.bin", dest, md5)
    finally:
        server.shutdown()
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
