"""ArtifactStore: content addressing, atomic writes, ref validation."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from service.store.artifacts import (
    ArtifactNotFound,
    ArtifactStore,
    InvalidArtifactRef,
    StorageFull,
)


def test_put_returns_sha256_ref_and_get_returns_bytes(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = store.put(b"hello", suffix=".json")
    assert ref == hashlib.sha256(b"hello").hexdigest() + ".json"
    assert store.get(ref) == b"hello" and store.exists(ref)
    with store.open(ref) as fh:
        assert fh.read() == b"hello"


def test_same_bytes_twice_give_one_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.put(b"x") == store.put(b"x")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put(b"abc" * 1000, suffix=".npz")
    assert not [p for p in tmp_path.rglob(".tmp-*")]


@pytest.mark.parametrize("ref", ["../../etc/passwd", "a" * 64 + "/../x", "/abs", "A" * 64, ""])
def test_refs_that_could_escape_are_refused(tmp_path: Path, ref: str) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(InvalidArtifactRef, match="invalid artifact ref"):
        store.get(ref)


def test_bad_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifactRef, match="invalid artifact suffix"):
        ArtifactStore(tmp_path).put(b"x", suffix="/../x")


def test_missing_artifact_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound, match="not found"):
        ArtifactStore(tmp_path).get("0" * 64)


def test_a_full_disk_raises_storage_full_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real full disk (a 2 MiB tmpfs) is tests/service/test_faults.py; here ENOSPC comes
    # from fsync, as it does on file systems that allocate late.
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = ArtifactStore(tmp_path)
    monkeypatch.setattr("service.store.artifacts.os.fsync", no_space)
    with pytest.raises(StorageFull, match="no space left in the artifact store for 3000 bytes"):
        store.put(b"abc" * 1000, suffix=".npz")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_other_os_errors_are_not_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    store = ArtifactStore(tmp_path)
    monkeypatch.setattr("service.store.artifacts.os.fsync", io_error)
    with pytest.raises(OSError, match="Input/output error") as info:
        store.put(b"abc")
    assert not isinstance(info.value, StorageFull)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_put_all_stores_all_or_none(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    shared = store.put(b"shared", suffix=".json")
    with pytest.raises(InvalidArtifactRef, match="invalid artifact suffix"):
        store.put_all([(b"shared", ".json"), (b"new", ".npz"), (b"third", "/../x")])
    files = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [shared], "a blob this call created survived its failure"
    refs = store.put_all([(b"new", ".npz"), (b"third", ".csv")])
    assert [store.get(r) for r in refs] == [b"new", b"third"]
