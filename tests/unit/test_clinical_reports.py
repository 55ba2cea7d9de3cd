from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.clinical_reports import parse_hl7_time
from connectors.sdk import Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError
from tests.fixtures_clinical import fhir_report, ndjson, oru


def _connector(root: Path, **kw: object):  # type: ignore[no-untyped-def]
    return load_connector("clinical_reports", {"root": str(root), "source": "reports", **kw})


def _fetch(connector, item: Item):  # type: ignore[no-untyped-def]
    [record] = connector.fetch(item)
    return record


def test_fhir_diagnostic_report_with_keys_and_utc_time(tmp_path: Path) -> None:
    (tmp_path / "export.ndjson").write_bytes(ndjson(
        fhir_report("r1", presented="Impression: normal study."), fhir_report("r2", accession="ACC-7")))
    connector = _connector(tmp_path)
    items = list(connector.list_items(State(), Window()))
    assert [i.source_id for i in items] == ["fhir/r1", "fhir/r2"]
    record = _fetch(connector, items[0])
    assert record.keys == {"patient_id": "p-001", "accession": "ACC-1001"}
    assert record.event_time == datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    assert record.text == "No acute findings.\nImpression: normal study."
    assert record.objects[0].media_type == "application/fhir+json"
    assert _fetch(connector, items[1]).keys["accession"] == "ACC-7"


def test_hl7_oru_message(tmp_path: Path) -> None:
    (tmp_path / "feed.hl7").write_bytes(oru("MSG1") + oru("MSG2", lines=("Pneumothorax \\F\\ left.",)))
    connector = _connector(tmp_path, timezone="Europe/Berlin")
    items = list(connector.list_items(State(), Window()))
    assert [i.source_id for i in items] == ["hl7/MSG1", "hl7/MSG2"]
    first = _fetch(connector, items[0])
    assert first.keys == {"patient_id": "p-002", "accession": "ACC-2002"}
    assert first.event_time == datetime(2026, 3, 4, 9, 15, tzinfo=UTC)  # 10:15 in Berlin (CET)
    assert first.text == "CHEST X-RAY\nLungs are clear."
    assert _fetch(connector, items[1]).text == "Pneumothorax | left."


def test_hl7_times() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_hl7_time("20260704101500", berlin) == datetime(2026, 7, 4, 8, 15, tzinfo=UTC)  # CEST
    assert parse_hl7_time("20260304101500-0500", berlin) == datetime(2026, 3, 4, 15, 15, tzinfo=UTC)
    assert parse_hl7_time("202603041015", berlin) == datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    assert parse_hl7_time("20260304101500.25", berlin).microsecond == 250000
    with pytest.raises(ValueError, match="not an HL7 timestamp"):
        parse_hl7_time("2026-03-04", berlin)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("a.ndjson", b"{not json\n", "is not JSON"),
    ("a.ndjson", ndjson({"resourceType": "DiagnosticReport"}), "no resource id"),
    ("a.ndjson", ndjson({**fhir_report("x"), "resourceType": "Observation"}), "not DiagnosticReport"),
    ("a.ndjson", ndjson({**fhir_report("x"), "issued": "yesterday", "effectiveDateTime": None}), "ISO 8601"),
    ("a.ndjson", ndjson(fhir_report("x", text="")), "no report text"),
    ("a.ndjson", ndjson({**fhir_report("x", text=""), "presentedForm": [{"contentType": "text/plain",
                                                                          "data": "@@@"}]}), "not base64"),
    ("a.hl7", oru("M1").replace(b"ORU^R01", b"ADT^A01"), r"not ORU\^R01"),
    ("a.hl7", oru("M1", observed="03/04/2026"), "not an HL7 timestamp"),
    ("a.hl7", oru("M1", lines=()), "no OBX-5 report text"),
    ("a.hl7", oru("").replace(b"ORU^R01||", b"ORU^R01||"), "no MSH-10 control id"),
])
def test_malformed_reports_are_bad_records(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    connector = _connector(tmp_path)
    [item] = list(connector.list_items(State(), Window()))
    with pytest.raises(BadRecordError, match=reason) as err:
        list(connector.fetch(item))
    assert err.value.payload


def test_other_files_are_ignored_and_listing_is_incremental(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a report")
    (tmp_path / "a.ndjson").write_bytes(ndjson(fhir_report("r1")))
    connector = _connector(tmp_path)
    state = State().advance(connector.list_items(State(), Window()))
    assert list(connector.list_items(state, Window())) == []


def test_pseudonymized_keys_and_times_join_with_deidentified_dicom(tmp_path: Path) -> None:
    """A report and a DICOM instance of the same patient and accession get the same keys and date shift."""
    import io
    import os
    from datetime import timedelta

    import pydicom
    from pydicom.data import get_testdata_file

    from rosetta.core.pseudonyms import Pseudonymizer

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "feed.hl7").write_bytes(oru("MSG1"))
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False) or "")
    ct.PatientID, ct.AccessionNumber = "p-002", "ACC-2002"
    (tmp_path / "dicom").mkdir()
    ct.save_as(tmp_path / "dicom" / "ct.dcm")
    reports = _connector(tmp_path / "reports", timezone="Europe/Berlin", pseudonymize_keys=True)
    [item] = reports.list_items(State(), Window())
    report = _fetch(reports, item)
    images = load_connector("dicom_files", {"root": str(tmp_path / "dicom"), "source": "ct"})
    [image] = images.fetch(next(iter(images.list_items(State(), Window()))))
    assert report.keys == {k: image.keys[k] for k in ("patient_id", "accession")}
    assert "p-002" not in report.keys.values() and "ACC-2002" not in report.keys.values()
    shift = timedelta(days=Pseudonymizer(os.environ["ROSETTA_DEID_KEY"]).date_shift_days("p-002"))
    assert report.event_time == datetime(2026, 3, 4, 9, 15, tzinfo=UTC) - shift
    assert report.event_time_origin == "obr+date-shifted"
    assert pydicom.dcmread(io.BytesIO(image.objects[0].data)).PatientID == report.keys["patient_id"]
