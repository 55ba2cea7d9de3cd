from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_clinical import fhir_report, ndjson, oru


class ClinicalReportsHarness:
    name = "clinical_reports"

    def _write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)
        stamp = max(p.stat().st_mtime_ns for p in path.parent.iterdir()) + 10**9
        os.utime(path, ns=(stamp, stamp))

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "reports"
        root.mkdir()
        self._write(root / "bulk-1.ndjson", ndjson(fhir_report("r1"), fhir_report("r2", accession="ACC-2")))
        self._write(root / "feed-1.hl7", oru("MSG-1") + oru("MSG-2", accession="ACC-3"))
        return {"root": str(root), "source": "contract_reports", "timezone": "Europe/Berlin"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        self._write(root / "bulk-2.ndjson", ndjson(fhir_report("r9", patient="p-9")))
        self._write(root / "feed-2.hl7", oru("MSG-9"))
        return {"fhir/r9", "hl7/MSG-9"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        self._write(root / "bulk-bad.ndjson", b'{"resourceType": "DiagnosticReport", "id": "nodate"}\n{oops\n')
        self._write(root / "feed-bad.hl7", oru("MSG-BAD", observed="soon"))
        return {"fhir/nodate", "bulk-bad.ndjson#2", "hl7/MSG-BAD"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**options, "root": str(Path(options["root"]) / "missing")}, {**options, "timezone": "Mars/Base"}]


HARNESS = ClinicalReportsHarness()
