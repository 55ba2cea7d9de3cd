"""DICOM files from pydicom's bundled test corpus (offline), read the way the connector reads them."""

from __future__ import annotations

import io
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from connectors.sdk import State, Window, load_connector
from rosetta.core.errors import BadRecordError
from rosetta.core.pseudonyms import Pseudonymizer
from transforms.dicom.times import parse_da, parse_dt, parse_tm


def _pseudonyms() -> Pseudonymizer:
    return Pseudonymizer(os.environ["ROSETTA_DEID_KEY"])


def _corpus(tmp_path: Path, *names: str) -> Path:
    for name in names:
        path = get_testdata_file(name, download=False)
        assert path is not None, name
        shutil.copyfile(path, tmp_path / name)
    return tmp_path


def _records(root: Path, **options: object) -> dict[str, object]:
    connector = load_connector("dicom_files", {"root": str(root), "source": "dcm", **options})
    out: dict[str, object] = {}
    for item in connector.list_items(State(), Window()):
        try:
            for record in connector.fetch(item):
                out[record.source_id] = record
        except BadRecordError as exc:
            out[item.source_id] = exc
    return out


def test_ct_with_timezone_offset_and_rendered_image(tmp_path: Path) -> None:
    original = (tmp_path / "CT_small.dcm")
    record = _records(_corpus(tmp_path, "CT_small.dcm"))["CT_small.dcm"]
    assert not isinstance(record, Exception)
    # AcquisitionDate/Time 19970430 112936 with TimezoneOffsetFromUTC -0500, moved by the patient's shift
    shift = timedelta(days=_pseudonyms().date_shift_days("1CT1"))
    assert record.event_time == datetime(1997, 4, 30, 16, 29, 36, tzinfo=UTC) - shift  # type: ignore[attr-defined]
    assert record.event_time_origin == "acquisition+offset+date-shifted"  # type: ignore[attr-defined]
    roles = {o.role: o for o in record.objects}  # type: ignore[attr-defined]
    stored = pydicom.dcmread(io.BytesIO(roles["dicom"].data))
    assert roles["dicom"].data != original.read_bytes() and b"CompressedSamples" not in roles["dicom"].data
    assert stored.PatientIdentityRemoved == "YES" and stored.AcquisitionTime == "112936"
    image = Image.open(io.BytesIO(roles["image"].data))
    assert image.size == (128, 128) and image.mode == "L"
    low, high = image.getextrema()
    assert (low, high) == (0, 255)  # windowed to the full 8-bit range
    assert record.keys["patient_id"] == _pseudonyms().patient_id("1CT1")  # type: ignore[attr-defined]
    assert record.keys["sop_uid"] == stored.SOPInstanceUID  # type: ignore[attr-defined]
    assert record.metadata["modality"] == "CT" and record.metadata["deidentified"]  # type: ignore[attr-defined]


def test_without_deidentification_the_original_bytes_are_kept(tmp_path: Path) -> None:
    record = _records(_corpus(tmp_path, "CT_small.dcm"), deid={"enabled": False})["CT_small.dcm"]
    assert not isinstance(record, Exception)
    assert record.objects[0].data == (tmp_path / "CT_small.dcm").read_bytes()  # type: ignore[attr-defined]
    assert record.keys["patient_id"] == "1CT1"  # type: ignore[attr-defined]
    assert record.event_time_origin == "acquisition+offset"  # type: ignore[attr-defined]


def test_multi_frame_instances_give_one_record_per_selected_frame(tmp_path: Path) -> None:
    """examples_ybr_color.dcm: 30 ultrasound frames, Frame Time 33.333 ms."""
    name = "examples_ybr_color.dcm"
    records = _records(_corpus(tmp_path, name), max_frames=4)
    frames: dict[str, Any] = {k: v for k, v in records.items() if not isinstance(v, Exception)}
    assert sorted(frames) == [name, f"{name}/frame-00010", f"{name}/frame-00019", f"{name}/frame-00029"]
    first, last = frames[name], frames[f"{name}/frame-00029"]
    assert [o.role for o in first.objects] == ["dicom", "image"]
    assert [o.role for o in last.objects] == ["image"] and last.keys["frame"] == "29"
    assert last.event_time - first.event_time == timedelta(milliseconds=29 * 33.333)
    assert Image.open(io.BytesIO(last.objects[0].data)).mode == "RGB"
    assert list(_records(tmp_path, frames="first")) == [name]


def test_site_timezone_applies_without_an_offset_and_header_only_mode(tmp_path: Path) -> None:
    records = _records(_corpus(tmp_path, "rtplan.dcm", "MR_small.dcm"), timezone="Europe/Berlin", render=False)
    plan = records["rtplan.dcm"]
    assert not isinstance(plan, Exception)
    assert plan.event_time_origin == "study+site-timezone+date-shifted"  # type: ignore[attr-defined]
    assert [o.role for o in records["MR_small.dcm"].objects] == ["dicom"]  # type: ignore[attr-defined]
    header = _records(tmp_path, header_only=True)["MR_small.dcm"]
    stored = pydicom.dcmread(io.BytesIO(header.objects[0].data))  # type: ignore[attr-defined]
    assert "PixelData" not in stored and stored.PatientIdentityRemoved == "YES"


def test_dicomdir_lists_the_files_it_references(tmp_path: Path) -> None:
    source = Path(get_testdata_file("DICOMDIR", download=False) or "").parent
    shutil.copytree(source, tmp_path / "media")
    connector = load_connector("dicom_files", {"root": str(tmp_path / "media"), "source": "media"})
    items = list(connector.list_items(State(), Window()))
    assert len(items) == 31 and items[0].source_id == "77654033/CR1/6154"
    [record] = connector.fetch(items[0])
    assert record.metadata["modality"] == "CR" and record.keys["study_uid"].startswith("2.25.")


@pytest.mark.parametrize("cut", [400, 1000, -500])
def test_truncated_files_are_bad_records(tmp_path: Path, cut: int) -> None:
    data = Path(get_testdata_file("CT_small.dcm", download=False) or "").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:cut])
    result = _records(tmp_path)["cut.dcm"]
    assert isinstance(result, BadRecordError)
    assert result.payload is None  # identified bytes that cannot be de-identified are not kept


def test_non_dicom_and_no_header_files_are_bad_records_and_text_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "scan.dcm").write_bytes(b"this is not a DICOM file at all" * 10)
    (tmp_path / "README.txt").write_text("notes")
    _corpus(tmp_path, "no_meta.dcm")
    records = _records(tmp_path)
    assert set(records) == {"scan.dcm", "no_meta.dcm"}
    assert all(isinstance(r, BadRecordError) for r in records.values())


def test_dicom_time_values() -> None:
    berlin = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    assert parse_da("20260304") == datetime(2026, 3, 4).date() and parse_da("2026.03.04") is not None
    assert parse_da("2026-03") is None
    assert parse_tm("101530.25").microsecond == 250000  # type: ignore[union-attr]
    assert parse_tm("10:15:30") is not None and parse_tm("2561") is None
    assert parse_dt("20260304101500+0100", berlin) == datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    assert parse_dt("20260704101500", berlin) == datetime(2026, 7, 4, 8, 15, tzinfo=UTC)
