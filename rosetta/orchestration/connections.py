"""Secrets from Airflow connections: S3 settings (type ``aws``) and the DICOM de-identification key.

S3 connection fields, the way the Amazon provider lays them out: ``login`` = access key id,
``password`` = secret access key, ``extra`` = ``{"endpoint_url": "...", "region_name": "..."}``.

De-identification key: the password of the connection ``rosetta_deid`` (or the one named by
``ROSETTA_DEID_CONN_ID``), so it lives in Airflow's metadata database or a secret backend (Vault,
AWS Secrets Manager, ``AIRFLOW_CONN_ROSETTA_DEID``), never in ``sources.yaml`` or the data.
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


#: Connectors whose config has a ``deid`` section (DicomRecordConfig).
DEID_CONNECTORS = frozenset({"dicom_files", "dicomweb", "dicom_dimse", "clinical_reports"})
DEID_CONN_ID = "rosetta_deid"


def deid_key_from_connection() -> str | None:
    """The de-identification key from the Airflow connection (None when no such connection exists)."""
    from airflow.sdk import BaseHook

    conn_id = env("ROSETTA_DEID_CONN_ID", DEID_CONN_ID) or DEID_CONN_ID
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # not defined: DeidConfig then falls back to ROSETTA_DEID_KEY and says what is missing
        return None
    return conn.password or None


def deid_options(connector: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``deid.key`` filled from the Airflow connection, for DICOM connectors that need it."""
    if connector not in DEID_CONNECTORS:
        return options
    deid = dict(options.get("deid") or {})
    if deid.get("enabled", True) is False or deid.get("key"):
        return options
    key = deid_key_from_connection()
    if key is None:
        return options
    return {**options, "deid": {**deid, "key": SecretStr(key)}}
