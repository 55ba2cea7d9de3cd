"""DICOM files on disk: a folder of instances, or a DICOMDIR (PS3.10 media) and the files it names.

Each instance becomes one record: the raw DICOM bytes, an 8-bit PNG rendering of its first frame
for the encoders (modality LUT, then VOI window or LUT, MONOCHROME1 inverted), the entity keys
alignment needs (patient, accession, study, series, instance) and the event time in UTC, chosen
acquisition -> content -> series -> study, with TimezoneOffsetFromUTC when present, otherwise the
configured site timezone (the record says which in ``event_time_origin``).

Incremental by file modification time (ns).  Note: keys and metadata carry identifiers as the
files have them; de-identification comes before storage in the DICOM pipeline (a later issue).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sdk import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import ensure_utc
from schemas.records import RawObject, SourceRecord

NOT_DICOM_SUFFIXES = {".txt", ".md", ".json", ".xml", ".html", ".csv", ".pdf", ".zip", ".py"}
#: (date attribute, time attribute, origin label), in order of preference.
EVENT_TIMES = (("AcquisitionDate", "AcquisitionTime", "acquisition"), ("ContentDate", "ContentTime", "content"),
               ("SeriesDate", "SeriesTime", "series"), ("StudyDate", "StudyTime", "study"))


class DicomFilesConfig(ConnectorConfig):
    """``root``: a folder of DICOM files, or one holding a ``DICOMDIR``.

    ``timezone``: the site's IANA zone for DA/TM values without TimezoneOffsetFromUTC.
    ``render``: add an 8-bit PNG of the first frame (set False for header-only work).
    """

    root: Path
    timezone: str = "UTC"
    render: bool = True


class DicomFilesConnector(Connector[DicomFilesConfig]):
    """Reads instances with pydicom (lenient: files without preamble are read too)."""

    name = "dicom_files"
    config_class = DicomFilesConfig
    requires = ("pydicom", "numpy", "PIL")
    extra = "dicom"

    def __init__(self, config: DicomFilesConfig) -> None:
        super().__init__(config)
        try:
            self.zone: tzinfo = ZoneInfo(config.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {config.timezone!r}; use an IANA name such as 'Europe/Berlin'",
                              setting="timezone") from None

    def check(self) -> None:
        if not self.config.root.is_dir():
            raise ConfigError(f"DICOM folder {self.config.root} is not a directory; set the option 'root'",
                              setting="root")

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        self.check()
        for rel in self._files():
            path = self.config.root / rel
            try:
                stat = path.stat()
            except OSError:
                yield Item(source_id=rel, ref={"path": rel}, problem="listed in the DICOMDIR but missing on disk")
                continue
            if not window.contains_mtime_ns(stat.st_mtime_ns):
                continue
            item = Item(source_id=rel, cursor=stat.st_mtime_ns, ref={"path": rel})
            if state.is_new(item):
                yield item

    def _files(self) -> list[str]:
        root = self.config.root
        if (root / "DICOMDIR").is_file():
            return sorted(self._dicomdir_files(root / "DICOMDIR"))
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or name.upper().startswith("DICOMDIR") or \
                        Path(name).suffix.lower() in NOT_DICOM_SUFFIXES:
                    continue
                found.append(Path(dirpath, name).relative_to(root).as_posix())
        return found

    def _dicomdir_files(self, dicomdir: Path) -> Iterator[str]:
        import pydicom

        try:
            media = pydicom.dcmread(dicomdir)
        except Exception as exc:
            raise ConfigError(f"{dicomdir} is not a readable DICOMDIR ({exc}); fix or remove it to read the folder "
                              "file by file", setting="root") from None
        for record in media.get("DirectoryRecordSequence", []):
            if record.get("DirectoryRecordType") == "IMAGE" and "ReferencedFileID" in record:
                parts = record.ReferencedFileID
                yield "/".join([parts] if isinstance(parts, str) else list(parts))

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        rel = item.ref["path"]
        try:
            data = (self.config.root / rel).read_bytes()
        except OSError as exc:
            raise BadRecordError(f"{rel}: {item.problem or exc.strerror}", source_id=item.source_id) from None
        yield self.record(item.source_id, data, rel)

    def record(self, source_id: str, data: bytes, label: str) -> SourceRecord:
        """One instance's bytes as a record (also used by the DICOMweb and DIMSE connectors).

        ``label`` names the instance in messages (a path, a URL, a peer and UID).  BadRecordError
        (with the bytes) if they are not a whole instance, it has no date, or its pixels cannot be
        decoded.
        """
        ds = self._read(label, data, source_id)
        try:
            event_time, origin = self.event_time(ds)
        except BadRecordError as exc:
            raise BadRecordError(f"{label}: {exc.reason}", source_id=source_id, payload=data) from None
        objects = [RawObject("dicom", data, "application/dicom")]
        if self.config.render and "PixelData" in ds:
            objects.append(RawObject("image", self._render(label, ds, data, source_id), "image/png"))
        keys = {key: str(ds.get(attr)) for key, attr in (
            ("patient_id", "PatientID"), ("accession", "AccessionNumber"), ("study_uid", "StudyInstanceUID"),
            ("series_uid", "SeriesInstanceUID"), ("sop_uid", "SOPInstanceUID")) if ds.get(attr)}
        metadata = {"modality": str(ds.get("Modality", "")), "sop_class_uid": str(ds.get("SOPClassUID", "")),
                    "rows": int(ds.get("Rows", 0) or 0), "columns": int(ds.get("Columns", 0) or 0),
                    "frames": int(ds.get("NumberOfFrames", 1) or 1),
                    "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))}
        return SourceRecord(source=self.source, source_id=source_id, event_time=event_time,
                            objects=tuple(objects), keys=keys, metadata=metadata, event_time_origin=origin)

    def _read(self, rel: str, data: bytes, source_id: str) -> Any:
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            ds.get("SOPClassUID")  # force parsing of the header
        except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, KeyError, struct.error) as exc:
            raise BadRecordError(f"{rel}: not a readable DICOM file ({type(exc).__name__}: {exc})",
                                 source_id=source_id, payload=data) from None
        declared_end = _last_element_end(ds)
        if declared_end is not None and declared_end > len(data):
            raise BadRecordError(f"{rel}: truncated: its last element runs to byte {declared_end} of a "
                                 f"{len(data)}-byte file; copy the file again from the source",
                                 source_id=source_id, payload=data)
        if "SOPClassUID" not in ds and "PixelData" not in ds:
            raise BadRecordError(f"{rel}: not a DICOM instance (no SOP Class UID or pixel data); remove it from "
                                 "the folder", source_id=source_id, payload=data)
        return ds

    def event_time(self, ds: Any) -> tuple[datetime, str]:
        """The instance's event time in UTC and where it came from (``acquisition[+offset]``, ...)."""
        offset = _offset(str(ds.get("TimezoneOffsetFromUTC", "") or ""))
        zone = offset or self.zone
        suffix = "+offset" if offset else "+site-timezone"
        if ds.get("AcquisitionDateTime"):
            moment = parse_dt(str(ds.AcquisitionDateTime), zone)
            if moment is not None:
                return moment, "acquisition-datetime" + suffix
        for date_attr, time_attr, label in EVENT_TIMES:
            day = parse_da(str(ds.get(date_attr, "") or ""))
            if day is not None:
                clock = parse_tm(str(ds.get(time_attr, "") or "")) or time()
                return ensure_utc(datetime.combine(day, clock, tzinfo=zone)), label + suffix
        raise BadRecordError("no acquisition, content, series or study date in the header; cannot place it in "
                             "time", source_id=str(ds.get("SOPInstanceUID", "")) or None)

    def _render(self, rel: str, ds: Any, data: bytes, source_id: str) -> bytes:
        import numpy as np
        from PIL import Image
        from pydicom.pixels import apply_modality_lut, apply_voi_lut

        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise BadRecordError(f"{rel}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); install a "
                                 "decoder plugin (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg) or quarantine "
                                 "it", source_id=source_id, payload=data) from None
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        first = pixels[0] if frames > 1 else pixels
        if samples == 1:
            values = apply_modality_lut(first, ds).astype(np.float64)
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                values = apply_voi_lut(values, ds, index=0).astype(np.float64)
            low, high = float(values.min()), float(values.max())
            scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low) * 255.0
            if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                scaled = 255.0 - scaled
            image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
        else:
            rgb = first
            if str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
                from pydicom.pixels import convert_color_space

                rgb = convert_color_space(first, str(ds.PhotometricInterpretation), "RGB")
            if rgb.dtype != np.uint8:
                rgb = (rgb.astype(np.float64) / max(1.0, float(rgb.max())) * 255).round().astype(np.uint8)
            image = Image.fromarray(rgb, mode="RGB")
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()


