"""Content-addressed file store for uploads and reports.

A ref is ``<sha256 hex of the bytes><suffix>`` (suffix like ``.onnx``, ``.json``; letters,
digits and dots only), stored at ``root/ab/cd/<ref>``. Writes are atomic (temporary file in the
same folder, fsync, ``os.replace``), so a reader never sees a partial file and two writers of
the same bytes agree. Refs are validated before any path is built: no traversal is possible.

A full disk (``ENOSPC``, or ``EDQUOT`` over a quota) raises :class:`StorageFull` and leaves no
temporary file behind; :meth:`ArtifactStore.put_all` stores several blobs all or none, so a
submission or a report pair that does not fit leaves nothing of itself (the API answers 507,
the worker fails the job with ``insufficient-storage``: :mod:`service.errors`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

_REF = re.compile(r"^[0-9a-f]{64}(\.[A-Za-z0-9]{1,16}){0,2}$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,16}){0,2}$")


class ArtifactNotFound(FileNotFoundError):
    """No artifact with this ref."""


class InvalidArtifactRef(ValueError):
    """A ref that this store did not produce (and that could escape its root)."""


class StorageFull(OSError):
    """The artifact store's file system has no room for a blob (ENOSPC or EDQUOT)."""

    def __init__(self, size: int) -> None:
        super().__init__(errno.ENOSPC, f"no space left in the artifact store for {size} bytes")
        self.size = size


class ArtifactStore:
    """Immutable blobs addressed by their SHA-256 (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, *, suffix: str = "") -> str:
        """Store ``data`` and return its ref; storing the same bytes twice is a no-op.

        Raises:
            StorageFull: no room on the disk; no file (final or temporary) is left.
        """
        return self._put(data, suffix)[0]

    def put_all(self, blobs: Sequence[tuple[bytes, str]]) -> list[str]:
        """Store each ``(data, suffix)`` and return their refs, all or none.

        When one put fails (:class:`StorageFull`, any ``OSError``), the blobs this call created
        are removed again before the error propagates; blobs that were already stored (shared
        by another job: the store is content-addressed) stay.
        """
        refs: list[str] = []
        created: list[str] = []
        try:
            for data, suffix in blobs:
                ref, new = self._put(data, suffix)
                refs.append(ref)
                if new:
                    created.append(ref)
        except BaseException:
            for ref in created:
                self.delete(ref)
            raise
        return refs

    def _put(self, data: bytes, suffix: str) -> tuple[str, bool]:
        """``(ref, created)``: created is False when the bytes were stored already."""
        if not _SUFFIX.match(suffix):
            raise InvalidArtifactRef(f"invalid artifact suffix {suffix!r}")
        ref = hashlib.sha256(data).hexdigest() + suffix
        target = self.path(ref)
        if target.exists():
            return ref, False
        tmp: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StorageFull(len(data)) from exc
            raise
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return ref, True

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
