"""Clinical reports: FHIR R4 DiagnosticReport (Bulk Data NDJSON) and HL7 v2 ORU^R01 messages.

A folder of ``*.ndjson`` files (one FHIR resource per line) and ``*.hl7`` files (one or more
HL7 v2 messages, segments separated by CR or newlines).  Each report becomes one text record
with the entity keys alignment needs (``patient_id``, ``accession``) and the report time in UTC.

Incremental by file modification time (ns); the record id is the report's own id (FHIR
``id``, HL7 MSH-10 control id), so a re-delivered file lands on the same records.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field

from connectors.sdk import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.pseudonyms import Pseudonymizer
from rosetta.core.timeutil import ensure_utc
from schemas.records import RawObject, SourceRecord
from transforms.dicom.deid import DeidConfig

ACCESSION_CODES = {"ACSN"}  # v2-0203 identifier type for accession numbers
_HL7_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")


class ClinicalReportsConfig(ConnectorConfig):
    """``root``: folder of ``.ndjson`` (FHIR) and ``.hl7`` (HL7 v2) files.

    ``timezone``: the sending system's IANA zone, for HL7 times without an offset.
    ``pseudonymize_keys``: give the patient and accession keys the same keyed pseudonyms, and the
    report time the same per-patient date shift, as de-identified DICOM gets (same key: the Airflow
    connection ``rosetta_deid`` or ``ROSETTA_DEID_KEY``), so reports stay joinable with the images.
    The report text and raw message are not de-identified here (free text needs its own scrubber).
    """

    root: Path
    timezone: str = "UTC"
    pseudonymize_keys: bool = False
    deid: DeidConfig = Field(default_factory=DeidConfig)


class ClinicalReportsConnector(Connector[ClinicalReportsConfig]):
    """Reads DiagnosticReport resources and ORU^R01 messages; one item per report."""

    name = "clinical_reports"
    config_class = ClinicalReportsConfig

    def __init__(self, config: ClinicalReportsConfig) -> None:
        super().__init__(config)
        self._pseudonyms: Pseudonymizer | None = None
        try:
            self.zone = ZoneInfo(config.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {config.timezone!r}; use an IANA name such as 'Europe/Berlin'",
                              setting="timezone") from None

    def check(self) -> None:
        if self.config.pseudonymize_keys:
            self.pseudonyms()
        if not self.config.root.is_dir():
            raise ConfigError(f"report folder {self.config.root} is not a directory; set the option 'root'",
                              setting="root")

    def pseudonyms(self) -> Pseudonymizer:
        """The DICOM connectors' pseudonymizer (same key, same date-shift range)."""
        if self._pseudonyms is None:
            deid = self.config.deid
            self._pseudonyms = Pseudonymizer(deid.secret(), max_shift_days=deid.max_date_shift_days)
        return self._pseudonyms

    def _joinable(self, record: SourceRecord) -> SourceRecord:
        """The record with DICOM's pseudonyms and date shift, when ``pseudonymize_keys`` is on."""
        if not self.config.pseudonymize_keys:
            return record
        pseudonyms, keys = self.pseudonyms(), dict(record.keys)
        patient = keys.get("patient_id", "")
        shift = timedelta(days=pseudonyms.date_shift_days(patient))
        if "patient_id" in keys:
            keys["patient_id"] = pseudonyms.patient_id(patient)
        if "accession" in keys:
            keys["accession"] = pseudonyms.accession(keys["accession"])
        return replace(record, keys=keys, event_time=record.event_time - shift,
                       event_time_origin=record.event_time_origin + "+date-shifted")

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        self.check()
        for path in sorted(self.config.root.iterdir()):
            suffix = path.suffix.lower()
            if path.name.startswith(".") or suffix not in (".ndjson", ".hl7"):
                continue
            stat = path.stat()
            if not window.contains_mtime_ns(stat.st_mtime_ns):
                continue
            cursor = stat.st_mtime_ns
            for index, source_id, problem in self._entries(path):
                item = Item(source_id=source_id, cursor=cursor, ref={"file": path.name, "index": index},
                            problem=problem)
                if problem is not None or state.is_new(item):
                    yield item

    def _entries(self, path: Path) -> Iterator[tuple[int, str, str | None]]:
        """(position, report id, problem) for each report in the file, without parsing it fully."""
        if path.suffix.lower() == ".ndjson":
            for index, line in enumerate(path.read_bytes().splitlines()):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                    rid = resource.get("id") if isinstance(resource, dict) else None
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield index, f"{path.name}#{index + 1}", f"line {index + 1} is not JSON ({exc})"
                    continue
                if not rid:
                    yield index, f"{path.name}#{index + 1}", f"line {index + 1} has no resource id"
                else:
                    yield index, f"fhir/{rid}", None
        else:
            for index, message in enumerate(_hl7_messages(path.read_bytes())):
                control_id = _hl7_field(message, "MSH", 10)
                if control_id:
                    yield index, f"hl7/{control_id}", None
                else:
                    yield index, f"{path.name}#{index + 1}", f"message {index + 1} has no MSH-10 control id"

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        path = self.config.root / item.ref["file"]
        data = path.read_bytes()
        entries = data.splitlines() if path.suffix.lower() == ".ndjson" else _hl7_messages(data)
        if item.ref["index"] >= len(entries):
            raise BadRecordError(f"{path.name} changed since it was listed (entry {item.ref['index'] + 1} is gone); "
                                 "the next run lists it again", source_id=item.source_id)
        raw = entries[item.ref["index"]]
        if path.suffix.lower() == ".ndjson":
            if item.problem:
                raise BadRecordError(f"{path.name}: {item.problem}; fix the export", source_id=item.source_id,
                                     payload=raw)
            yield self._joinable(self._fhir(item, raw))
        else:
            if item.problem:
                raise BadRecordError(f"{path.name}: {item.problem}", source_id=item.source_id, payload=raw)
            yield self._joinable(self._hl7(item, raw))

    # -- FHIR ------------------------------------------------------------------------------------
    def _fhir(self, item: Item, raw: bytes) -> SourceRecord:
        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"{item.ref['file']} line {item.ref['index'] + 1}: {reason}",
                                  source_id=item.source_id, payload=raw)

        resource: dict[str, Any] = json.loads(raw)
        if resource.get("resourceType") != "DiagnosticReport":
            raise bad(f"resourceType is {resource.get('resourceType')!r}, not DiagnosticReport")
        when = resource.get("issued") or resource.get("effectiveDateTime")
        if not when:
            raise bad("no issued or effectiveDateTime")
        try:
            event_time = ensure_utc(datetime.fromisoformat(when), name="issued")
        except ValueError as exc:
            raise bad(f"time {when!r} is not an ISO 8601 time with an offset ({exc})") from None
        text = resource.get("conclusion") or ""
        for form in resource.get("presentedForm") or []:
            if str(form.get("contentType", "")).startswith("text/") and form.get("data"):
                try:
                    text = (text + "\n" + base64.b64decode(form["data"], validate=True).decode("utf-8")).strip()
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise bad(f"presentedForm data is not base64 UTF-8 text ({exc})") from None
        if not text.strip():
            raise bad("no report text (conclusion or a text/* presentedForm)")
        keys = {}
        subject = (resource.get("subject") or {}).get("reference", "")
        if subject.startswith("Patient/"):
            keys["patient_id"] = subject.split("/", 1)[1]
        for identifier in resource.get("identifier") or []:
            codes = {c.get("code") for c in (identifier.get("type") or {}).get("coding") or []}
            if codes & ACCESSION_CODES and identifier.get("value"):
                keys["accession"] = str(identifier["value"])
        return SourceRecord(source=self.source, source_id=item.source_id, event_time=event_time, text=text.strip(),
                            keys=keys, objects=(RawObject("report", raw, "application/fhir+json"),),
                            metadata={"format": "fhir-r4", "status": resource.get("status")},
                            event_time_origin="issued" if resource.get("issued") else "effective")

    # -- HL7 v2 ----------------------------------------------------------------------------------
    def _hl7(self, item: Item, raw: bytes) -> SourceRecord:
        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"{item.ref['file']} message {item.ref['index'] + 1}: {reason}",
                                  source_id=item.source_id, payload=raw)

        message_type = _hl7_field(raw, "MSH", 9)
        if not message_type.startswith("ORU"):
            raise bad(f"message type {message_type!r} is not ORU^R01")
        when = _hl7_field(raw, "OBR", 22) or _hl7_field(raw, "OBR", 7) or _hl7_field(raw, "MSH", 7)
        try:
            event_time = parse_hl7_time(when, self.zone)
        except ValueError as exc:
            raise bad(str(exc)) from None
        lines = [_unescape(_field(segment, 5)) for segment in _segments(raw) if segment.startswith("OBX")]
        text = "\n".join(line for line in lines if line.strip())
        if not text:
            raise bad("no OBX-5 report text")
        keys = {}
        patient = _hl7_field(raw, "PID", 3).split("^")[0]
        if patient:
            keys["patient_id"] = patient
        accession = _hl7_field(raw, "OBR", 3).split("^")[0] or _hl7_field(raw, "OBR", 2).split("^")[0]
        if accession:
            keys["accession"] = accession
        return SourceRecord(source=self.source, source_id=item.source_id, event_time=event_time, text=text,
                            keys=keys, objects=(RawObject("report", raw, "application/hl7-v2"),),
                            metadata={"format": "hl7-v2", "message_type": message_type},
                            event_time_origin="obr")


