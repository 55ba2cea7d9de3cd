"""Configuration of a feature store: where objects and vectors live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from feature_store.object_store.config import (
    LocalObjectStoreConfig,
    S3ObjectStoreConfig,
    object_store_config_from_url,
)
from feature_store.vector_store.config import VectorStoreConfig
from rosetta.core.config import StrictModel, env, validate_config
from rosetta.core.errors import ConfigError


def rosetta_home() -> Path:
    """``$ROSETTA_HOME``, else ``~/.rosetta``: the root of the embedded defaults."""
    return Path(env("ROSETTA_HOME") or Path.home() / ".rosetta").expanduser().resolve()


class FeatureStoreConfig(StrictModel):
    """Object store + vector store.  Build from the environment with :meth:`from_env`."""

    object_store: LocalObjectStoreConfig | S3ObjectStoreConfig
    vector_store: VectorStoreConfig

    @classmethod
    def from_env(cls, *, s3_options: dict[str, Any] | None = None) -> FeatureStoreConfig:
        """Read ``ROSETTA_*`` variables; unset ones fall back to local storage under ``ROSETTA_HOME``.

        - ``ROSETTA_OBJECT_STORE_URL``: ``s3://bucket/prefix`` or a directory
          (default ``$ROSETTA_HOME/store``)
        - ``ROSETTA_S3_ENDPOINT_URL``, ``ROSETTA_S3_REGION``: for S3-compatible services;
          credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``s3_options``
        - ``ROSETTA_QDRANT_URL`` (server) or ``ROSETTA_QDRANT_PATH`` (local mode, default
          ``$ROSETTA_HOME/qdrant``), ``ROSETTA_QDRANT_API_KEY``, ``ROSETTA_QDRANT_COLLECTION``
        - ``ROSETTA_QDRANT_ENGINE``: how feature views' versioned collections are served: ``client``
          (qdrant-client, the default) or ``edge`` (the embedded Qdrant Edge engine, with a path)
        """
        home = rosetta_home()
        url = env("ROSETTA_OBJECT_STORE_URL") or str(home / "store")
        options: dict[str, Any] = {}
        if url.startswith("s3://"):
            for field, var in (("endpoint_url", "ROSETTA_S3_ENDPOINT_URL"), ("region_name", "ROSETTA_S3_REGION")):
                if env(var):
                    options[field] = env(var)
            if env("AWS_ACCESS_KEY_ID") and env("AWS_SECRET_ACCESS_KEY"):
                options["aws_access_key_id"] = env("AWS_ACCESS_KEY_ID")
                options["aws_secret_access_key"] = SecretStr(os.environ["AWS_SECRET_ACCESS_KEY"])
            options.update(s3_options or {})
        elif s3_options:
            raise ConfigError(f"S3 options were given but ROSETTA_OBJECT_STORE_URL={url!r} is not an s3:// URL",
                              setting="ROSETTA_OBJECT_STORE_URL")
        try:
            object_store = object_store_config_from_url(url, **options)
        except ValueError as exc:
            raise ConfigError(f"invalid object store settings: {exc}", setting="ROSETTA_OBJECT_STORE_URL") from None
        vector: dict[str, Any] = {}
        if env("ROSETTA_QDRANT_URL"):
            vector["url"] = env("ROSETTA_QDRANT_URL")
        else:
            vector["path"] = Path(env("ROSETTA_QDRANT_PATH") or home / "qdrant")
        if env("ROSETTA_QDRANT_API_KEY"):
            vector["api_key"] = env("ROSETTA_QDRANT_API_KEY")
        if env("ROSETTA_QDRANT_COLLECTION"):
            vector["collection"] = env("ROSETTA_QDRANT_COLLECTION")
        if env("ROSETTA_QDRANT_ENGINE"):
            vector["engine"] = env("ROSETTA_QDRANT_ENGINE")
        return cls(object_store=object_store,
                   vector_store=validate_config(VectorStoreConfig, vector, where="ROSETTA_QDRANT_*"))