def _last_element_end(ds: Any) -> int | None:
    """Where the file's last top-level element says it ends (None when it has undefined length)."""
    elements = getattr(ds, "_dict", {})
    if not elements:
        return None
    raw = elements[next(reversed(elements))]
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return None
    return int(tell) + int(length)


def _offset(value: str) -> tzinfo | None:
    value = value.strip()
    if len(value) != 5 or value[0] not in "+-" or not value[1:].isdigit():
        return None
    sign = 1 if value[0] == "+" else -1
    return timezone(sign * timedelta(hours=int(value[1:3]), minutes=int(value[3:5])))


def parse_da(value: str) -> date | None:
    """DICOM DA (``YYYYMMDD``, or the retired ``YYYY.MM.DD``)."""
    value = value.strip().replace(".", "")
    try:
        return datetime.strptime(value, "%Y%m%d").date() if len(value) == 8 else None
    except ValueError:
        return None


def parse_tm(value: str) -> time | None:
    """DICOM TM (``HH[MM[SS[.FFFFFF]]]``, or the retired ``HH:MM:SS``)."""
    value = value.strip().replace(":", "")
    if not value:
        return None
    whole, _, fraction = value.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6):
        return None
    hour, minute, second = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    if hour > 23 or minute > 59 or second > 60:
        return None
    return time(hour, minute, min(second, 59), int((fraction or "0")[:6].ljust(6, "0")))


def parse_dt(value: str, zone: tzinfo) -> datetime | None:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``); ``zone`` when it carries no offset."""
    value = value.strip()
    offset = None
    if len(value) > 5 and value[-5] in "+-":
        offset, value = _offset(value[-5:]), value[:-5]
    day = parse_da(value[:8])
    if day is None:
        return None
    clock = parse_tm(value[8:]) or time()
    return ensure_utc(datetime.combine(day, clock, tzinfo=offset or zone))
