"""The DIMSE connector (C-FIND + C-GET) against a real Orthanc's DICOM port.

Each source is the studies of one fresh PatientID (copies of pydicom's files with new UIDs),
uploaded through Orthanc's REST API.  Bad items are what Orthanc really stores and sends by C-GET:
an instance whose pixel data is cut short and one without any date.  Truncated or non-DICOM
uploads cannot be produced: Orthanc rejects them (HTTP 400) before they are in the archive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rosetta.devservices.orthanc import Orthanc
from rosetta.devservices.ports import free_port_block
from tests.dicom_network_fixtures import copy_of, public_uid, short_pixels, undated, unique_patient, upload


class DicomDimseHarness:
    name = "dicom_dimse"
    orthanc: Orthanc

    def _upload(self, data: bytes) -> None:
        upload(self.orthanc.url, self.orthanc.auth, data)

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        self.orthanc = request.getfixturevalue("orthanc")
        patient = unique_patient("contract-dimse")
        for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
            self._upload(copy_of(name, patient)[1])
        return {"source": "contract_dimse", "host": "127.0.0.1", "port": self.orthanc.dicom_port,
                "called_ae": self.orthanc.ae_title, "calling_ae": "ROSETTA", "filters": {"PatientID": patient},
                "timezone": "America/New_York"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        sop, data = copy_of("rtplan.dcm", options["filters"]["PatientID"])
        self._upload(data)
        return {public_uid(sop)}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        patient = options["filters"]["PatientID"]
        cut_sop, cut = copy_of("CT_small.dcm", patient, short_pixels)
        undated_sop, no_dates = copy_of("MR_small.dcm", patient, undated)
        self._upload(cut)
        self._upload(no_dates)
        return {public_uid(cut_sop), public_uid(undated_sop)}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "port": free_port_block(1), "connect_timeout_s": 2},
            {**options, "filters": {"NotAKeyword": "x"}},
            {**options, "calling_ae": "far too long an AE title"},
            {**options, "mode": "spool"},
            {**options, "mode": "spool", "spool_dir": "/nonexistent/rosetta-spool"},
            {**options, "timezone": "Nowhere/Zone"},
        ]


HARNESS = DicomDimseHarness()
