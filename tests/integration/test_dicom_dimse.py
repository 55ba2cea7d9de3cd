"""The DIMSE connector against a real Orthanc: C-FIND + C-GET, and the C-STORE receiver's spool."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE

from connectors.dicom_dimse import VERIFICATION, DicomStoreReceiver
from connectors.sdk import Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from rosetta.core.pseudonyms import Pseudonymizer
from rosetta.devservices.orthanc import Orthanc
from rosetta.devservices.ports import free_port_block
from tests.dicom_network_fixtures import (
    BUNDLED,
    RECEIVER,
    bundled_bytes,
    copy_of,
    public_uid,
    short_pixels,
    unique_patient,
    upload,
)

pytestmark = pytest.mark.integration


def _options(orthanc: Orthanc, **extra: Any) -> dict[str, Any]:
    return {"source": "pacs_dimse", "host": "127.0.0.1", "port": orthanc.dicom_port, "called_ae": orthanc.ae_title,
            "calling_ae": "ROSETTA", "timezone": "America/New_York", "connect_timeout_s": 2, **extra}


def _dataset(data: bytes) -> Any:
    return pydicom.dcmread(io.BytesIO(data))


def _elements(ds: Any) -> dict[Any, Any]:
    return {element.tag: element for element in ds if element.keyword != "DataSetTrailingPadding"}


def test_c_find_and_c_get_give_the_dicom_files_records_in_the_stored_transfer_syntax(orthanc: Orthanc,
                                                                                     tmp_path: Path) -> None:
    for name in BUNDLED:
        (tmp_path / name).write_bytes(bundled_bytes(name))
    files = load_connector("dicom_files", {"root": str(tmp_path), "source": "pacs_dimse",
                                           "timezone": "America/New_York"})
    expected = {record.keys["sop_uid"]: record for item in files.list_items(State(), Window())
                for record in files.fetch(item)}
    connector = load_connector("dicom_dimse", _options(orthanc))
    connector.check()
    items = {item.source_id: item for item in connector.list_items(State(), Window())}
    assert set(expected) <= set(items)
    for sop, want in expected.items():
        [record] = connector.fetch(items[sop])
        assert record.source_id == sop
        assert (record.event_time, record.event_time_origin, dict(record.keys), dict(record.metadata)) == \
               (want.event_time, want.event_time_origin, dict(want.keys), dict(want.metadata))
        assert [(o.role, o.data) for o in record.objects[1:]] == [(o.role, o.data) for o in want.objects[1:]]  # PNG
        got, original = _dataset(record.objects[0].data), _dataset(want.objects[0].data)
        # every element as stored (the file meta is the receiver's own; DCMTK drops trailing padding)
        assert _elements(got) == _elements(original)
        assert got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID  # JPEG 2000 stays JPEG 2000


def test_filters_state_and_window(orthanc: Orthanc) -> None:
    patient = unique_patient("dimse-state")
    connector = load_connector("dicom_dimse", _options(orthanc, filters={"PatientID": patient}))
    assert connector.list_items(State(), Window()) == []
    first, data = copy_of("CT_small.dcm", patient)
    upload(orthanc.url, orthanc.auth, data)
    state = State().advance(connector.list_items(State(), Window()))
    older, data = copy_of("rtplan.dcm", patient)  # an older study arriving later is still new
    upload(orthanc.url, orthanc.auth, data)
    assert [item.source_id for item in connector.list_items(state, Window())] == [public_uid(older)]
    # CT_small's study: 20040119 072730 at -0500 = 12:27:30 UTC
    ct_only = Window(datetime(2004, 1, 19, 12, 0, tzinfo=UTC), datetime(2004, 1, 19, 13, 0, tzinfo=UTC))
    assert [item.source_id for item in connector.list_items(State(), ct_only)] == [public_uid(first)]


def test_failed_retrievals_are_bad_records(orthanc: Orthanc) -> None:
    patient = unique_patient("dimse-bad")
    sop, data = copy_of("CT_small.dcm", patient, short_pixels)
    upload(orthanc.url, orthanc.auth, data)
    connector = load_connector("dicom_dimse", _options(orthanc, filters={"PatientID": patient}))
    [item] = connector.list_items(State(), Window())
    with pytest.raises(BadRecordError, match="cannot decode pixel data") as caught:
        connector.fetch(item)
    kept = _dataset(caught.value.payload or b"")  # the de-identified instance is what quarantine keeps
    assert caught.value.source_id == public_uid(sop) and len(kept.PixelData) == 1000
    assert kept.PatientIdentityRemoved == "YES" and kept.SOPInstanceUID == public_uid(sop)
    reader = connector.reader  # type: ignore[attr-defined]
    ref = reader.unseal(item.ref)
    assert ref["sop"] == sop and sop not in str(item.ref)  # the plan holds the original UIDs sealed
    gone = Item(source_id="2.25.1", cursor=0, ref=reader.seal({**ref, "sop": "1.2.3.4.5.6"}))
    with pytest.raises(BadRecordError, match="delivered no instance"):
        connector.fetch(gone)
    with pytest.raises(BadRecordError, match="SOP Class UID"):
        connector.fetch(Item(source_id=item.source_id, cursor=0, ref=reader.seal({**ref, "sop_class": ""})))


def test_rejected_or_unreachable_peers_are_config_errors_naming_the_peer(orthanc: Orthanc) -> None:
    picky = AE(ae_title="PICKY")
    picky.add_supported_context(VERIFICATION)
    picky.require_calling_aet = ["SOMEONE"]
    server = picky.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    try:
        port = server.server_address[1]
        options = _options(orthanc, port=port, called_ae="PICKY")
        with pytest.raises(ConfigError, match=f"PICKY@127.0.0.1:{port} \\(calling AE ROSETTA\\) rejected"):
            load_connector("dicom_dimse", options).check()
    finally:
        server.shutdown()
    closed = free_port_block(1)
    connector = load_connector("dicom_dimse", _options(orthanc, port=closed))
    with pytest.raises(ConfigError, match=f"ORTHANC@127.0.0.1:{closed}.*cannot be reached"):
        connector.list_items(State(), Window())
    with pytest.raises(RetriableError, match="could not be reached"):  # it answered when the item was listed
        connector.fetch(Item(source_id="1.2.3", cursor=0, ref={"study": "1", "series": "1.2", "sop_class": "1.2"}))


def test_receiver_spools_what_orthanc_sends_and_the_connector_lists_it(orthanc: Orthanc, tmp_path: Path) -> None:
    ae_title, _, port = orthanc.modalities[RECEIVER]
    patient = unique_patient("dimse-push")
    sent = {}
    for name in ("CT_small.dcm", "JPEG2000.dcm"):
        sop, data = copy_of(name, patient)
        sent[sop] = upload(orthanc.url, orthanc.auth, data)["ID"]
    spool = tmp_path / "spool"
    connector = load_connector("dicom_dimse", {"source": "pushed", "mode": "spool", "spool_dir": str(spool)})
    with pytest.raises(ConfigError, match="spool_dir"):
        connector.check()  # no receiver has made the folder yet
    with DicomStoreReceiver(spool, ae_title=ae_title, port=port) as receiver:
        orthanc.send_to_modality(RECEIVER, list(sent.values()))
        assert receiver.received == 2
        assert sorted(p.name for p in spool.iterdir()) == sorted([".incoming", *(f"{sop}.dcm" for sop in sent)])
        assert list((spool / ".incoming").iterdir()) == []  # no partial files left behind
        items = connector.list_items(State(), Window())
        assert [item.source_id for item in items] == sorted(public_uid(sop) for sop in sent)
        records = [record for item in items for record in connector.fetch(item)]
        assert {r.keys["sop_uid"] for r in records} == {public_uid(sop) for sop in sent}
        assert {r.keys["patient_id"] for r in records} == \
               {Pseudonymizer(os.environ["ROSETTA_DEID_KEY"]).patient_id(patient)}
        assert all(r.object("image") is not None for r in records)
        state = State().advance(items)
        orthanc.send_to_modality(RECEIVER, [sent[sorted(sent)[0]]])  # sent again: same file, nothing new
        assert receiver.received == 3 and connector.list_items(state, Window()) == []
        newer, data = copy_of("MR_small.dcm", patient)
        orthanc.send_to_modality(RECEIVER, [upload(orthanc.url, orthanc.auth, data)["ID"]])
        assert [item.source_id for item in connector.list_items(state, Window())] == [public_uid(newer)]
