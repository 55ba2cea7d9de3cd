from __future__ import annotations

from pathlib import Path

import pytest

from feature_store.config import FeatureStoreConfig
from feature_store.object_store import (
    LocalObjectStoreConfig,
    S3ObjectStoreConfig,
    object_store_config_from_url,
)
from feature_store.vector_store import VectorStoreConfig
from rosetta.core.errors import ConfigError


def test_object_store_url_forms(tmp_path: Path) -> None:
    s3 = object_store_config_from_url("s3://bucket-a/some/prefix/", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3ObjectStoreConfig)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("bucket-a", "some/prefix", "http://127.0.0.1:1")
    local = object_store_config_from_url(str(tmp_path))
    assert isinstance(local, LocalObjectStoreConfig) and local.root == tmp_path
    assert object_store_config_from_url(tmp_path.as_uri()) == local


@pytest.mark.parametrize("url", ["s3://", "gs://bucket/x"])
def test_bad_object_store_url_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="ROSETTA_OBJECT_STORE_URL"):
        object_store_config_from_url(url)


def test_s3_config_rejects_unknown_keys_and_hides_the_secret() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        S3ObjectStoreConfig(bucket="abc", endpoint="http://x")  # type: ignore[call-arg]
    cfg = S3ObjectStoreConfig(bucket="abc", aws_secret_access_key="hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_vector_store_needs_exactly_one_location(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        VectorStoreConfig()
    with pytest.raises(ValueError, match="exactly one"):
        VectorStoreConfig(url="http://localhost:6333", path=tmp_path)
    assert VectorStoreConfig(path=tmp_path).location == f"local:{tmp_path}"


def test_feature_store_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    for var in ("ROSETTA_OBJECT_STORE_URL", "ROSETTA_QDRANT_URL", "ROSETTA_QDRANT_PATH"):
        monkeypatch.delenv(var, raising=False)
    cfg = FeatureStoreConfig.from_env()
    assert cfg.object_store == LocalObjectStoreConfig(root=tmp_path / "store")
    assert cfg.vector_store.path == tmp_path / "qdrant"

    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", "s3://raw/rosetta")
    monkeypatch.setenv("ROSETTA_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("ROSETTA_QDRANT_URL", "http://127.0.0.1:6333")
    cfg = FeatureStoreConfig.from_env()
    assert isinstance(cfg.object_store, S3ObjectStoreConfig)
    assert cfg.object_store.endpoint_url == "http://127.0.0.1:8333"
    assert cfg.object_store.aws_secret_access_key is not None
    assert cfg.object_store.aws_secret_access_key.get_secret_value() == "secret"
    assert cfg.vector_store.url == "http://127.0.0.1:6333" and cfg.vector_store.path is None


def test_bad_collection_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    monkeypatch.setenv("ROSETTA_QDRANT_COLLECTION", "bad name!")
    with pytest.raises(ConfigError, match="ROSETTA_QDRANT"):
        FeatureStoreConfig.from_env()
