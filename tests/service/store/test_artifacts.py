"""ArtifactStore: content addressing, atomic writes, ref validation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.store.artifacts import ArtifactNotFound, ArtifactStore, InvalidArtifactRef


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
