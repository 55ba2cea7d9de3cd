"""Object store backend on a local (or network-mounted) directory.

Writes go to a temporary file in the target directory first.  Content-addressed
puts publish it with ``os.link``, which fails if the key exists, so two writers
of the same object never clobber each other; plain keys publish with
``os.replace``, which is atomic on POSIX.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from feature_store.object_store.base import ObjectStore
from feature_store.object_store.config import LocalObjectStoreConfig
from rosetta.core.errors import ConfigError, NotFoundError


class LocalObjectStore(ObjectStore):
    """Objects as files under ``config.root``, with the same key layout as S3."""

    def __init__(self, config: LocalObjectStoreConfig) -> None:
        self.config = config
        self.root = Path(config.root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        clean = key.strip("/")
        if not clean or ".." in Path(clean).parts:
            raise ValueError(f"invalid object key {key!r}")
        return self.root / clean

    def _temp_beside(self, path: Path) -> tuple[int, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=".tmp-", dir=path.parent)

    def _put_if_absent(self, key: str, data: bytes, media_type: str) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        fd, tmp = self._temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return self._publish_once(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _put_file_if_absent(self, key: str, path: str, size: int, media_type: str) -> bool:
        target = self._path(key)
        if target.exists():
            return False
        fd, tmp = self._temp_beside(target)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
            return self._publish_once(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _publish_once(tmp: str, target: Path) -> bool:
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        return True

    def write_bytes(self, key: str, data: bytes, *, media_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        fd, tmp = self._temp_beside(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"no object at {self.uri_for(key)}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        prefix = prefix.strip("/")
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return
        found = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        yield from sorted(found)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @property
    def root_uri(self) -> str:
        return self.root.as_uri()

    def uri_for(self, key: str) -> str:
        return (self.root / key.strip("/")).as_uri()

    def key_for(self, uri: str) -> str:
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path))
        if parsed.scheme != "file" or not path.is_relative_to(self.root):
            raise ValueError(f"{uri!r} is not an object of {self!r}")
        return path.relative_to(self.root).as_posix()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create object store directory {self.root}: {exc.strerror}; "
                              "point ROSETTA_OBJECT_STORE_URL at a writable directory",
                              setting="ROSETTA_OBJECT_STORE_URL") from None
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"object store directory {self.root} is not writable; "
                              "point ROSETTA_OBJECT_STORE_URL at a writable directory",
                              setting="ROSETTA_OBJECT_STORE_URL")
