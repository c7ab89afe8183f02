"""``tmbench.fileio``: the one atomic write (text, bytes or a writer; the old file survives a
failure, no temp file is left) and the sha256 helpers."""

import hashlib
import os
import stat

import pytest


def test_atomic_write_text_bytes_writer_and_failure(tmp_path):
    from tmbench.fileio import atomic_write

    p = tmp_path / "sub" / "f.txt"
    atomic_write(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    mode = stat.S_IMODE(p.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the usual permissions, not mkstemp's 0600
    atomic_write(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write(p, lambda tmp: tmp.write_bytes(b"by writer"))
    assert p.read_bytes() == b"by writer"

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(p, "new", before_replace=boom)
    assert p.read_bytes() == b"by writer"  # the old file stays whole
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]  # no temp file left


def test_sha256_helpers(tmp_path):
    from tmbench.fileio import sha256_file, sha256_file_cached, sha256_text
    from tmbench.models.hf import content_hash_of

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"yz")
    assert sha256_file(a) == hashlib.sha256(a.read_bytes()).hexdigest() == sha256_file_cached(a)
    assert sha256_file([a, b]) == hashlib.sha256(a.read_bytes() + b"yz").hexdigest()
    assert content_hash_of([b, a]) == sha256_file([a, b])[:16]  # sorted order
    assert sha256_text("é") == hashlib.sha256("é".encode()).hexdigest()
    # the cache answers from memory for an unchanged file and hashes again when it changes
    import tmbench.fileio as fileio

    before = sha256_file_cached(b)
    calls = []
    real = fileio.sha256_file
    fileio.sha256_file = lambda p: calls.append(p) or real(p)
    try:
        assert sha256_file_cached(b) == before and calls == []
        b.write_bytes(b"a longer text")  # size changes, so does the key
        assert sha256_file_cached(b) == hashlib.sha256(b"a longer text").hexdigest()
        assert len(calls) == 1
    finally:
        fileio.sha256_file = real


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
