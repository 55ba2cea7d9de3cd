"""A DICOMweb archive (PACS, Orthanc, a cloud healthcare API) as a source: QIDO-RS to list, WADO-RS to fetch.

Each instance becomes the same record as :mod:`connectors.dicom_files` makes of a file (raw DICOM
bytes, an 8-bit PNG of the first frame, patient/accession/study/series/instance keys, the event time
in UTC by the same rules), so DICOM from a folder, a DICOMweb archive or a DIMSE peer is one shape.

Listing: ``GET {url}/instances`` (QIDO-RS, paged with ``limit``/``offset``), narrowed by ``filters``
(QIDO matching keys, e.g. ``{"PatientID": "P1", "Modality": "CT"}``) and, for a bounded window, by a
``StudyDate`` range.  The source id is the SOP Instance UID.

Incremental state: DICOM has no standard "arrived at" attribute, and content times (study,
acquisition) are not arrival order: archives routinely receive prior studies years after they were
made, so a cursor on StudyDate/StudyTime would silently skip every late arrival; Orthanc's change
sequence would be exact but is not DICOMweb and not portable.  So every item has the same constant
cursor and the state's ``seen_at_cursor`` holds the SOP Instance UIDs already committed: a run takes
exactly what the archive holds and the state has not seen, whatever its dates, and an instance a
page shift hid in one run is taken by the next.  The price is a state that grows by one UID (~60
bytes) per instance, on top of a listing that already reads the whole (filtered) archive each run;
narrow big archives with ``filters`` or windows.  When de-identifying (the default), the source id
is the instance's new UID and the original UIDs travel only inside the item's sealed reference.

Window: the study's date and time (StudyDate + StudyTime, with TimezoneOffsetFromUTC when the
archive returns it, otherwise ``timezone``) must lie in ``[start, end)``; the archive is asked for
the covering StudyDate range and the rest is filtered here.  Instances without a StudyDate are left
out of bounded windows (they cannot be placed in time) and listed in unbounded runs.

Errors: 401/403 is a ConfigError naming the auth settings; 429, 5xx and network faults are retried
``max_retries`` times with exponential backoff, then a RetriableError; an unreachable server or a
wrong ``url`` in :meth:`check` is a ConfigError; an instance that is gone, cannot be parsed, cannot
be placed in time or whose pixels cannot be decoded is a BadRecordError.  Orthanc 1.10 quirk: it does
not decode %-encoded QIDO values, so filter values with characters httpx escapes (``*``, ``^``,
spaces) match nothing there; use plain values or the DIMSE connector for wildcard/PN searches.
Every request goes through an ``httpx.Client`` whose transport can be injected (offline tests).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from connectors.dicom_records import DicomRecordConfig, DicomRecords
from connectors.sdk.base import Connector, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from schemas.records import SourceRecord
from transforms.dicom.times import parse_da

#: The one cursor every archive instance carries: incremental state is the set of committed SOP UIDs.
SEEN_SET_CURSOR = 0
#: QIDO attributes asked for besides the defaults (StudyDate/Time for windows, the timezone offset).
INCLUDE_FIELDS = ("StudyDate", "StudyTime", "TimezoneOffsetFromUTC", "SOPClassUID")
_TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
         "SOPClassUID": "00080016", "StudyDate": "00080020", "StudyTime": "00080030",
         "TimezoneOffsetFromUTC": "00080201"}
_WADO_ACCEPT = ('multipart/related; type="application/dicom"; transfer-syntax=*',
                'multipart/related; type="application/dicom"')


class _RedactArchiveUrls(logging.Filter):
    """httpx logs every request URL at INFO; a DICOMweb URL holds original UIDs and query values (PHI).

    Installed once on the ``httpx`` and ``httpcore`` loggers, it rewrites records that name a root a
    de-identifying DICOMweb connector uses, keeping the root and the method, dropping the rest.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[str, re.Pattern[str]] = {}  # root -> the root and the URL path/query after it

    def add_root(self, root: str) -> None:
        self.paths.setdefault(root, re.compile(re.escape(root) + r"[^\s\"']*"))

    def filter(self, record: logging.LogRecord) -> bool:
        if self.paths:
            message = record.getMessage()
            for root, path in self.paths.items():
                if root in message:
                    record.msg, record.args = path.sub(root + "/<redacted>", message), None
                    break
        return True


_REDACT = _RedactArchiveUrls()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_REDACT)


