"""One way to build a boto3 S3 client, for every part of Rosetta that talks to S3.

Path-style addressing (SeaweedFS, MinIO, Ceph and AWS all accept it), SigV4, boto3's standard
retry mode, explicit timeouts, and checksums only where S3 requires them (S3-compatible servers
differ on the newer default checksums).  boto3 is imported when a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from pydantic import SecretStr


def build_s3_client(*, endpoint_url: str | None, region_name: str, aws_access_key_id: str | None,
                    aws_secret_access_key: SecretStr | None, max_attempts: int, connect_timeout_s: float,
                    read_timeout_s: float, max_connections: int = 10) -> BaseClient:
    """A new S3 client; unset credentials fall back to boto3's chain (environment, config, role)."""
    import boto3
    from botocore.config import Config

    secret = aws_secret_access_key.get_secret_value() if aws_secret_access_key else None
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name=region_name, aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"mode": "standard", "max_attempts": max_attempts},
                      max_pool_connections=max_connections, connect_timeout=connect_timeout_s,
                      read_timeout=read_timeout_s, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))
