"""The object store interface shared by every backend.

Layout under the store's root (the same for every backend)::

    objects/sha256/ab/cdef...      raw objects, content-addressed (immutable)
    manifest/part-*.parquet        the object manifest
    quarantine/part-*.parquet      the quarantine ledger
    staging/<run>/...              per-run intermediate files
    runs/<run>.json                run summaries

Content-addressed writes are idempotent: putting the same bytes twice stores
them once and reports ``created=False`` the second time.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from rosetta.core.hashing import sha256_bytes
from schemas.records import ObjectRef

OBJECTS_PREFIX = "objects"
_SPOOL_BYTES = 8 * 1024 * 1024


def content_key(sha256: str) -> str:
    """Content-addressed key of an object with this sha256 (git-style fan-out)."""
    if len(sha256) != 64:
        raise ValueError(f"not a hex sha256: {sha256!r}")
    return f"{OBJECTS_PREFIX}/sha256/{sha256[:2]}/{sha256[2:]}"


class ObjectStore(ABC):
    """Raw object storage with content-addressed puts and plain keyed files."""

    # -- content-addressed objects -------------------------------------------------
    def put(self, data: bytes, *, media_type: str = "application/octet-stream",
            sha256: str | None = None) -> ObjectRef:
        """Store ``data`` under its sha256 key; a no-op if it is already there.

        ``sha256`` may pass a digest the caller just computed from these same
        bytes, to avoid hashing twice.
        """
        digest = sha256 or sha256_bytes(data)
        key = content_key(digest)
        created = self._put_if_absent(key, data, media_type)
        return ObjectRef(key=key, uri=self.uri_for(key), sha256=digest, size_bytes=len(data),
                         media_type=media_type, created=created)

    def put_stream(self, stream: BinaryIO, *, media_type: str = "application/octet-stream") -> ObjectRef:
        """Store everything left in ``stream`` without holding it all in memory.

        The stream is spooled to a temporary file while it is hashed (the key
        depends on the hash), then uploaded from there; large objects go up in
        parts.
        """
        import hashlib

        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(prefix="rosetta-put-", delete=False) as spool:
            try:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    spool.write(chunk)
                    size += len(chunk)
                spool.flush()
                key = content_key(digest.hexdigest())
                created = self._put_file_if_absent(key, spool.name, size, media_type)
            finally:
                spool.close()
                os.unlink(spool.name)
        return ObjectRef(key=key, uri=self.uri_for(key), sha256=digest.hexdigest(), size_bytes=size,
                         media_type=media_type, created=created)

    def put_file(self, path: str | os.PathLike[str], *,
                 media_type: str = "application/octet-stream") -> ObjectRef:
        """Store the file at ``path`` (streamed; large files in parts)."""
        size = os.path.getsize(path)
        if size <= _SPOOL_BYTES:
            with open(path, "rb") as handle:
                return self.put(handle.read(), media_type=media_type)
        with open(path, "rb") as handle:
            return self.put_stream(handle, media_type=media_type)

    def has_content(self, sha256: str) -> bool:
        """True if an object with this sha256 is stored."""
        return self.exists(content_key(sha256))

    # -- plain keys (manifests, staging, summaries) --------------------------------------
    @abstractmethod
    def write_bytes(self, key: str, data: bytes, *, media_type: str = "application/octet-stream") -> None:
        """Write ``data`` at ``key``, replacing what was there (atomically per key)."""

    def read_bytes(self, key: str) -> bytes:
        """The whole object at ``key``; raises NotFoundError if absent."""
        with self.open(key) as stream:
            return stream.read()

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A readable binary stream over ``key`` (streamed, not loaded whole)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if ``key`` exists."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (relative to the store root), in lexical order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @property
    @abstractmethod
    def root_uri(self) -> str:
        """URI of the store's root (``s3://bucket/prefix`` or ``file:///dir``)."""

    @abstractmethod
    def uri_for(self, key: str) -> str:
        """The full URI of ``key`` (``s3://...`` or ``file://...``)."""

    @abstractmethod
    def key_for(self, uri: str) -> str:
        """The key of a URI this store produced; raises ValueError for a foreign URI."""

    @abstractmethod
    def check(self) -> None:
        """Fail fast with a ConfigError if the store is unreachable or misconfigured."""

    def close(self) -> None:  # noqa: B027 - optional hook: only networked backends hold resources
        """Release clients and connections."""

    # -- backend primitives ------------------------------------------------------------
    @abstractmethod
    def _put_if_absent(self, key: str, data: bytes, media_type: str) -> bool:
        """Write ``data`` at ``key`` unless it exists; True if this call wrote it."""

    @abstractmethod
    def _put_file_if_absent(self, key: str, path: str, size: int, media_type: str) -> bool:
        """Upload the file at ``path`` to ``key`` unless it exists; True if written."""