def study_moment(reader: DicomRecords, study_date: str, study_time: str, offset: str) -> datetime | None:
    """StudyDate + StudyTime in UTC (``offset`` is TimezoneOffsetFromUTC, else the site zone), or None."""
    if parse_da(study_date) is None:
        return None
    return reader.event_time({"StudyDate": study_date, "StudyTime": study_time, "TimezoneOffsetFromUTC": offset})[0]


def study_date_range(window: Window, reader: DicomRecords) -> str | None:
    """The StudyDate range (``YYYYMMDD-YYYYMMDD``, site zone, a day wider each side for offsets) covering ``window``."""
    if not window.bounded:
        return None
    start = (window.start.astimezone(reader.zone) - timedelta(days=1)).strftime("%Y%m%d") if window.start else ""
    end = (window.end.astimezone(reader.zone) + timedelta(days=1)).strftime("%Y%m%d") if window.end else ""
    return f"{start}-{end}"


class DicomWebConfig(DicomRecordConfig):
    """Where the DICOMweb service is and how to talk to it.

    ``url``: the DICOMweb root (``http://pacs:8042/dicom-web``).  ``auth``: ``basic`` (``username`` +
    ``password``) or ``bearer`` (``token``).  ``filters``: QIDO matching keys (keyword -> value).
    ``page_size``: QIDO ``limit``.  ``timeout_s``, ``backoff_s``, ``max_backoff_s`` are seconds.
    Timezone, rendering and de-identification as :class:`~connectors.dicom_records.DicomRecordConfig`.
    """

    url: str = Field(pattern=r"^https?://")
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    filters: dict[str, str] = Field(default_factory=dict)
    page_size: int = Field(default=200, ge=1, le=10_000)
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _auth_has_its_secret(self) -> DicomWebConfig:
        if self.auth == "basic" and (self.username is None or self.password is None):
            raise ValueError("auth 'basic' needs username and password")
        if self.auth == "bearer" and self.token is None:
            raise ValueError("auth 'bearer' needs token")
        return self

    @property
    def auth_setting(self) -> str:
        return {"basic": "username/password", "bearer": "token"}.get(self.auth, "auth")


