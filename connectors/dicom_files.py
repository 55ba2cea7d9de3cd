"""DICOM files on disk: a folder of instances, or a DICOMDIR (PS3.10 media) and the files it names.

Each instance becomes de-identified records by the rules of :mod:`connectors.dicom_records` (the
same for DICOMweb and DIMSE): the de-identified DICOM bytes, 8-bit PNG frames for the encoders,
pseudonymized patient/accession/study/series/instance keys and the event time in UTC (chosen
acquisition -> content -> series -> study, with TimezoneOffsetFromUTC when present, otherwise the
configured site timezone, moved by the patient's date shift; ``event_time_origin`` says which).

The source id is the file's path relative to the root: name folders and files by anything but
patient identity.  Incremental by file modification time (ns).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from connectors.dicom_records import DicomRecordConfig, DicomRecords
from connectors.sdk import Connector, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import from_timestamp
from schemas.records import SourceRecord
from transforms.dicom.times import parse_da as parse_da
from transforms.dicom.times import parse_dt as parse_dt
from transforms.dicom.times import parse_tm as parse_tm

NOT_DICOM_SUFFIXES = {".txt", ".md", ".json", ".xml", ".html", ".csv", ".pdf", ".zip", ".py"}


class DicomFilesConfig(DicomRecordConfig):
    """``root``: a folder of DICOM files, or one holding a ``DICOMDIR``; the rest as :class:`DicomRecordConfig`."""

    root: Path


class DicomFilesConnector(Connector[DicomFilesConfig]):
    """Reads instances with pydicom (lenient: files without preamble are read too)."""

    name = "dicom_files"
    config_class = DicomFilesConfig
    requires = ("pydicom", "numpy", "PIL")
    extra = "dicom"

    def __init__(self, config: DicomFilesConfig) -> None:
        super().__init__(config)
        self.dicom = DicomRecords(config)

    def check(self) -> None:
        self.dicom.check()
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
            path = self.config.root / rel
            data, arrived = path.read_bytes(), from_timestamp(path.stat().st_mtime)
        except OSError as exc:
            raise BadRecordError(f"{rel}: {item.problem or exc.strerror}", source_id=item.source_id) from None
        return self.dicom.records(self.source, item.source_id, data, rel, arrived=arrived)

    def event_time(self, ds: Any) -> tuple[Any, str]:
        return self.dicom.event_time(ds)
