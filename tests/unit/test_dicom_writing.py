"""The fast DICOM writer writes exactly what pydicom's ``save_as`` writes, or hands the dataset to it."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import Tag

from rosetta.core.errors import BadRecordError
from transforms.dicom import writing
from transforms.dicom.deid import DeidConfig, Deidentifier, _text_bytes
from transforms.dicom.reading import read_instance

KEY = "unit-test-key-0123456789abcdef"
# pydicom's own test files (the bundled ones, never downloaded): every file, not only *.dcm
CORPUS = sorted(p for p in Path(get_testdata_file("CT_small.dcm", download=False) or "").parent.rglob("*")
                if p.is_file())


def _saved(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _read(data: bytes, name: str) -> pydicom.Dataset:
    return read_instance(data, name, validate_values=False).dataset


@pytest.mark.parametrize("deidentify", [False, True], ids=["as-read", "de-identified"])
def test_identical_bytes_to_pydicom_for_the_whole_corpus(deidentify: bool) -> None:
    deid = Deidentifier(DeidConfig(key=KEY))
    fast = compared = 0
    for path in CORPUS:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mine, theirs = _read(data, path.name), _read(data, path.name)
                if deidentify:
                    deid.deidentify(mine)
                    deid.deidentify(theirs)
            except Exception:  # unreadable or refused (burned-in text): other tests cover those
                continue
            fast += writing._fast_encoding(mine) is not None
            try:  # pydicom's save_as, retried with every element converted when a raw one has no VR
                expected: bytes | str = writing._write_all(theirs, path.name, "id")
            except BadRecordError:
                expected = "refused"
            try:
                got: bytes | str = writing.write_instance(mine, path.name, "id")
            except BadRecordError:
                got = "refused"
        assert got == expected, path.name
        compared += 1
    assert compared > 80 and fast > 0.8 * compared  # the fast path is the common one


def test_fast_path_copies_the_pixel_data_and_unchanged_elements() -> None:
    ds = _read(Path(get_testdata_file("CT_small.dcm") or "").read_bytes(), "CT_small.dcm")
    assert writing._fast_encoding(ds) == (False, True, False)
    ds.PatientName = "Changed^Name"  # a converted element goes through pydicom's element writer
    out = writing.write_instance(ds, "CT_small.dcm", "id")
    assert out == _saved(ds)
    again = pydicom.dcmread(io.BytesIO(out))
    assert again.PatientName == "Changed^Name" and again.PixelData == ds.PixelData


def test_encodings_the_fast_path_leaves_to_pydicom() -> None:
    deflated = _read(Path(get_testdata_file("image_dfl.dcm") or "").read_bytes(), "image_dfl.dcm")
    assert writing._fast_encoding(deflated) is None
    assert writing.write_instance(deflated, "image_dfl.dcm", "id") == _saved(deflated)
    ds = _read(Path(get_testdata_file("CT_small.dcm") or "").read_bytes(), "CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 192"  # a changed character set makes pydicom re-encode everything
    assert writing._fast_encoding(ds) is None
    assert writing.write_instance(ds, "CT_small.dcm", "id") == _saved(ds)
    ds = _read(Path(get_testdata_file("MR_small_bigendian.dcm") or "").read_bytes(), "MR_small_bigendian.dcm")
    assert writing._fast_encoding(ds) == (False, False, False)  # explicit big endian: raw values copied
    assert writing.write_instance(ds, "MR_small_bigendian.dcm", "id") == _saved(ds)


def test_unwritable_dataset_is_a_bad_record_naming_the_input() -> None:
    ds = _read(Path(get_testdata_file("CT_small.dcm") or "").read_bytes(), "CT_small.dcm")
    ds.add(DataElement(0x00091001, "XX", b"\x00\x01"))  # no writer knows this VR
    with pytest.raises(BadRecordError, match=r"scan-7\.dcm: the de-identified instance cannot be written"):
        writing.write_instance(ds, "scan-7.dcm", "id")


@pytest.mark.parametrize(("vr", "value"), [
    ("UI", "1.2.3"), ("UI", "2.25.1234"), ("UI", ["1.2.3", "1.2.34"]), ("DA", "20260101"), ("DT", "20260101120000.5"),
    ("TM", "101010"), ("LO", "PSEUDO-1"), ("SH", "ACC"), ("PN", "ANON^ABC"), ("CS", ["ORIGINAL", "PRIMARY"]),
    ("IS", "0"), ("DS", "0"), ("AS", "000D"), ("LO", None), ("UI", None), ("DA", [])])
def test_replacement_values_are_encoded_as_pydicom_encodes_them(vr: str, value: object) -> None:
    encoded = _text_bytes(vr, value)
    assert encoded is not None
    for little in (True, False):
        expected = DicomBytesIO()
        expected.is_implicit_VR, expected.is_little_endian = False, little
        write_data_element(expected, DataElement(0x00100020, vr, value))
        got = DicomBytesIO()
        got.is_implicit_VR, got.is_little_endian = False, little
        write_data_element(got, RawDataElement(Tag(0x00100020), vr, len(encoded), encoded, 0, False,
                                               little))
        assert got.getvalue() == expected.getvalue()


def test_non_ascii_and_binary_values_stay_data_elements() -> None:
    assert _text_bytes("PN", "Müller^Hans") is None
    assert _text_bytes("US", 0) is None
    assert _text_bytes("SQ", []) is None