def _hl7_messages(data: bytes) -> list[bytes]:
    """Split a file into messages at each MSH segment (segments end with CR, LF or CRLF)."""
    segments = [s for s in re.split(rb"\r\n|\r|\n", data) if s.strip()]
    messages: list[list[bytes]] = []
    for segment in segments:
        if segment.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(segment)
    return [b"\r".join(m) for m in messages]


def _segments(raw: bytes) -> list[str]:
    return raw.decode("utf-8", errors="replace").split("\r")


def _field(segment: str, number: int) -> str:
    parts = segment.split("|")
    index = number - 1 if segment.startswith("MSH") else number  # MSH-1 is the separator itself
    return parts[index] if 0 <= index < len(parts) else ""


def _hl7_field(raw: bytes, segment_id: str, number: int) -> str:
    for segment in _segments(raw):
        if segment.split("|", 1)[0] == segment_id:
            return _field(segment, number)
    return ""


def _unescape(text: str) -> str:
    return (text.replace("\\.br\\", "\n").replace("\\F\\", "|").replace("\\S\\", "^").replace("\\T\\", "&")
            .replace("\\R\\", "~").replace("\\E\\", "\\"))


def parse_hl7_time(value: str, zone: Any) -> datetime:
    """An HL7 v2 TS/DTM (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) as UTC; ``zone`` when it has no offset."""
    match = _HL7_TS.match(value.strip())
    if not match:
        raise ValueError(f"time {value!r} is not an HL7 timestamp (YYYYMMDDHHMMSS[+ZZZZ])")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    naive = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
                     int((fraction or "0").ljust(6, "0")[:6]))
    if offset:
        sign = 1 if offset[0] == "+" else -1
        tz: Any = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    else:
        tz = zone
    return ensure_utc(naive.replace(tzinfo=tz))
