"""Read S3 settings from an Airflow connection (type ``aws``), the way the Amazon provider lays them out.

Connection fields: ``login`` = access key id, ``password`` = secret access key,
``extra`` = ``{"endpoint_url": "...", "region_name": "..."}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from rosetta.core.config import env
from rosetta.core.errors import ConfigError


def s3_options_from_connection(conn_id: str) -> dict[str, Any]:
    """S3ObjectStoreConfig fields from the Airflow connection ``conn_id``."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise ConfigError(f"Airflow connection {conn_id!r} not found ({exc}); create it or unset "
                          "ROSETTA_AWS_CONN_ID", setting="ROSETTA_AWS_CONN_ID") from None
    extra = conn.extra_dejson or {}
    options: dict[str, Any] = {}
    endpoint = extra.get("endpoint_url") or (extra.get("service_config", {}).get("s3", {}) or {}).get("endpoint_url")
    if endpoint:
        options["endpoint_url"] = endpoint
    if extra.get("region_name"):
        options["region_name"] = extra["region_name"]
    if conn.login:
        options["aws_access_key_id"] = conn.login
    if conn.password:
        options["aws_secret_access_key"] = SecretStr(conn.password)
    return options


def s3_options_from_env_connection() -> dict[str, Any] | None:
    """Options from the connection named by ``ROSETTA_AWS_CONN_ID``, if that is set."""
    conn_id = env("ROSETTA_AWS_CONN_ID")
    return s3_options_from_connection(conn_id) if conn_id else None
