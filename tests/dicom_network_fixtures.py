"""A real Orthanc for the DICOM network connectors, and DICOM files to put in it.

The ``orthanc`` session fixture holds pydicom's bundled CT, MR, RT plan and JPEG 2000 instances as
they are.  Tests that add data upload copies with fresh UIDs under their own PatientID
(:func:`copy_of`) and filter on it, so they never see each other's instances.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from rosetta.devservices.orthanc import Orthanc
from rosetta.devservices.ports import free_port_block

BUNDLED = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm")
RECEIVER = "rosetta-receiver"
DATES = ("AcquisitionDateTime", "AcquisitionDate", "ContentDate", "SeriesDate", "StudyDate", "InstanceCreationDate")


def bundled_bytes(name: str) -> bytes:
    """The bytes of one of pydicom's bundled test files (offline)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(path).read_bytes()


def copy_of(name: str, patient_id: str, change: Callable[[Any], None] | None = None) -> tuple[str, bytes]:
    """A bundled file as a new instance (fresh study/series/SOP UIDs) of ``patient_id``: (SOP UID, bytes)."""
    ds = pydicom.dcmread(io.BytesIO(bundled_bytes(name)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id
    if change is not None:
        change(ds)
    out = io.BytesIO()
    ds.save_as(out)
    return str(ds.SOPInstanceUID), out.getvalue()


def short_pixels(ds: Any) -> None:
    """Cut the pixel data to 1000 bytes: a valid header whose pixels cannot be decoded."""
    ds.PixelData = ds.PixelData[:1000]


def undated(ds: Any) -> None:
    """Remove every date the event time could come from."""
    for keyword in DATES:
        if keyword in ds:
            delattr(ds, keyword)


def public_uid(uid: str) -> str:
    """The UID a de-identifying connector gives an instance (the session's key, see conftest)."""
    from rosetta.core.pseudonyms import Pseudonymizer

    return Pseudonymizer(os.environ["ROSETTA_DEID_KEY"]).uid(uid)


def unique_patient(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def upload(rest_url: str, auth: tuple[str, str], data: bytes) -> dict[str, Any]:
    """POST one instance to Orthanc's REST API; its answer (ID, Status...)."""
    response = httpx.post(f"{rest_url}/instances", content=data, auth=auth, timeout=30)
    response.raise_for_status()
    return dict(response.json())


@pytest.fixture(scope="session")
def orthanc(session_dir: Path) -> Iterator[Orthanc]:
    """A real Orthanc (DICOMweb + DIMSE) holding the bundled test files; it knows the modality
    ``rosetta-receiver`` (AE ROSETTA on a reserved loopback port) to C-STORE to."""
    receiver_port = free_port_block(1)
    server = Orthanc(session_dir / f"orthanc-{secrets.token_hex(3)}",
                     modalities={RECEIVER: ("ROSETTA", "127.0.0.1", receiver_port)})
    server.start()
    try:
        for name in BUNDLED:
            assert server.upload(bundled_bytes(name))["Status"] in ("Success", "AlreadyStored")
        yield server
    finally:
        server.stop()
