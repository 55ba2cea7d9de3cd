"""A REST/JSON API as a source: paged record lists with optional image URLs.

Pagination styles: ``none`` (one response), ``page`` (``?page=1&per_page=N``),
``offset`` (``?offset=0&limit=N``), ``cursor`` (a token read from the body at
``next_cursor_path`` and sent back as ``cursor_param``) and ``link`` (RFC 8288
``Link: <...>; rel="next"``).  Records sit at ``records_path`` in the body (a
dotted path; empty for a top-level list); fields are dotted paths too.

Incremental by the record time (kept as an ISO 8601 UTC string); with
``incremental_param`` (e.g. ``updated_since``) the state's time is sent so the
server can skip what is old, and ties at that time are settled by id.

Errors: 429 (honouring ``Retry-After``), 5xx and network faults are retried
with exponential backoff ``max_retries`` times, then a RetriableError; 401/403
is a ConfigError naming the auth setting; 404 on the records path a
ConfigError naming ``path``; a record without id or time, or whose image URL
is gone, is a BadRecordError for that record only.  Every request goes through
an ``httpx.Client`` whose transport can be injected, so all of this is
testable offline.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from connectors.sdk.rows import RowMapping, jsonable, problem_error, select_new, zone_from_name
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from schemas.records import RawObject, SourceRecord

_MISSING = object()


def get_path(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested dicts/lists (``"a.b.0.c"``), or None if absent; ``""`` is ``data``."""
    value = data
    for part in path.split(".") if path else ():
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


