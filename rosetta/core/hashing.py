"""Content hashing and deterministic identifiers."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from typing import BinaryIO

#: Namespace for every uuid5 Rosetta derives.  Never change it: point IDs and
#: other derived keys would all change with it.
ROSETTA_NAMESPACE = uuid.UUID("6f1c3a52-7d1e-5b0c-9a52-2b8f4c1d0e77")

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hex sha256 and size in bytes of everything left in ``stream``."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_files(paths: Iterable[str]) -> str:
    """One sha256 over several files, in the order given (for model weights)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def stable_uuid(*parts: str) -> str:
    """A uuid5 of ``parts`` joined by ``|``: the same parts always give the same id."""
    return str(uuid.uuid5(ROSETTA_NAMESPACE, "|".join(parts)))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe form of ``text`` that stays unique (suffix: a short hash)."""
    cleaned = _UNSAFE.sub("_", text).strip("_")[:80]
    return f"{cleaned}-{sha256_bytes(text.encode())[:10]}"
