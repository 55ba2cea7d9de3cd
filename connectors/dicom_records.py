"""One DICOM instance's bytes -> de-identified Rosetta records; shared by the file, DICOMweb and DIMSE connectors.

The order matters and is the same for every source:

1. read leniently (:func:`transforms.dicom.reading.read_instance`): vendor quirks are flagged,
   unusable bytes are refused with a reason;
2. choose the event time from the original header (UTC, with TimezoneOffsetFromUTC or the site
   zone, flagged) — before de-identification removes the offset;
3. de-identify (:class:`transforms.dicom.deid.Deidentifier`, PS3.15 Basic Profile + options),
   and move the event time back by the patient's date shift, so it agrees with the shifted
   header dates and with the patient's reports;
4. decode the selected frames to 8-bit PNGs for the encoders.

Nothing identifying leaves this module: the stored ``dicom`` object is the de-identified instance,
keys are pseudonyms, messages name an instance by its pseudonymized id, and a record refused before
de-identification keeps no bytes in quarantine (the original stays at its source).  With ``deid``
disabled (data already de-identified upstream) the original bytes are stored as they are.

A multi-frame instance gives one record per selected frame: the first holds the instance and its
first selected frame; the others (``<source id>/frame-NNNNN``) hold one frame each, timed by
Frame Time / Frame Time Vector when the header has them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from connectors.sdk import ConnectorConfig
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import ensure_utc
from schemas.records import RawObject, SourceRecord
from transforms.dicom.deid import DeidConfig, Deidentifier

#: Entity keys of every DICOM record (after de-identification: pseudonyms and new UIDs).
KEY_ATTRIBUTES = (("patient_id", "PatientID"), ("accession", "AccessionNumber"), ("study_uid", "StudyInstanceUID"),
                  ("series_uid", "SeriesInstanceUID"), ("sop_uid", "SOPInstanceUID"))


class DicomRecordConfig(ConnectorConfig):
    """How instances become records, whatever the source.

    ``timezone``: the site's IANA zone for times without TimezoneOffsetFromUTC.  ``render``: add
    8-bit PNG frames for the encoders.  ``header_only``: metadata work: never read pixel data, store
    the de-identified header only.  ``frames``/``max_frames``: which frames of a multi-frame instance
    become records (``all`` samples evenly down to ``max_frames``).  ``validate_values``: convert and
    check every element while reading (flags every bad value; several times slower); off, the structure
    is checked and values are checked where they are used.  ``deid``: de-identification.
    ``series_quiet_period_s``: a series with no expected count is complete after this long without
    a new instance (see :mod:`transforms.dicom.series`).
    """

    timezone: str = "UTC"
    render: bool = True
    header_only: bool = False
    frames: Literal["first", "middle", "all"] = "all"
    max_frames: int = Field(default=64, ge=1, le=100_000)
    validate_values: bool = False
    deid: DeidConfig = Field(default_factory=DeidConfig)
    series_quiet_period_s: float = Field(default=300.0, ge=0)


class DicomRecords:
    """Reads, times, de-identifies and renders instances under one :class:`DicomRecordConfig`."""

    def __init__(self, config: DicomRecordConfig) -> None:
        self.config = config
        try:
            self.zone: tzinfo = ZoneInfo(config.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {config.timezone!r}; use an IANA name such as 'Europe/Berlin'",
                              setting="timezone") from None
        self._deidentifier: Deidentifier | None = None

    @property
    def deidentifier(self) -> Deidentifier | None:
        """The source's de-identifier (built on first use; ConfigError if its key is missing), None if disabled."""
        if self.config.deid.enabled and self._deidentifier is None:
            self._deidentifier = Deidentifier(self.config.deid)
        return self._deidentifier

    def check(self) -> None:
        """Fail fast on configuration: the de-identification key must be there before anything is read."""
        _ = self.deidentifier

    # -- identities that are safe to keep -----------------------------------------------------------
    def public_uid(self, uid: str) -> str:
        """The UID as it will appear in records: its keyed replacement when de-identifying."""
        deid = self.deidentifier
        return deid.pseudonyms.uid(uid) if deid is not None and uid else uid

    def seal(self, ref: dict[str, Any]) -> dict[str, Any]:
        """An item reference safe to write into plans: encrypted when de-identifying."""
        deid = self.deidentifier
        return {"sealed": deid.pseudonyms.seal(ref)} if deid is not None else ref

    def unseal(self, ref: dict[str, Any]) -> dict[str, Any]:
        deid = self.deidentifier
        if "sealed" not in ref:
            return ref
        if deid is None:
            raise ConfigError("the plan holds sealed references but de-identification is disabled; enable it with "
                              "the same key or re-run the listing", setting="deid.enabled")
        return deid.pseudonyms.unseal(str(ref["sealed"]))

    # -- records -------------------------------------------------------------------------------
    def event_time(self, ds: Any) -> tuple[Any, str]:
        """The header's event time in UTC and its origin (see :func:`transforms.dicom.times.event_time`)."""
        from transforms.dicom.times import event_time

        return event_time(ds, self.zone)

    def records(self, source: str, source_id: str, data: bytes, label: str, *,
                expected: int | None = None, arrived: datetime | None = None) -> list[SourceRecord]:
        """The records of one instance's bytes.  ``label`` names it in messages and must not identify anyone.

        ``expected``: the series' instance count if the source said it (a PACS query answer);
        otherwise ImagesInAcquisition from the header, when present, is used.  ``arrived``: when the
        bytes arrived (a file's mtime, UTC), the event time of an instance whose header has no date
        at all (origin ``arrival``); without it such an instance is a bad record.

        BadRecordError (with the reason) when the bytes are not a usable instance, it cannot be
        placed in time, it has burned-in text and no cleaning rule, or its pixels do not decode.
        """
        from transforms.dicom.reading import pydicom_quiet

        with pydicom_quiet() as caught:  # pydicom's warnings and logs can quote header values: kept in here
            records = self._records(source, source_id, data, label, expected, arrived)
            if caught:  # what pydicom said after reading (de-identifying, writing, decoding): counted, not quoted
                said = f"{len(caught)} ({', '.join(sorted({w.category.__name__ for w in caught}))})"
                records = [replace(r, metadata={**r.metadata, "later_warnings": said}) for r in records]
        return records

    def _records(self, source: str, source_id: str, data: bytes, label: str, expected: int | None,
                 arrived: datetime | None) -> list[SourceRecord]:
        from transforms.dicom.deid import BurnedInAnnotationError
        from transforms.dicom.reading import DicomReadError, HeaderText, read_instance
        from transforms.dicom.times import NoEventTimeError
        from transforms.dicom.writing import write_instance

        deid = self.deidentifier
        raw_payload = None if deid is not None else data  # identified bytes never reach quarantine storage
        try:
            read = read_instance(data, label, header_only=self.config.header_only,
                                 validate_values=self.config.validate_values)
        except DicomReadError as exc:
            raise BadRecordError(f"{label}: {exc.reason}", source_id=source_id, payload=raw_payload) from None
        ds = read.dataset
        try:
            moment, origin = self.event_time(HeaderText(ds))
        except NoEventTimeError as exc:
            if arrived is None:
                raise BadRecordError(f"{label}: {exc}", source_id=source_id, payload=raw_payload) from None
            moment, origin = ensure_utc(arrived), "arrival"
        stored = data
        if deid is not None:
            try:
                result = deid.deidentify(ds)
            except BurnedInAnnotationError as exc:
                raise BadRecordError(f"{label}: {exc}", source_id=source_id) from None
            if result.date_shift_days:
                moment -= timedelta(days=result.date_shift_days)
                origin += "+date-shifted"
            stored = write_instance(ds, label, source_id)
        elif self.config.header_only:
            stored = write_instance(ds, label, source_id)
        text = HeaderText(ds)
        keys = {key: str(value) for key, attr in KEY_ATTRIBUTES if (value := text.get(attr))}
        metadata: dict[str, Any] = {
            "modality": str(text.get("Modality", "") or ""), "sop_class_uid": str(text.get("SOPClassUID", "") or ""),
            "rows": _int(ds.get("Rows")), "columns": _int(ds.get("Columns")),
            "frames": _int(text.get("NumberOfFrames"), 1), "instance_number": _int(text.get("InstanceNumber")),
            "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""),
            "deidentified": deid is not None, "read_flags": list(read.flags)}
        in_acquisition = _int(text.get("ImagesInAcquisition"))
        if expected or in_acquisition:  # where the data says how many to expect
            metadata["series_expected"] = int(expected or in_acquisition)
        if deid is not None:
            metadata["deid_method"] = str(ds.get("DeidentificationMethod", ""))
        dicom = RawObject("dicom", stored, "application/dicom")
        frames = self._frames(ds, label, source_id, stored)
        if not frames:
            return [SourceRecord(source=source, source_id=source_id, event_time=moment, objects=(dicom,), keys=keys,
                                 metadata=metadata, event_time_origin=origin)]
        offsets = _frame_offsets_ms(ds, int(metadata["frames"] or 1))
        records = []
        for position, (index, png) in enumerate(frames):
            image = RawObject("image", png, "image/png")
            frame_keys = {**keys, "frame": str(index)} if int(metadata["frames"] or 1) > 1 else keys
            records.append(SourceRecord(
                source=source, source_id=source_id if position == 0 else f"{source_id}/frame-{index:05d}",
                event_time=moment + timedelta(milliseconds=offsets[index]) if offsets else moment,
                objects=(dicom, image) if position == 0 else (image,), keys=frame_keys,
                metadata={**metadata, "frame_index": index}, event_time_origin=origin))
        return records

    def _frames(self, ds: Any, label: str, source_id: str, stored: bytes) -> list[tuple[int, bytes]]:
        from transforms.dicom.pixels import (
            PixelDecodeError,
            frame_count,
            frames_8bit,
            has_pixels,
            select_frames,
            to_png,
        )

        if not self.config.render or self.config.header_only or not has_pixels(ds):
            return []
        try:
            indices = select_frames(frame_count(ds), self.config.frames, self.config.max_frames)
            arrays = frames_8bit(ds, indices)
        except PixelDecodeError as exc:
            raise BadRecordError(f"{label}: {exc.reason}", source_id=source_id, payload=stored) from None
        return [(index, to_png(array)) for index, array in zip(indices, arrays, strict=True)]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _frame_offsets_ms(ds: Any, count: int) -> list[float]:
    """Milliseconds of each frame after the first, from Frame Time Vector or Frame Time; [] if neither."""
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        try:
            increments = [float(v) for v in (vector if isinstance(vector, (list, tuple)) or
                                             type(vector).__name__ == "MultiValue" else [vector])]
        except (TypeError, ValueError):
            increments = []
        if len(increments) == count:
            offsets, total = [], 0.0
            for position, step in enumerate(increments):
                total += step if position else 0.0
                offsets.append(total)
            return offsets
    frame_time = ds.get("FrameTime")
    try:
        step = float(frame_time) if frame_time not in (None, "") else 0.0
    except (TypeError, ValueError):
        step = 0.0
    return [index * step for index in range(count)] if step > 0 else []
