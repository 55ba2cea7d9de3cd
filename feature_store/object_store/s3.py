"""Object store backend on any S3-compatible service, through boto3.

- Content-addressed puts are conditional (``If-None-Match: *``): the server
  refuses to overwrite, so concurrent writers of the same object are safe and a
  re-run uploads nothing twice.  Objects above the multipart threshold are
  checked with HEAD first, then uploaded in parts (same bytes under the same
  key, so a race is harmless).
- Reads stream the response body.
- Errors are translated into Rosetta's tree: bad credentials, a missing bucket
  or an unreachable endpoint are ConfigErrors naming the setting; throttling,
  5xx and dropped connections are RetriableErrors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from feature_store.object_store.base import ObjectStore
from feature_store.object_store.config import S3ObjectStoreConfig
from rosetta.core.errors import ConfigError, NotFoundError, RetriableError, RosettaError

if TYPE_CHECKING:
    from botocore.client import BaseClient

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403",
                     "InvalidToken", "ExpiredToken"}
_RETRIABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "503", "500", "502", "504", "RequestTimeTooSkewed"}
_CREDENTIAL_HINT = ("check the access key and secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the "
                    "login/password of the Airflow connection named by ROSETTA_AWS_CONN_ID)")


class S3ObjectStore(ObjectStore):
    """Objects in ``s3://bucket/prefix/...``; the boto3 client is built on first use."""

    def __init__(self, config: S3ObjectStoreConfig) -> None:
        self.config = config
        self._client: BaseClient | None = None
        self._lock = threading.Lock()
        self._prefix = config.prefix.strip("/")

    def __repr__(self) -> str:
        return f"S3ObjectStore(s3://{self.config.bucket}/{self._prefix}, endpoint={self.config.endpoint_url})"

    # -- client ------------------------------------------------------------------------
    @property
    def client(self) -> BaseClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> BaseClient:
        from rosetta.core.s3 import build_s3_client

        cfg = self.config
        return build_s3_client(endpoint_url=cfg.endpoint_url, region_name=cfg.region_name,
                               aws_access_key_id=cfg.aws_access_key_id,
                               aws_secret_access_key=cfg.aws_secret_access_key, max_attempts=cfg.max_attempts,
                               connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.read_timeout_s,
                               max_connections=cfg.max_connections)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- keys ----------------------------------------------------------------------------
    def _full(self, key: str) -> str:
        key = key.strip("/")
        if not key:
            raise ValueError("empty object key")
        return f"{self._prefix}/{key}" if self._prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self._prefix) + 1:] if self._prefix else full_key

    @property
    def root_uri(self) -> str:
        return f"s3://{self.config.bucket}/{self._prefix}".rstrip("/")

    def uri_for(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{self._full(key)}"

    def key_for(self, uri: str) -> str:
        head = f"s3://{self.config.bucket}/{self._prefix + '/' if self._prefix else ''}"
        if not uri.startswith(head):
            raise ValueError(f"{uri!r} is not an object of {self!r}")
        return uri[len(head):]

    # -- errors --------------------------------------------------------------------------
    def _raise(self, exc: Exception, action: str, key: str | None = None) -> NoReturn:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        where = self.uri_for(key) if key else f"s3://{self.config.bucket}"
        endpoint = self.config.endpoint_url or "the AWS default endpoint"
        if isinstance(exc, RosettaError):
            raise exc
        if isinstance(exc, NoCredentialsError):
            raise ConfigError(f"no S3 credentials found to {action} {where}; {_CREDENTIAL_HINT}",
                              setting="AWS_ACCESS_KEY_ID") from exc
        if isinstance(exc, EndpointConnectionError):
            raise RetriableError(f"cannot reach S3 endpoint {endpoint} to {action} {where}: {exc}; "
                                 "check ROSETTA_S3_ENDPOINT_URL (or the connection's endpoint_url) "
                                 "and that the service is running") from exc
        if isinstance(exc, (ConnectionClosedError, ReadTimeoutError)):
            raise RetriableError(f"S3 connection to {endpoint} failed during {action} {where}: {exc}") from exc
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(f"no object at {where}") from exc
            if code == "NoSuchBucket":
                raise ConfigError(f"bucket {self.config.bucket!r} does not exist at {endpoint}; create it or "
                                  "fix ROSETTA_OBJECT_STORE_URL", setting="ROSETTA_OBJECT_STORE_URL") from exc
            if code in _CREDENTIAL_CODES or status == 403:
                raise ConfigError(f"S3 at {endpoint} refused to {action} {where} ({code}); {_CREDENTIAL_HINT}",
                                  setting="AWS_SECRET_ACCESS_KEY") from exc
            if code in _RETRIABLE_CODES or (isinstance(status, int) and status >= 500):
                raise RetriableError(f"S3 at {endpoint} failed to {action} {where} ({code}); retry later") from exc
        raise RetriableError(f"S3 {action} {where} failed: {exc!r}") from exc

    # -- content-addressed primitives ------------------------------------------------------
    def _put_if_absent(self, key: str, data: bytes, media_type: str) -> bool:
        from botocore.exceptions import ClientError

        if len(data) >= self.config.multipart_threshold_bytes:
            import io

            return self._upload_if_absent(key, io.BytesIO(data), media_type)
        try:
            self.client.put_object(Bucket=self.config.bucket, Key=self._full(key), Body=data,
                                   ContentType=media_type, IfNoneMatch="*")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return False
            self._raise(exc, "put", key)
        except Exception as exc:
            self._raise(exc, "put", key)
        return True

    def _put_file_if_absent(self, key: str, path: str, size: int, media_type: str) -> bool:
        with open(path, "rb") as handle:
            if size < self.config.multipart_threshold_bytes:
                return self._put_if_absent(key, handle.read(), media_type)
            return self._upload_if_absent(key, handle, media_type)

    def _upload_if_absent(self, key: str, stream: BinaryIO, media_type: str) -> bool:
        from boto3.s3.transfer import TransferConfig

        if self.exists(key):
            return False
        transfer = TransferConfig(multipart_threshold=self.config.multipart_threshold_bytes,
                                  multipart_chunksize=self.config.multipart_chunk_bytes,
                                  max_concurrency=4, use_threads=True)
        try:
            self.client.upload_fileobj(stream, self.config.bucket, self._full(key),
                                       ExtraArgs={"ContentType": media_type}, Config=transfer)
        except Exception as exc:
            self._raise(exc, "upload", key)
        return True

    # -- plain keys ------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, *, media_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=self.config.bucket, Key=self._full(key), Body=data,
                                   ContentType=media_type)
        except Exception as exc:
            self._raise(exc, "write", key)

    def open(self, key: str) -> closing[Any]:
        try:
            response = self.client.get_object(Bucket=self.config.bucket, Key=self._full(key))
        except Exception as exc:
            self._raise(exc, "read", key)
        return closing(response["Body"])

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.config.bucket, Key=self._full(key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            self._raise(exc, "check", key)
        except Exception as exc:
            self._raise(exc, "check", key)
        return True

    def list(self, prefix: str, *, page_size: int = 1000) -> Iterator[str]:
        full_prefix = self._full(prefix) if prefix.strip("/") else (self._prefix + "/" if self._prefix else "")
        if prefix.endswith("/") and not full_prefix.endswith("/"):
            full_prefix += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=full_prefix,
                                           PaginationConfig={"PageSize": page_size}):
                for item in page.get("Contents", []):
                    yield self._relative(item["Key"])
        except Exception as exc:
            self._raise(exc, "list", prefix or None)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.config.bucket, Key=self._full(key))
        except Exception as exc:
            self._raise(exc, "delete", key)

    # -- fail fast -------------------------------------------------------------------------
    def check(self) -> None:
        """Reach the endpoint, verify the credentials and make sure the bucket exists.

        Every failure here is a ConfigError: a run should stop before it starts.
        """
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.config.bucket)
            return
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 and not self.config.create_bucket:
                raise ConfigError(f"bucket {self.config.bucket!r} does not exist at {self.config.endpoint_url}; "
                                  "create it, allow create_bucket, or fix ROSETTA_OBJECT_STORE_URL",
                                  setting="ROSETTA_OBJECT_STORE_URL") from None
            if status != 404:
                self._check_failed(exc)
        except Exception as exc:
            self._check_failed(exc)
        try:
            self.client.create_bucket(Bucket=self.config.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._check_failed(exc)
        except Exception as exc:
            self._check_failed(exc)

    def _check_failed(self, exc: Exception) -> NoReturn:
        try:
            self._raise(exc, "open")
        except RetriableError as err:  # unreachable at start-up means misconfigured
            raise ConfigError(str(err), setting="ROSETTA_S3_ENDPOINT_URL") from exc
