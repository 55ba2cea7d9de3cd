"""The DICOMweb connector against a real Orthanc (QIDO-RS/WADO-RS through its DICOMweb plugin).

Each source is the instances of one fresh PatientID (copies of pydicom's files with new UIDs).
Bad items are what Orthanc really stores and serves: an instance whose pixel data is cut short
(Orthanc does not check pixel data on upload) and one without any date.  A truncated or non-DICOM
upload cannot be produced: Orthanc rejects it with HTTP 400, so it never reaches an archive listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rosetta.devservices.ports import free_port_block
from tests.dicom_network_fixtures import copy_of, public_uid, short_pixels, undated, unique_patient, upload


def _upload(options: dict[str, Any], data: bytes) -> None:
    upload(options["url"].removesuffix("/dicom-web"), (options["username"], options["password"].get_secret_value()),
           data)


class DicomWebHarness:
    name = "dicomweb"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        orthanc = request.getfixturevalue("orthanc")
        patient = unique_patient("contract-web")
        options = {"source": "contract_dicomweb", "url": orthanc.dicomweb_url, "auth": "basic",
                   "username": orthanc.username, "password": SecretStr(orthanc.password),
                   "filters": {"PatientID": patient}, "timezone": "America/New_York", "page_size": 2}
        for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
            _upload(options, copy_of(name, patient)[1])
        return options

    def add_new(self, options: dict[str, Any]) -> set[str]:
        sop, data = copy_of("rtplan.dcm", options["filters"]["PatientID"])
        _upload(options, data)
        return {public_uid(sop)}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        patient = options["filters"]["PatientID"]
        cut_sop, cut = copy_of("CT_small.dcm", patient, short_pixels)
        undated_sop, no_dates = copy_of("MR_small.dcm", patient, undated)
        _upload(options, cut)
        _upload(options, no_dates)
        return {public_uid(cut_sop), public_uid(undated_sop)}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        closed = free_port_block(1)
        return [
            {**options, "password": SecretStr("wrong-password")},
            {**options, "auth": "none"},
            {**options, "url": f"http://127.0.0.1:{closed}/dicom-web", "timeout_s": 2},
            {**options, "url": options["url"].removesuffix("/dicom-web") + "/not-dicom-web"},
            {**options, "auth": "bearer"},
            {**options, "timezone": "Nowhere/Zone"},
        ]


HARNESS = DicomWebHarness()
