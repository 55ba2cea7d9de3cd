"""The DICOMweb connector against a real Orthanc (QIDO-RS + WADO-RS), and its HTTP error mapping offline."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from PIL import Image
from pydantic import SecretStr

from connectors.dicomweb import DicomWebConnector, multipart_parts
from connectors.sdk import Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from rosetta.core.pseudonyms import Pseudonymizer
from rosetta.devservices.orthanc import Orthanc
from rosetta.devservices.ports import free_port_block
from tests.dicom_network_fixtures import (
    BUNDLED,
    bundled_bytes,
    copy_of,
    public_uid,
    short_pixels,
    unique_patient,
    upload,
)

pytestmark = pytest.mark.integration


def _options(orthanc: Orthanc, **extra: Any) -> dict[str, Any]:
    return {"source": "pacs_web", "url": orthanc.dicomweb_url, "auth": "basic", "username": orthanc.username,
            "password": SecretStr(orthanc.password), "timezone": "America/New_York", **extra}


def _sop(name: str) -> str:
    return str(pydicom.dcmread(io.BytesIO(bundled_bytes(name)), stop_before_pixels=True).SOPInstanceUID)


def test_records_are_the_same_as_the_dicom_files_connector_makes(orthanc: Orthanc, tmp_path: Path) -> None:
    for name in BUNDLED:
        (tmp_path / name).write_bytes(bundled_bytes(name))
    files = load_connector("dicom_files", {"root": str(tmp_path), "source": "pacs_web",
                                           "timezone": "America/New_York"})
    expected = {record.source_id: record for item in files.list_items(State(), Window())
                for record in files.fetch(item)}
    with load_connector("dicomweb", _options(orthanc, page_size=3)) as connector:
        connector.check()
        items = {item.source_id: item for item in connector.list_items(State(), Window())}
        assert {public_uid(_sop(name)) for name in BUNDLED} <= set(items)  # paged by 3: all four arrive
        for name in BUNDLED:
            [record] = connector.fetch(items[public_uid(_sop(name))])
            want = expected[name]
            uid = public_uid(_sop(name))  # de-identified: the instance's new UID
            assert record.source_id == uid and record.sample_id == f"pacs_web/{uid}"
            assert [(o.role, o.media_type, o.data) for o in record.objects] == \
                   [(o.role, o.media_type, o.data) for o in want.objects]  # same de-identified bytes, same PNG
            assert (record.event_time, record.event_time_origin, dict(record.keys), dict(record.metadata)) == \
                   (want.event_time, want.event_time_origin, dict(want.keys), dict(want.metadata))
    ct = expected["CT_small.dcm"]
    shift = timedelta(days=Pseudonymizer(os.environ["ROSETTA_DEID_KEY"]).date_shift_days("1CT1"))
    assert ct.event_time == datetime(1997, 4, 30, 16, 29, 36, tzinfo=UTC) - shift
    assert Image.open(io.BytesIO(ct.objects[1].data)).size == (128, 128)
    assert expected["JPEG2000.dcm"].metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.91"


def test_state_is_the_set_of_committed_instances_whatever_their_dates(orthanc: Orthanc) -> None:
    patient = unique_patient("web-state")
    with load_connector("dicomweb", _options(orthanc, filters={"PatientID": patient})) as connector:
        assert connector.list_items(State(), Window()) == []  # nothing for this patient yet
        first, data = copy_of("CT_small.dcm", patient)
        upload(orthanc.url, orthanc.auth, data)
        state = State().advance(connector.list_items(State(), Window()))
        assert state.seen_at_cursor == {public_uid(first)}
        older, data = copy_of("rtplan.dcm", patient)  # a study years older than the committed one
        upload(orthanc.url, orthanc.auth, data)
        assert [item.source_id for item in connector.list_items(state, Window())] == [public_uid(older)]


def test_window_selects_by_study_date_and_time_in_utc(orthanc: Orthanc) -> None:
    # CT_small: StudyDate 20040119, StudyTime 072730, TimezoneOffsetFromUTC -0500 -> 12:27:30 UTC
    ct = public_uid(_sop("CT_small.dcm"))  # windows select by the archive's (original) dates
    with load_connector("dicomweb", _options(orthanc, filters={"PatientID": "1CT1"})) as connector:
        inside = Window(datetime(2004, 1, 19, 12, 27, 30, tzinfo=UTC), datetime(2004, 1, 19, 12, 28, tzinfo=UTC))
        before = Window(datetime(2004, 1, 19, 0, 0, tzinfo=UTC), datetime(2004, 1, 19, 12, 27, 30, tzinfo=UTC))
        assert [item.source_id for item in connector.list_items(State(), inside)] == [ct]
        assert ct not in {item.source_id for item in connector.list_items(State(), before)}


def test_wrong_credentials_and_unreachable_server_are_config_errors(orthanc: Orthanc) -> None:
    with pytest.raises(ConfigError, match=r"HTTP 401.*username/password"):
        load_connector("dicomweb", _options(orthanc, password=SecretStr("nope"))).check()
    closed = free_port_block(1)
    with pytest.raises(ConfigError, match=f"127.0.0.1:{closed}/dicom-web is unreachable"):
        load_connector("dicomweb", _options(orthanc, url=f"http://127.0.0.1:{closed}/dicom-web")).check()


def test_undecodable_pixels_are_a_bad_record_that_keeps_the_bytes(orthanc: Orthanc) -> None:
    patient = unique_patient("web-bad")
    sop, data = copy_of("CT_small.dcm", patient, short_pixels)
    upload(orthanc.url, orthanc.auth, data)  # Orthanc stores it: it does not check pixel data
    with load_connector("dicomweb", _options(orthanc, filters={"PatientID": patient})) as connector:
        [item] = connector.list_items(State(), Window())
        with pytest.raises(BadRecordError, match="cannot decode pixel data") as caught:
            connector.fetch(item)
    payload = caught.value.payload or b""
    assert caught.value.source_id == public_uid(sop) and sop not in caught.value.reason
    assert pydicom.dcmread(io.BytesIO(payload)).PatientIdentityRemoved == "YES"  # kept, de-identified
    assert patient.encode() not in payload and sop.encode() not in payload and data != payload


def _offline(handler: Any, sleeps: list[float], **extra: Any) -> DicomWebConnector:
    config = DicomWebConnector.config_class.model_validate(
        {"source": "offline", "url": "http://pacs.example/dicom-web", "max_retries": 2, **extra})
    return DicomWebConnector(config, transport=httpx.MockTransport(handler), sleep=sleeps.append)


ITEM = Item(source_id="1.2.3", cursor=0, ref={"study": "1", "series": "1.2", "sop_class": ""})


def test_http_errors_map_to_the_error_tree_offline() -> None:
    sleeps: list[float] = []
    calls: list[httpx.Request] = []

    def answer(status: int, **kwargs: Any) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return httpx.Response(status, **kwargs)
        return handler

    with pytest.raises(RetriableError, match=r"3 tries.*HTTP 503"):
        list(_offline(answer(503), sleeps).list_items(State(), Window()))
    assert sleeps == [0.5, 1.0]
    with pytest.raises(RetriableError, match="HTTP 429"):
        _offline(answer(429), sleeps).fetch(ITEM)
    with pytest.raises(ConfigError, match=r"HTTP 403.*token"):
        _offline(answer(403), sleeps, auth="bearer", token=SecretStr("s3cret")).fetch(ITEM)
    assert calls[-1].headers["Authorization"] == "Bearer s3cret"
    with pytest.raises(BadRecordError, match="left the archive"):
        _offline(answer(404), sleeps).fetch(ITEM)
    assert _offline(answer(204), sleeps).list_items(State(), Window()) == []  # QIDO: no match
    single = _offline(answer(200, content=bundled_bytes("MR_small.dcm"), headers={"Content-Type": "application/dicom"}),
                      sleeps)
    [record] = single.fetch(ITEM)
    pseudonyms = Pseudonymizer(os.environ["ROSETTA_DEID_KEY"])
    assert record.keys["patient_id"] == pseudonyms.patient_id("4MR1") and b"4MR1" not in record.objects[0].data


def test_multipart_parts_reads_each_body_whole() -> None:
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\nAB\r\n--CD\r\n--b1\r\n\r\nEF\r\n--b1--\r\n"
    assert multipart_parts('multipart/related; type="application/dicom"; boundary="b1"', body) == \
           [b"AB\r\n--CD", b"EF"]
