"""Images with caption sidecars under an S3 bucket prefix (AWS S3, SeaweedFS, MinIO...).

Layout, as in the image folder but as object keys: ``<prefix>/cats/tom.jpg``
next to ``<prefix>/cats/tom.txt`` (the caption, UTF-8) and/or
``<prefix>/cats/tom.json`` (``{"caption": "...", "event_time": "2026-01-02T03:04:05+00:00"}``).
The source id is the key relative to the prefix without its suffix
(``cats/tom``).

Listing pages through ListObjectsV2 (``page_size`` keys a request).  The
incremental cursor is the newest LastModified of a sample's objects as an
ISO 8601 UTC string (``2026-01-02T03:04:05.000000Z``: fixed width, so string
order is time order); S3 keeps whole seconds, so ties at the cursor are
common and :class:`~connectors.sdk.State` resolves them by source id.  Each
object's ETag is recorded in the item so the plan says which version was
listed.  The event time is the sidecar's ``event_time``, else the image's
LastModified (UTC).

Errors: wrong credentials, a missing bucket or an unreachable endpoint are
ConfigErrors naming the setting; throttling, 5xx and dropped connections are
RetriableErrors; an undecodable image, a missing or empty caption, bad JSON or
a key of an unknown type is a BadRecordError for that sample only.
boto3 is imported when the client is first built.
"""

from __future__ import annotations

import posixpath
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import Field, SecretStr, field_validator

from connectors.media import IMAGE_SUFFIXES, check_image, read_sidecars
from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError, RosettaError
from rosetta.core.timeutil import ensure_utc, isoformat_z
from schemas.records import RawObject, SourceRecord

if TYPE_CHECKING:
    from botocore.client import BaseClient

MiB = 1024 * 1024
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403",
                     "InvalidToken", "ExpiredToken", "InvalidSecurity"}
_RETRIABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "RequestTimeTooSkewed", "500", "502", "503", "504"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3PrefixConfig(ConnectorConfig):
    """Where the images are and how to reach them.

    ``prefix`` is a folder: ``photos`` and ``photos/`` both mean the keys
    under ``photos/``; empty means the whole bucket.  Credentials left unset
    fall back to boto3's chain (environment, shared config, instance role).
    Keys whose suffix is in neither ``image_suffixes`` nor
    ``caption_suffixes`` are quarantined, or skipped when ``skip_unknown``.
    Timeouts are in seconds, sizes in bytes.
    """

    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    source: str = Field(default="s3_prefix", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    page_size: int = Field(default=1000, ge=1, le=1000)
    image_suffixes: tuple[str, ...] = tuple(sorted(IMAGE_SUFFIXES))
    caption_suffixes: tuple[str, ...] = (".txt", ".json")
    skip_unknown: bool = False
    require_caption: bool = True
    max_caption_bytes: int = Field(default=64 * 1024, ge=1)
    max_object_bytes: int = Field(default=256 * MiB, ge=1)
    max_attempts: int = Field(default=5, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("image_suffixes", "caption_suffixes")
    @classmethod
    def _dotted_lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in value)
        if not out or any(len(s) < 2 for s in out):
            raise ValueError("give at least one suffix such as '.jpg'")
        return out

    @field_validator("caption_suffixes")
    @classmethod
    def _known_sidecars(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not set(value) <= {".txt", ".json"}:
            raise ValueError("caption sidecars are '.txt' and/or '.json'")
        return value


class S3PrefixConnector(Connector[S3PrefixConfig]):
    """Lists and reads images with caption sidecars under ``s3://bucket/prefix/``; the client is built on first use."""

    name = "s3_prefix"
    config_class = S3PrefixConfig
    requires = ("boto3", "PIL")

    def __init__(self, config: S3PrefixConfig) -> None:
        super().__init__(config)
        prefix = config.prefix.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self._client: BaseClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3PrefixConnector(s3://{self.config.bucket}/{self.prefix}, endpoint={self.config.endpoint_url})"

    # -- client --------------------------------------------------------------------------------
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
                               connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.read_timeout_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- fail fast -----------------------------------------------------------------------------
    def check(self) -> None:
        """List one key under the prefix: proves the endpoint, the credentials and the bucket.

        An unreachable endpoint is a ConfigError here (at start-up it means a
        wrong ``endpoint_url``); throttling and 5xx stay RetriableErrors.
        """
        try:
            self.client.list_objects_v2(Bucket=self.config.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:
            try:
                self._raise(exc, "list")
            except RetriableError as err:
                if _is_connection_error(exc):
                    raise ConfigError(f"{err}; check that endpoint_url points at a running S3 service",
                                      setting="endpoint_url") from exc
                raise

    # -- listing -------------------------------------------------------------------------------
    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """Samples under the prefix that are new after ``state`` and whose cursor time is inside ``window``.

        Sorted by source id; problem items (unknown key types, a caption
        without an image, a duplicate image) are always listed, as the SDK's
        :meth:`~connectors.sdk.Connector.new_items` does.
        """
        state, window = state or State(), window or Window()
        items = list(self.new_items(self._scan(), state))
        if window.bounded:
            items = [item for item in items if window.contains(datetime.fromisoformat(str(item.cursor)))]
        return items

    def _scan(self) -> list[Item]:
        """Every sample under the prefix, grouped by key stem, sorted by source id."""
        cfg = self.config
        groups: dict[str, dict[str, dict[str, Any]]] = {}
        items: list[Item] = []
        for obj in self._list_objects():
            rel = obj["key"][len(self.prefix):]
            name = posixpath.basename(rel)
            if not name or name.startswith(".") or name in IGNORED_NAMES:  # folder markers, hidden files
                continue
            stem, suffix = posixpath.splitext(rel)
            suffix = suffix.lower()
            role = ("image" if suffix in cfg.image_suffixes else
                    suffix[1:] if suffix in cfg.caption_suffixes else None)
            if role is None:
                if not cfg.skip_unknown:
                    items.append(Item(source_id=rel, cursor=obj["last_modified"], ref={"file": obj},
                                      problem=f"unknown file type {suffix or '(no suffix)'!r}; supported images: "
                                              f"{', '.join(cfg.image_suffixes)} with a "
                                              f"{' or '.join(cfg.caption_suffixes)} caption sidecar"))
                continue
            group = groups.setdefault(stem, {})
            if role in group:  # tom.jpg and tom.png: which one the caption belongs to is unknown
                items.append(Item(source_id=rel, cursor=obj["last_modified"], ref={"file": obj},
                                  problem=f"second {role} for {stem!r} (first: {group[role]['key']}); keep one "
                                          "file per suffix kind or rename it"))
                continue
            group[role] = obj
        for stem, files in groups.items():
            cursor = max(obj["last_modified"] for obj in files.values())
            if "image" not in files:
                items.append(Item(source_id=stem, cursor=cursor, ref={"file": next(iter(files.values()))},
                                  problem="caption sidecar without an image; upload the image or delete the caption"))
            else:
                items.append(Item(source_id=stem, cursor=cursor, ref=files))
        return sorted(items, key=lambda item: item.source_id)

    def _list_objects(self) -> list[dict[str, Any]]:
        """Key, size (bytes), ETag and LastModified (ISO 8601 UTC) of every object under the prefix, in key order."""
        out: list[dict[str, Any]] = []
        base = {"Bucket": self.config.bucket, "Prefix": self.prefix, "MaxKeys": self.config.page_size}
        request: dict[str, Any] = base
        try:
            while True:
                page = self.client.list_objects_v2(**request)
                contents = page.get("Contents", ())
                for obj in contents:
                    out.append({"key": obj["Key"], "size": int(obj["Size"]), "etag": obj.get("ETag", ""),
                                "last_modified": isoformat_z(ensure_utc(obj["LastModified"]))})
                if page.get("IsTruncated") and page.get("NextContinuationToken"):
                    request = {**base, "ContinuationToken": page["NextContinuationToken"]}
                elif len(contents) >= self.config.page_size and contents[-1]["Key"].endswith("/"):
                    # SeaweedFS 4.x calls a full page that ends at a folder-marker key ("a/") the last one
                    # even when keys below the marker remain; asking once more after it costs one empty
                    # request on servers that got it right.  Keys only grow, so this ends.
                    request = {**base, "StartAfter": contents[-1]["Key"]}
                else:
                    return out
        except Exception as exc:
            self._raise(exc, "list")

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, item: Item) -> list[SourceRecord]:
        """Download the sample's image and sidecars and build its record (BadRecordError if unusable)."""
        if item.problem is not None:
            file = item.ref["file"]
            payload = self._get(file, item.source_id)[0] if file["size"] <= self.config.max_object_bytes else None
            raise BadRecordError(f"{self._uri(file['key'])}: {item.problem}", source_id=item.source_id,
                                 payload=payload)
        image_ref = item.ref["image"]
        image, image_meta = self._get(image_ref, item.source_id)
        media_type, _ = check_image(self._uri(image_ref["key"]), image, source_id=item.source_id, zone=UTC)
        sidecars = read_sidecars(
            source_id=item.source_id, image=image,
            txt=(self._uri(item.ref["txt"]["key"]), self._get(item.ref["txt"], item.source_id)[0])
            if "txt" in item.ref else None,
            json_sidecar=(self._uri(item.ref["json"]["key"]), self._get(item.ref["json"], item.source_id)[0])
            if "json" in item.ref else None,
            max_bytes=self.config.max_caption_bytes, require_caption=self.config.require_caption,
            missing_hint=f"upload {self.prefix}{item.source_id}.txt or .json next to {self._uri(image_ref['key'])}")
        if sidecars.event_time is not None:
            event_time, origin = sidecars.event_time, "sidecar"
        else:
            event_time, origin = image_meta["last_modified"], "last_modified"
        # The object may have been overwritten since listing: we keep what was read (its ETag is in
        # the metadata); the newer LastModified lists it again next run and sha256 dedup does the rest.
        return [SourceRecord(
            source=self.config.source, source_id=item.source_id, event_time=event_time,
            objects=(RawObject("image", image, media_type), *sidecars.objects), text=sidecars.text,
            event_time_origin=origin,
            metadata={"uri": self._uri(image_ref["key"]), "etag": image_meta["etag"],
                      "listed_etag": image_ref["etag"], "last_modified": isoformat_z(image_meta["last_modified"])})]

    def _get(self, obj: dict[str, Any], source_id: str) -> tuple[bytes, dict[str, Any]]:
        """The object's bytes and its ETag and LastModified (UTC) as read."""
        uri = self._uri(obj["key"])
        if obj["size"] > self.config.max_object_bytes:
            raise BadRecordError(f"{uri}: object is {obj['size']} bytes, over max_object_bytes "
                                 f"({self.config.max_object_bytes}); raise the limit or remove it",
                                 source_id=source_id)
        try:
            response = self.client.get_object(Bucket=self.config.bucket, Key=obj["key"])
            with response["Body"] as body:
                data: bytes = body.read()
        except Exception as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise BadRecordError(f"{uri}: object was deleted after it was listed; nothing to ingest",
                                     source_id=source_id) from None
            self._raise(exc, "read", obj["key"])
        return data, {"etag": response.get("ETag", ""), "last_modified": ensure_utc(response["LastModified"])}

    # -- errors --------------------------------------------------------------------------------
    def _uri(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}"

    def _raise(self, exc: Exception, action: str, key: str | None = None) -> NoReturn:
        """Translate a boto3/botocore error into Rosetta's tree, naming the setting to fix."""
        from botocore.exceptions import NoCredentialsError

        if isinstance(exc, RosettaError):
            raise exc
        where = self._uri(key) if key else f"s3://{self.config.bucket}/{self.prefix}"
        endpoint = self.config.endpoint_url or "the AWS default endpoint"
        if isinstance(exc, NoCredentialsError):
            raise ConfigError(f"no S3 credentials to {action} {where}; set aws_access_key_id and "
                              "aws_secret_access_key", setting="aws_access_key_id") from exc
        code, status = _error_code(exc), _status(exc)
        if code == "NoSuchBucket":
            raise ConfigError(f"bucket {self.config.bucket!r} does not exist at {endpoint}; fix the bucket "
                              "setting or create the bucket", setting="bucket") from exc
        if code == "InvalidAccessKeyId":
            raise ConfigError(f"S3 at {endpoint} does not know the access key for {action} {where} ({code}); "
                              "fix aws_access_key_id", setting="aws_access_key_id") from exc
        if code in _CREDENTIAL_CODES or status == 403:
            raise ConfigError(f"S3 at {endpoint} refused to {action} {where} ({code}); check "
                              "aws_access_key_id/aws_secret_access_key and the bucket policy",
                              setting="aws_secret_access_key") from exc
        if _is_connection_error(exc):
            raise RetriableError(f"cannot reach S3 endpoint {endpoint} to {action} {where}: {exc}") from exc
        if code in _RETRIABLE_CODES or (status is not None and status >= 500):
            raise RetriableError(f"S3 at {endpoint} failed to {action} {where} ({code or status}); retry later") \
                from exc
        raise RetriableError(f"S3 {action} {where} failed: {exc!r}") from exc


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return status if isinstance(status, int) else None


def _is_connection_error(exc: Exception) -> bool:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    return isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError,
                            IncompleteReadError, ResponseStreamingError))
