"""PS3.15 Annex E de-identification: every table action, the options, determinism, private tags, burned-in text."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from rosetta.core.errors import ConfigError
from transforms.dicom.deid import (
    DUMMY,
    EMPTY,
    KEEP,
    REMOVE,
    SHIFT,
    UID,
    BurnedInAnnotationError,
    DeidConfig,
    Deidentifier,
    PixelCleaningRule,
    profile_table,
    resolve_action,
)

KEY = "unit-test-key-0123456789abcdef"


def _deid(**options: Any) -> Deidentifier:
    return Deidentifier(DeidConfig(key=KEY, **options))  # type: ignore[arg-type]


def _ct() -> Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _saved(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_the_bundled_table_is_the_2026c_edition_with_every_row_usable() -> None:
    table = profile_table()
    assert "2026c" in table.edition
    assert len(table.exact) > 600  # 656 rows, four of them patterns or the private-attribute row
    assert {(hex(m), hex(v)) for m, v, *_ in table.masked} == {
        ("0xff000000", "0x50000000"), ("0xff00ffff", "0x60003000"), ("0xff00ffff", "0x60004000")}
    for basic, options in table.exact.values():
        action, _ = resolve_action(basic, options, frozenset())
        assert action in (REMOVE, EMPTY, DUMMY, UID, KEEP), basic
    assert table.exact[0x00100010][0] == "Z" and table.exact[0x00080018][0] == "U"


_VALUES: dict[str, Any] = {
    "AE": "SCANNER01", "AS": "042Y", "AT": 0x00100010, "CS": "VALUE", "DA": "20200315", "DS": "1.5",
    "DT": "20200315101112", "FL": 1.5, "FD": 1.5, "IS": "7", "LO": "Some Text", "LT": "Long text",
    "OB": b"\x01\x02", "OD": b"\x01" * 8, "OF": b"\x01" * 4, "OL": b"\x01" * 4, "OV": b"\x01" * 8, "OW": b"\x01\x02",
    "PN": "Doe^Jane", "SH": "Short", "SL": 7, "SS": 7, "ST": "Short text", "SV": 7, "TM": "101112", "UC": "Unlimited",
    "UI": "1.2.826.0.1.3680043.99.1", "UL": 7, "UN": b"\x01\x02", "UR": "http://example.org/x", "US": 7,
    "UT": "Unlimited text", "UV": 7,
}


def _table_cases() -> list[tuple[int, str, str, dict[str, str]]]:
    cases = []
    for tag, (basic, options) in sorted(profile_table().exact.items()):
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        if (tag >> 16) == 0x0002 or (vr not in _VALUES and vr != "SQ"):
            continue
        cases.append((tag, vr, basic, options))
    return cases


@pytest.mark.parametrize(("tag", "vr", "basic", "options"), _table_cases(), ids=lambda v: f"{v:08X}"
                         if isinstance(v, int) else None)
def test_every_table_action_is_applied(tag: int, vr: str, basic: str, options: dict[str, str]) -> None:
    """Each attribute of Table E.1-1, alone in a dataset, ends as its resolved action says."""
    deid = _deid()
    ds = Dataset()
    ds.PatientID = "PAT-1"
    if vr == "SQ":
        item = Dataset()
        item.PatientName = "Nested^Name"
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.2"
        ds.add_new(tag, "SQ", Sequence([item]))
    else:
        ds.add_new(tag, vr, _VALUES[vr])
    original = ds[tag].value
    columns = frozenset({"rtnLongModifDatesOpt"})
    action, fallback = resolve_action(basic, options, columns)
    if action == SHIFT and (vr == "TM" or tag == 0x00080201):
        action = KEEP
    elif action == SHIFT and vr not in ("DA", "DT"):
        action = fallback
    deid.deidentify(ds)
    if tag in (0x00100020, 0x00100010, 0x00080050):  # linkable pseudonyms
        assert ds[tag].value and ds[tag].value != original
    elif action == REMOVE:
        assert tag not in ds
    elif action == EMPTY:
        assert tag in ds and ds[tag].value in (None, "", b"", [], Sequence())
    elif action == DUMMY:
        assert tag in ds
        assert ds[tag].value != original or vr == "SQ"
        if vr == "SQ":
            assert len(ds[tag].value) == 0
    elif action == UID:
        if vr == "SQ":
            assert ds[tag].value[0].ReferencedSOPInstanceUID.startswith("2.25.")
            assert ds[tag].value[0].get("PatientName") != "Nested^Name"
        else:
            assert str(ds[tag].value).startswith("2.25.") or ds[tag].value in (None, "")
    elif action == SHIFT:
        assert str(ds[tag].value) != str(original) and str(ds[tag].value)[8:] == str(original)[8:]
    else:  # KEEP
        if vr == "SQ":  # kept, but what it holds is de-identified too
            assert ds[tag].value[0].ReferencedSOPInstanceUID.startswith("2.25.")
            assert ds[tag].value[0].get("PatientName") != "Nested^Name"
        else:
            assert ds[tag].value == original


def test_real_instance_leaves_no_identifier_in_the_written_bytes() -> None:
    ds = _ct()
    originals = [str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                 ds.FrameOfReferenceUID, ds.InstitutionName, ds.StudyDate, ds.StationName]
    study_day = date(int(ds.StudyDate[:4]), int(ds.StudyDate[4:6]), int(ds.StudyDate[6:]))
    result = _deid().deidentify(ds)
    data = _saved(ds)
    for value in originals:
        assert value.encode() not in data, value
    assert result.date_shift_days is not None and 1 <= result.date_shift_days <= 3650
    assert ds.StudyDate == (study_day - timedelta(days=result.date_shift_days)).strftime("%Y%m%d")
    assert ds.StudyTime  # time of day kept with modified dates
    assert ds.TimezoneOffsetFromUTC == "-0500"
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PatientName == f"ANON^{ds.PatientID}"
    again = pydicom.dcmread(io.BytesIO(data))
    assert again.SOPInstanceUID == ds.SOPInstanceUID


def test_pseudonyms_are_deterministic_per_key_and_consistent_per_patient() -> None:
    first, second = _ct(), _ct()
    _deid().deidentify(first)
    _deid().deidentify(second)
    assert (first.SOPInstanceUID, first.PatientID, first.StudyDate) == \
        (second.SOPInstanceUID, second.PatientID, second.StudyDate)
    other_key = _ct()
    Deidentifier(DeidConfig(key="another-key-0123456789abcdef")).deidentify(other_key)  # type: ignore[arg-type]
    assert other_key.SOPInstanceUID != first.SOPInstanceUID and other_key.PatientID != first.PatientID
    # another study of the same patient: the same shift, the same pseudonym, another study UID
    later = _ct()
    later.StudyInstanceUID = "1.2.826.0.1.3680043.99.77"
    later.StudyDate = "20050101"
    result = _deid().deidentify(later)
    assert later.PatientID == first.PatientID and later.StudyInstanceUID != first.StudyInstanceUID
    assert later.StudyDate == (date(2005, 1, 1) - timedelta(days=result.date_shift_days or 0)).strftime("%Y%m%d")


def test_references_to_another_instance_map_to_its_new_uid() -> None:
    referenced, referring = _ct(), _ct()
    item = Dataset()
    item.ReferencedSOPClassUID = referenced.SOPClassUID
    item.ReferencedSOPInstanceUID = referenced.SOPInstanceUID
    referring.ReferencedImageSequence = Sequence([item])
    referring.SOPInstanceUID = "1.2.826.0.1.3680043.99.3"
    deid = _deid()
    deid.deidentify(referenced)
    deid.deidentify(referring)
    ref = referring.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == referenced.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # a class UID is not an identifier


def test_options_keep_what_they_name() -> None:
    plain, kept = _ct(), _ct()
    _deid().deidentify(plain)
    _deid(retain_patient_characteristics=True, retain_device_identity=True,
          retain_institution_identity=True).deidentify(kept)
    assert plain.get("PatientSex") in (None, "") and "PatientAge" not in plain  # Z and X
    assert kept.PatientSex == "O" and kept.PatientAge == "000Y"
    assert plain.InstitutionName == "ANONYMIZED" and kept.InstitutionName == "JFK IMAGING CENTER"
    codes = [item.CodeValue for item in kept.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113109", "113112", "113108", "113107"]
    full = _ct()
    _deid(retain_modified_dates=False, retain_full_dates=True).deidentify(full)
    assert full.StudyDate == "20040119" and full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    removed = _ct()
    _deid(retain_modified_dates=False).deidentify(removed)
    assert removed.get("StudyDate") in (None, "") and removed.LongitudinalTemporalInformationModified == "REMOVED"
    with pytest.raises(ValueError, match="exclude each other"):
        DeidConfig(key=KEY, retain_full_dates=True)  # type: ignore[arg-type]


def test_private_attributes_go_unless_on_the_safe_list() -> None:
    def with_private() -> Dataset:
        ds = _ct()
        block = ds.private_block(0x0033, "ACME_SAFE", create=True)
        block.add_new(0x10, "DS", "2.5")
        block.add_new(0x11, "LO", "Operator Jane Doe")
        ds.private_block(0x0033, "ACME_OTHER", create=True).add_new(0x10, "LO", "MRN 12345")
        return ds

    ds = with_private()
    _deid().deidentify(ds)
    assert not [elem for elem in ds if elem.tag.is_private]
    safe = with_private()
    _deid(safe_private=["0033,ACME_SAFE,10"]).deidentify(safe)
    private = {(elem.tag.group, elem.tag.element): elem.value for elem in safe if elem.tag.is_private}
    assert private == {(0x0033, 0x0010): "ACME_SAFE", (0x0033, 0x1010): "2.5"}
    assert "113111" in [item.CodeValue for item in safe.DeidentificationMethodCodeSequence]
    with pytest.raises(ValueError, match="not private"):
        DeidConfig(key=KEY, safe_private=["0018,X,10"])  # type: ignore[arg-type]


def test_burned_in_annotation_needs_a_cleaning_rule() -> None:
    ds = _ct()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationError, match="pixel_cleaning"):
        _deid().deidentify(ds)
    rule = PixelCleaningRule(modality="CT", rows=128, columns=128, boxes=[(0, 0, 40, 10)])
    cleaned = _ct()
    cleaned.BurnedInAnnotation = "YES"
    result = _deid(pixel_cleaning=[rule]).deidentify(cleaned)
    pixels = cleaned.pixel_array
    assert result.pixels_cleaned and cleaned.BurnedInAnnotation == "NO"
    assert np.all(pixels[0:10, 0:40] == pixels.min()) and not np.all(pixels[10:, 40:] == pixels.min())
    assert "113101" in [item.CodeValue for item in cleaned.DeidentificationMethodCodeSequence]
    other = PixelCleaningRule(manufacturer="Nobody", boxes=[(0, 0, 1, 1)])
    unmatched = _ct()
    unmatched.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationError):
        _deid(pixel_cleaning=[other]).deidentify(unmatched)


def test_the_key_must_exist_and_be_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROSETTA_DEID_KEY", raising=False)
    with pytest.raises(ConfigError, match="rosetta_deid"):
        Deidentifier(DeidConfig())
    with pytest.raises(ConfigError, match="too short"):
        Deidentifier(DeidConfig(key="short"))  # type: ignore[arg-type]
    monkeypatch.setenv("ROSETTA_DEID_KEY", KEY)
    assert Deidentifier(DeidConfig()).pseudonyms.uid("1.2.3") == _deid().pseudonyms.uid("1.2.3")


def test_unlisted_person_names_and_instance_uids_do_not_survive() -> None:
    ds = _ct()
    ds.add_new(0x00400006, "PN", "Performing^Physician")  # Scheduled Performing Physician's Name
    ds.add_new(0x00209161, "UI", "1.2.826.0.1.3680043.99.4")  # Concatenation UID
    _deid().deidentify(ds)
    data = _saved(ds)
    assert b"Performing^Physician" not in data and b"1.2.826.0.1.3680043.99.4" not in data
