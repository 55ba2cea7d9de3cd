from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file


class DicomFilesHarness:
    name = "dicom_files"

    def _copy(self, root: Path, name: str, data: bytes | None = None) -> None:
        target = root / name
        if data is None:
            shutil.copyfile(get_testdata_file(name, download=False) or "", target)
        else:
            target.write_bytes(data)
        stamp = max(p.stat().st_mtime_ns for p in root.iterdir()) + 10**9
        os.utime(target, ns=(stamp, stamp))

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "dicom"
        root.mkdir()
        for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
            self._copy(root, name)
        return {"root": str(root), "source": "contract_dicom", "timezone": "America/New_York"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        self._copy(Path(options["root"]), "rtplan.dcm")
        return {"rtplan.dcm"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        ct = (root / "CT_small.dcm").read_bytes()
        self._copy(root, "half.dcm", ct[: len(ct) // 2])
        self._copy(root, "fake.dcm", b"not dicom" * 50)
        return {"half.dcm", "fake.dcm"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**options, "root": str(Path(options["root"]) / "missing")}, {**options, "timezone": "Nowhere/Zone"}]


HARNESS = DicomFilesHarness()