class DicomWebConnector(Connector[DicomWebConfig]):
    """QIDO-RS + WADO-RS with httpx.  ``transport`` and ``sleep`` are injectable for tests."""

    name = "dicomweb"
    config_class = DicomWebConfig
    requires = ("httpx", "pydicom", "numpy", "PIL")
    extra = "dicom"

    def __init__(self, config: DicomWebConfig, *, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config)
        self.reader = DicomRecords(config)
        self.root = config.url.rstrip("/")
        if config.deid.enabled:  # request URLs carry original UIDs: never in a log line
            _REDACT.add_root(self.root)
        self._transport = transport
        self._sleep = sleep
        self._client: Any = None

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            auth: Any = None
            headers = {}
            if self.config.auth == "basic" and self.config.password is not None:
                auth = httpx.BasicAuth(self.config.username or "", self.config.password.get_secret_value())
            elif self.config.auth == "bearer" and self.config.token is not None:
                headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
            self._client = httpx.Client(transport=self._transport, timeout=self.config.timeout_s, auth=auth,
                                        headers=headers, follow_redirects=False)
        return self._client

    def _get(self, url: str, *, params: Any = None, accept: str = "application/dicom+json",
             retries: int | None = None) -> Any:
        """GET with retries on 429/5xx/network faults; 401/403 is a ConfigError."""
        import httpx

        config = self.config
        retries = config.max_retries if retries is None else retries
        last = ""
        for attempt in range(retries + 1):
            try:
                response = self._http().get(url, params=params, headers={"Accept": accept})
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in (401, 403):
                    self.close()  # a config error ends the connector's life: leave no open connection
                    raise ConfigError(f"{url} answered HTTP {response.status_code} for source {config.source!r}; "
                                      f"check the credentials (auth={config.auth!r})", setting=config.auth_setting)
                if response.status_code != 429 and response.status_code < 500:
                    return response
                last = f"HTTP {response.status_code}"
            if attempt < retries:
                self._sleep(min(config.backoff_s * 2 ** attempt, config.max_backoff_s))
        raise RetriableError(f"GET {url} for source {config.source!r} failed after {retries + 1} tries ({last}); "
                             "retry later")

    def check(self) -> None:
        """One QIDO study query: ConfigError if the server is unreachable, the root wrong or auth refused."""
        self.reader.check()
        try:
            response = self._get(f"{self.root}/studies", params={"limit": "1"}, retries=0)
        except RetriableError as exc:
            self.close()
            raise ConfigError(f"DICOMweb service {self.root} is unreachable or failing ({exc}); check url",
                              setting="url") from None
        if response.status_code >= 400 or not isinstance(self._json(response), list):
            self.close()
            raise ConfigError(f"{self.root}/studies answered HTTP {response.status_code}, not a QIDO-RS result; "
                              "check url (the DICOMweb root, e.g. http://pacs:8042/dicom-web)", setting="url")

    def _json(self, response: Any) -> Any:
        if not response.content:
            return []  # QIDO answers 204 No Content when nothing matches
        try:
            return response.json()
        except ValueError:
            return None

    def instances(self, window: Window) -> Iterator[dict[str, Any]]:
        """Every QIDO-RS instance result (DICOM JSON) matching ``filters`` and the window's StudyDate range."""
        params: list[tuple[str, str]] = [("includefield", name) for name in INCLUDE_FIELDS]
        params += sorted(self.config.filters.items())
        date_range = study_date_range(window, self.reader)
        if date_range:
            params.append(("StudyDate", date_range))
        offset = 0
        while True:
            page = [*params, ("limit", str(self.config.page_size)), ("offset", str(offset))]
            response = self._get(f"{self.root}/instances", params=page)
            body = self._json(response)
            if response.status_code >= 400 or not isinstance(body, list):
                self.close()
                raise ConfigError(f"QIDO-RS {self.root}/instances answered HTTP {response.status_code}: "
                                  f"{response.text[:200]}; check url and filters", setting="filters")
            yield from body
            if len(body) < self.config.page_size:
                return
            offset += len(body)

    def list_items(self, state: State, window: Window) -> list[Item]:
        """Instances not yet committed (by SOP Instance UID) whose study time is in ``window``, in UID order."""
        items: dict[str, Item] = {}
        for result in self.instances(window):
            values = {name: _value(result, tag) for name, tag in _TAGS.items()}
            study, series, sop = values["StudyInstanceUID"], values["SeriesInstanceUID"], values["SOPInstanceUID"]
            if not (study and series and sop):
                continue  # not an instance result; nothing to fetch it by
            if window.bounded:
                moment = study_moment(self.reader, values["StudyDate"], values["StudyTime"],
                                      values["TimezoneOffsetFromUTC"])
                if moment is None or not window.contains(moment):
                    continue
            source_id = self.reader.public_uid(sop)  # the instance's new UID when de-identifying
            items[source_id] = Item(source_id=source_id, cursor=SEEN_SET_CURSOR, ref=self.reader.seal(
                {"study": study, "series": series, "sop": sop, "sop_class": values["SOPClassUID"]}))
        return [items[uid] for uid in sorted(items) if state.is_new(items[uid])]

    def fetch(self, item: Item) -> list[SourceRecord]:
        """WADO-RS the instance (original transfer syntax when the server allows) and parse it."""
        ref = self.reader.unseal(item.ref)
        url = f"{self.root}/studies/{ref['study']}/series/{ref['series']}/instances/{ref.get('sop', item.source_id)}"
        label = f"{self.root} instance {item.source_id}"  # the URL holds the original UIDs: never in a message
        response = None
        for accept in _WADO_ACCEPT:
            response = self._get(url, accept=accept)
            if response.status_code not in (406, 415):  # some servers refuse transfer-syntax=*
                break
        assert response is not None
        if response.status_code in (404, 410):
            raise BadRecordError(f"{label}: WADO-RS answered HTTP {response.status_code}: the instance left the "
                                 "archive after it was listed", source_id=item.source_id)
        if response.status_code >= 400:
            raise BadRecordError(f"{label}: WADO-RS answered HTTP {response.status_code}",
                                 source_id=item.source_id)
        parts = multipart_parts(response.headers.get("Content-Type", ""), response.content)
        if len(parts) != 1:
            raise BadRecordError(f"{label}: WADO-RS answered {len(parts)} DICOM parts, expected one",
                                 source_id=item.source_id,
                                 payload=None if self.reader.deidentifier is not None else response.content)
        return self.reader.records(self.source, item.source_id, parts[0], label)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a ``multipart/related`` response (RFC 2046); a single-part body as one part."""
    media, _, rest = content_type.partition(";")
    if media.strip().lower() != "multipart/related":
        return [body]
    boundary = ""
    for param in rest.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return [body]
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        _headers, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        parts.append(content[:-2] if content.endswith(b"\r\n") else content)
    return parts


def _value(result: dict[str, Any], tag: str) -> str:
    values = (result.get(tag) or {}).get("Value") or []
    return str(values[0]) if values and not isinstance(values[0], dict) else ""
