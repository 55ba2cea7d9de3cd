"""Misconfiguration against a real S3 server fails fast with a message naming the setting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from feature_store.object_store import object_store_config_from_url, open_object_store
from rosetta.core.errors import ConfigError
from rosetta.devservices.ports import free_port_block

pytestmark = pytest.mark.integration


def test_wrong_secret_is_a_config_error_naming_the_credentials(s3_options: dict[str, object],
                                                               bucket_name: str) -> None:
    store = open_object_store(object_store_config_from_url(
        f"s3://{bucket_name}", **{**s3_options, "aws_secret_access_key": SecretStr("wrong-secret")}))
    with pytest.raises(ConfigError) as err:
        store.check()
    assert "AWS_SECRET_ACCESS_KEY" in str(err.value) or "AWS_ACCESS_KEY_ID" in str(err.value)
    assert "wrong-secret" not in str(err.value)
    with pytest.raises(ConfigError, match="refused to put"):
        store.put(b"data")


def test_unknown_access_key_is_a_config_error(s3_options: dict[str, object], bucket_name: str) -> None:
    store = open_object_store(object_store_config_from_url(
        f"s3://{bucket_name}", **{**s3_options, "aws_access_key_id": "nobody"}))
    with pytest.raises(ConfigError, match="refused"):
        store.check()


def test_unreachable_endpoint_is_a_config_error_naming_the_endpoint_setting() -> None:
    port = free_port_block(1)
    store = open_object_store(object_store_config_from_url(
        "s3://bucket-x", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="a",
        aws_secret_access_key=SecretStr("b"), max_attempts=1, connect_timeout_s=1))
    with pytest.raises(ConfigError) as err:
        store.check()
    assert "ROSETTA_S3_ENDPOINT_URL" in str(err.value) and str(port) in str(err.value)


def test_missing_bucket_without_create_is_a_config_error(s3_options: dict[str, object], bucket_name: str) -> None:
    store = open_object_store(object_store_config_from_url(f"s3://{bucket_name}", create_bucket=False,
                                                           **s3_options))
    with pytest.raises(ConfigError, match="ROSETTA_OBJECT_STORE_URL"):
        store.check()