class RestApiConfig(ConnectorConfig):
    """Where the API is, how it pages and authenticates, and which fields mean what.

    ``base_url`` + ``path`` is the records endpoint; ``params`` are sent with
    every page.  Auth: ``bearer`` sends ``Authorization: Bearer <token>``,
    ``api_key`` sends ``<api_key_header>: <api_key>``; credentials go only to
    the API's own host.  ``timeout_s`` and ``backoff_s`` are seconds;
    ``timezone`` (IANA) applies to record times without an offset.
    """

    source: str = Field(default="rest_api", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    base_url: str = Field(pattern=r"^https?://")
    path: str = ""
    params: dict[str, str] = Field(default_factory=dict)
    pagination: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_size: int = Field(default=100, ge=1, le=10_000)
    page_size_param: str = "per_page"
    page_param: str = "page"
    first_page: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    next_cursor_path: str = "next_cursor"
    max_pages: int = Field(default=10_000, ge=1)
    records_path: str = ""
    id_field: str
    time_field: str
    text_field: str | None = None
    require_text: bool = True
    image_field: str | None = None
    key_fields: dict[str, str] = Field(default_factory=dict)
    metadata_fields: list[str] = Field(default_factory=list)
    incremental_param: str | None = None
    auth: Literal["none", "bearer", "api_key"] = "none"
    token: SecretStr | None = None
    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    timezone: str = "UTC"
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _auth_has_its_secret(self) -> RestApiConfig:
        if self.auth == "bearer" and self.token is None:
            raise ValueError("auth 'bearer' needs token")
        if self.auth == "api_key" and self.api_key is None:
            raise ValueError("auth 'api_key' needs api_key")
        return self

    @property
    def auth_setting(self) -> str:
        return {"bearer": "token", "api_key": "api_key"}.get(self.auth, "auth")


class RestApiConnector(Connector[RestApiConfig]):
    """Pages through a JSON API with httpx.  ``transport`` and ``sleep`` are injectable for tests."""

    name = "rest_api"
    config_class = RestApiConfig
    requires = ("httpx",)
    extra = "rest"

    def __init__(self, config: RestApiConfig, *, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config)
        self.zone = zone_from_name(config.timezone)
        self.mapping = RowMapping(
            id_field=config.id_field, time_field=config.time_field, zone=self.zone, text_field=config.text_field,
            require_text=config.require_text, image_field=config.image_field, key_fields=dict(config.key_fields),
            metadata_fields=tuple(config.metadata_fields), get=get_path)
        self._transport = transport
        self._sleep = sleep
        self._client: Any = None

    @property
    def records_url(self) -> str:
        return self.config.base_url.rstrip("/") + "/" + self.config.path.lstrip("/") if self.config.path \
            else self.config.base_url

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.Client(transport=self._transport, timeout=self.config.timeout_s,
                                        follow_redirects=True, headers={"Accept": "application/json"})
        return self._client

    def _auth_headers(self, url: Any) -> dict[str, str]:
        import httpx

        config = self.config
        if httpx.URL(url).host != httpx.URL(config.base_url).host:  # never hand credentials to another host
            return {}
        if config.auth == "bearer" and config.token is not None:
            return {"Authorization": f"Bearer {config.token.get_secret_value()}"}
        if config.auth == "api_key" and config.api_key is not None:
            return {config.api_key_header: config.api_key.get_secret_value()}
        return {}

    def _get(self, url: Any, params: Mapping[str, Any] | None = None) -> Any:
        """GET with retries: 429 (after Retry-After) and 5xx and network faults, ``max_retries`` times."""
        import httpx

        config = self.config
        last = ""
        for attempt in range(config.max_retries + 1):
            delay = min(config.backoff_s * 2 ** attempt, config.max_backoff_s)
            try:
                response = self._http().get(url, params=params, headers=self._auth_headers(url))
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    last = f"HTTP {response.status_code}"
                    if response.status_code == 429:
                        delay = min(_retry_after(response.headers.get("Retry-After"), delay), config.max_backoff_s)
                else:
                    return response
            if attempt < config.max_retries:
                self._sleep(delay)
        raise RetriableError(f"GET {_safe(url)} for source {config.source!r} failed after {config.max_retries + 1} "
                             f"tries ({last}); retry later")

    def _page(self, url: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
        """One page: (response, decoded JSON body); HTTP errors become ConfigError or RetriableError."""
        response = self._get(url, params)
        status = response.status_code
        if status in (401, 403):
            raise ConfigError(f"{self.records_url} answered HTTP {status} for source {self.config.source!r}; "
                              f"check the credentials (auth={self.config.auth!r})", setting=self.config.auth_setting)
        if status == 404:
            raise ConfigError(f"{_safe(response.url)} answered HTTP 404; check base_url and path", setting="path")
        if status >= 400:
            raise ConfigError(f"{_safe(response.url)} answered HTTP {status}: {response.text[:200]}; check the "
                              "request settings (params, pagination)", setting="params")
        try:
            return response, response.json()
        except ValueError:
            raise ConfigError(f"{_safe(response.url)} did not answer JSON (Content-Type "
                              f"{response.headers.get('Content-Type')!r}); check base_url and path",
                              setting="path") from None

    def _records(self, body: Any) -> list[Any]:
        records = get_path(body, self.config.records_path)
        if not isinstance(records, list):
            raise ConfigError(f"no list of records at {self.config.records_path or '(top level)'!r} in the response "
                              f"of {self.records_url}", setting="records_path")
        return records

    def pages(self, state: State) -> Iterator[list[Any]]:
        """Each page's list of records, following the configured pagination to the end."""
        config = self.config
        params: dict[str, Any] = dict(config.params)
        if config.incremental_param and state.cursor is not None:
            params[config.incremental_param] = str(state.cursor)
        if config.pagination in ("page", "offset", "link", "cursor"):
            params[config.limit_param if config.pagination == "offset" else config.page_size_param] = config.page_size
        url: Any = self.records_url
        page_number, offset, seen = config.first_page, 0, set()
        for _ in range(config.max_pages):
            if config.pagination == "page":
                params[config.page_param] = page_number
            elif config.pagination == "offset":
                params[config.offset_param] = offset
            response, body = self._page(url, params)
            records = self._records(body)
            yield records
            if config.pagination == "none":
                return
            if config.pagination in ("page", "offset"):
                if len(records) < config.page_size:
                    return
                page_number, offset = page_number + 1, offset + len(records)
                continue
            if config.pagination == "cursor":
                token = get_path(body, config.next_cursor_path)
                if token in (None, "") or not records:
                    return
                params[config.cursor_param] = token
                marker = str(token)
            else:
                link = response.links.get("next", {}).get("url")
                if not link:
                    return
                url, params = response.url.join(link), {}  # the next link carries every parameter
                marker = str(url)
            if marker in seen:
                raise ConfigError(f"pagination of {self.records_url} does not advance (next {marker!r} again); "
                                  "check the pagination settings", setting="pagination")
            seen.add(marker)
        raise ConfigError(f"{self.records_url} has more than max_pages={config.max_pages} pages; raise max_pages or "
                          "check the pagination settings", setting="max_pages")

    def check(self) -> None:
        """Read the first page: ConfigError if the URL, path, auth or records_path is wrong."""
        _, body = self._page(self.records_url, dict(self.config.params))
        self._records(body)

    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """Records past ``state`` with a time inside ``window``, newest version per id, in (time, id) order."""
        state, window = state or State(), window or Window()
        items = []
        for page_number, records in enumerate(self.pages(state)):
            for index, record in enumerate(records):
                ref = {"page": page_number, "index": index}
                if not isinstance(record, Mapping):
                    digest = hashlib.sha256(json.dumps(jsonable(record)).encode()).hexdigest()[:16]
                    items.append(Item(source_id=f"record:{digest}", ref={**ref, "raw": jsonable(record)},
                                      problem="record is not a JSON object"))
                    continue
                digest = hashlib.sha256(json.dumps(jsonable(record), sort_keys=True).encode()).hexdigest()[:16]
                items.append(self.mapping.to_item(record, fallback_id=f"record:{digest}", ref=ref))
        return select_new(items, state, window)

    def fetch(self, item: Item) -> list[SourceRecord]:
        """The record, with its image downloaded if it has one (a gone image is a BadRecordError)."""
        if item.problem is not None:
            raise problem_error(item, f"{self.records_url} record")
        objects = []
        if item.ref.get("image"):
            objects.append(self._image(item))
        return [self.mapping.record(self.config.source, item, objects)]

    def _image(self, item: Item) -> RawObject:
        import httpx

        url = httpx.URL(self.records_url).join(item.ref["image"])
        response = self._get(url)
        if response.status_code >= 400:
            raise BadRecordError(f"image {_safe(url)} answered HTTP {response.status_code}; fix the record's "
                                 f"{self.config.image_field} or restore the image", source_id=item.source_id)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not media_type.startswith("image/"):
            raise BadRecordError(f"image {_safe(url)} is {media_type or 'untyped'}, not an image",
                                 source_id=item.source_id, payload=response.content)
        return RawObject("image", response.content, media_type)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or ``default``."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _safe(url: Any) -> str:
    """``url`` without its query string (which may hold an API key) for messages."""
    return str(url).split("?")[0]
