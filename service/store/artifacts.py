"""Content-addressed file store for uploads and reports.

A ref is ``<sha256 hex of the bytes><suffix>`` (suffix like ``.onnx``, ``.json``; letters,
digits and dots only), stored at ``root/ab/cd/<ref>``. Writes are atomic (temporary file in the
same folder, fsync, ``os.replace``), so a reader never sees a partial file and two writers of
the same bytes agree. Refs are validated before any path is built: no traversal is possible.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

_REF = re.compile(r"^[0-9a-f]{64}(\.[A-Za-z0-9]{1,16}){0,2}$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,16}){0,2}$")


class ArtifactNotFound(FileNotFoundError):
    """No artifact with this ref."""


class InvalidArtifactRef(ValueError):
    """A ref that this store did not produce (and that could escape its root)."""


class ArtifactStore:
    """Immutable blobs addressed by their SHA-256 (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, *, suffix: str = "") -> str:
        """Store ``data`` and return its ref; storing the same bytes twice is a no-op."""
        if not _SUFFIX.match(suffix):
            raise InvalidArtifactRef(f"invalid artifact suffix {suffix!r}")
        ref = hashlib.sha256(data).hexdigest() + suffix
        target = self.path(ref)
        if target.exists():
            return ref
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return ref

    def path(self, ref: str) -> Path:
        """The file of ``ref`` (validated; the file may not exist)."""
        if not isinstance(ref, str) or not _REF.match(ref):
            raise InvalidArtifactRef(f"invalid artifact ref {str(ref)[:80]!r}")
        return self.root / ref[:2] / ref[2:4] / ref

    def exists(self, ref: str) -> bool:
        """True if the artifact is stored."""
        return self.path(ref).is_file()

    def get(self, ref: str) -> bytes:
        """The bytes of ``ref``; raises :class:`ArtifactNotFound`."""
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {ref} not found") from exc

    def open(self, ref: str) -> BinaryIO:
        """A binary file object for reading ``ref``; raises :class:`ArtifactNotFound`."""
        try:
            return self.path(ref).open("rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact {ref} not found") from exc

    def delete(self, ref: str) -> bool:
        """Remove an artifact (only when no job refers to it any more)."""
        try:
            self.path(ref).unlink()
            return True
        except FileNotFoundError:
            return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
