"""Typed configuration of the object store backends and the factory that opens them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr

from rosetta.core.config import StrictModel, validate_config
from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    from feature_store.object_store.base import ObjectStore

MiB = 1024 * 1024


class LocalObjectStoreConfig(StrictModel):
    """A directory on a local or network file system (the embedded default)."""

    kind: Literal["local"] = "local"
    root: Path


class S3ObjectStoreConfig(StrictModel):
    """Any S3-compatible service (AWS S3, SeaweedFS, MinIO, Ceph...).

    Credentials left unset fall back to boto3's usual chain (environment,
    shared config, instance role).
    """

    kind: Literal["s3"] = "s3"
    bucket: str = Field(min_length=3)
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    create_bucket: bool = True
    multipart_threshold_bytes: int = Field(default=64 * MiB, ge=5 * MiB)
    multipart_chunk_bytes: int = Field(default=16 * MiB, ge=5 * MiB)
    max_connections: int = Field(default=32, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0


ObjectStoreConfig = Annotated[LocalObjectStoreConfig | S3ObjectStoreConfig, Field(discriminator="kind")]


def object_store_config_from_url(url: str, **s3_options: object) -> LocalObjectStoreConfig | S3ObjectStoreConfig:
    """Build a config from ``s3://bucket/prefix``, ``file:///dir`` or a plain path.

    ``s3_options`` are extra :class:`S3ObjectStoreConfig` fields (endpoint,
    credentials); they are refused for a local URL.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"object store URL {url!r} has no bucket; write it as s3://BUCKET/PREFIX",
                              setting="ROSETTA_OBJECT_STORE_URL")
        return validate_config(S3ObjectStoreConfig,
                               {"bucket": parsed.netloc, "prefix": parsed.path.strip("/"), **s3_options},
                               where=f"object store URL {url!r} and its S3 options")
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else url).expanduser()
        return LocalObjectStoreConfig(root=root)
    raise ConfigError(f"object store URL {url!r} has an unsupported scheme {parsed.scheme!r}; "
                      "use s3://BUCKET/PREFIX or a local directory", setting="ROSETTA_OBJECT_STORE_URL")


def open_object_store(config: LocalObjectStoreConfig | S3ObjectStoreConfig) -> ObjectStore:
    """Open the backend ``config`` describes.  The S3 client is built on first use."""
    if isinstance(config, LocalObjectStoreConfig):
        from feature_store.object_store.local import LocalObjectStore

        return LocalObjectStore(config)
    from feature_store.object_store.s3 import S3ObjectStore

    return S3ObjectStore(config)
