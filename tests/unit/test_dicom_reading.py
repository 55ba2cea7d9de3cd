"""read_instance on pydicom's bundled corpus and on malformed inputs made from it (byte surgery, pydicom writes)."""

from __future__ import annotations

import io
import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydicom
import pytest
from PIL import Image
from pydicom import config, dcmread, dcmwrite
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rosetta.core.errors import BadRecordError
from transforms.dicom.reading import DicomReadError, ReadResult, read_instance

CORPUS = Path(get_testdata_file("CT_small.dcm", download=False) or "").parent
# Every corpus file read_instance rejects, and why (kind).  All other files are read.
REJECTED = {
    "MR_truncated.dcm": "truncated",  # Pixel Data declares 8192 bytes, the file ends 1938 bytes in
    "rtplan_truncated.dcm": "truncated",  # (300A,00B0) declares 976 bytes, the file ends 265 bytes in
    "no_meta.dcm": "not-dicom",  # the bundled copy starts with a stray 0x20 byte, so nothing lines up
    "UN_sequence.dcm": "not-an-instance",  # a single UN sequence, a test fragment
    "empty_charset_LEI.dcm": "not-an-instance",  # charset test fragment: two elements
    "no_meta_group_length.dcm": "not-an-instance",  # meta test fragment: three elements
    "priv_SQ.dcm": "not-an-instance",  # private sequence fragment
    "dicomdirtests/DICOMDIR": "dicomdir",
    "dicomdirtests/DICOMDIR-bigEnd": "dicomdir",
    "dicomdirtests/DICOMDIR-empty.dcm": "dicomdir",
    "dicomdirtests/DICOMDIR-implicit": "dicomdir",
    "dicomdirtests/DICOMDIR-nooffset": "dicomdir",
    "dicomdirtests/DICOMDIR-nopatient": "dicomdir",
    "dicomdirtests/DICOMDIR-reordered": "dicomdir",
    "dicomdirtests/TINY_ALPHA/DICOMDIR": "dicomdir",
    "README.txt": "not-dicom",
    "dicomdirtests/README.txt": "not-dicom",
    "dicomdirtests/TINY_ALPHA/README": "not-dicom",
    "crayons.icc": "not-dicom",  # an ICC colour profile
    "rtplan.dump": "not-dicom",  # text dumps and DICOM JSON
    "rtstruct.dump": "not-dicom",
    "test1.json": "not-dicom",
    "test_PN.json": "not-dicom",
    "zipMR.gz": "not-dicom",  # gzip of an MR file
}
# Corpus files that are read but flagged (the rest read without flags).
FLAGGED = {
    "ExplVR_BigEnd.dcm": ("invalid-vr:(0008,0020)", "invalid-vr:(0008,0030)"),  # '1997.04.24', '14:04:38'
    "ExplVR_BigEndNoMeta.dcm": ("no-preamble", "no-file-meta"),
    "ExplVR_LitEndNoMeta.dcm": ("no-preamble", "no-file-meta"),
    "rtstruct.dcm": ("no-preamble", "no-file-meta"),
    "SC_rgb_jpeg.dcm": ("implicit-vr-mismatch",),
    "badVR.dcm": ("invalid-vr:(0028,0008)", "value-error:(0028,0008)", "invalid-vr:(0008,1155)"),  # IS '1A'
    "meta_missing_tsyntax.dcm": ("missing:(0002,0010)", "missing:(0008,0016)", "missing:(0008,0018)",
                                 "missing:(0020,000D)", "missing:(0020,000E)", "missing:(0008,0060)"),
    "nested_priv_SQ.dcm": ("missing:(0008,0016)", "missing:(0008,0018)", "missing:(0020,000D)",
                           "missing:(0020,000E)", "missing:(0008,0060)"),
    **dict.fromkeys(["GDCMJ2K_TextGBR.dcm", "SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm",
                     "SC_rgb_jpeg_app14_dcmd.dcm"], ("missing:(0008,0060)",)),
    **dict.fromkeys(["JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_line.dcm",
                     "SC_rgb_jls_lossy_sample.dcm"], ("missing:(0020,000D)", "missing:(0020,000E)",
                                                      "missing:(0008,0060)")),
    **dict.fromkeys(["rtdose.dcm", "rtdose_1frame.dcm", "rtdose_expb.dcm", "rtdose_expb_1frame.dcm", "rtdose_rle.dcm",
                     "rtdose_rle_1frame.dcm"], ("invalid-vr:(0008,1155)",)),  # a UID with a leading-zero component
}


def _bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path).read_bytes()


def _dataset(name: str) -> Dataset:
    return dcmread(io.BytesIO(_bytes(name)))


def _write(ds: Dataset, **options: Any) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns about the broken values we write on purpose
        dcmwrite(out, ds, **options)
    return out.getvalue()


def _raw(ds: Dataset, tag: int) -> Any:
    return ds.get_item(tag, keep_deferred=True)


def _replace_element(data: bytes, tag: int, old_vr: bytes, new_encoding: bytes) -> bytes:
    """Byte surgery on a short explicit VR little endian element: swap its whole encoding for ``new_encoding``."""
    value = _raw(dcmread(io.BytesIO(data)), tag).value
    old = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, old_vr, len(value)) + value
    assert data.count(old) == 1
    return data.replace(old, new_encoding)


def _ok(data: bytes, **options: Any) -> ReadResult:
    result = read_instance(data, "test-input", **options)
    assert len(result.flags) == len(result.notes)
    return result


def _rejected(data: bytes, **options: Any) -> DicomReadError:
    with pytest.raises(DicomReadError) as caught:
        read_instance(data, "test-input", **options)
    return caught.value


def _all_converted(ds: Dataset) -> bool:
    for tag in list(ds.keys()):
        elem = _raw(ds, tag)
        if isinstance(elem, RawDataElement):
            return False
        if elem.VR == "SQ" and not all(_all_converted(item) for item in elem.value):
            return False
    return True


def _pydicom_state() -> tuple[Any, ...]:
    return (config.settings._reading_validation_mode, config.settings.infer_sq_for_un_vr,
            config.convert_wrong_length_to_UN, config.replace_un_with_known_vr, config.assume_implicit_vr_switch,
            config.datetime_conversion, list(pydicom.values.convert_retry_VR_order), list(warnings.filters))


# -- clean input and the two modes --------------------------------------------------------------------------


def test_clean_instance_is_fully_parsed_without_flags() -> None:
    result = _ok(_bytes("CT_small.dcm"))
    ds = result.dataset
    assert result.flags == () and result.notes == ()
    assert _all_converted(ds) and _all_converted(ds.file_meta)
    assert str(ds.PatientName) == "CompressedSamples^CT1" and ds.Rows == 128
    assert isinstance(ds.PixelData, bytes) and len(ds.PixelData) == 128 * 128 * 2  # raw, not decoded


def test_header_only_stops_before_pixel_data() -> None:
    result = _ok(_bytes("CT_small.dcm"), header_only=True)
    assert result.flags == ()
    assert "PixelData" not in result.dataset and result.dataset.Rows == 128
    assert _all_converted(result.dataset)


def test_header_only_leaves_large_binary_values_unread_and_full_read_converts_them() -> None:
    ds = _dataset("MR_small.dcm")
    ds.private_block(0x0019, "ROSETTA TEST", create=True).add_new(0x01, "OB", b"\x01" * (2 << 20))
    data = _write(ds)
    header = _ok(data, header_only=True).dataset
    assert isinstance(_raw(header, 0x00191001), RawDataElement) and _raw(header, 0x00191001).value is None
    assert header[0x00191001].value == b"\x01" * (2 << 20)  # still readable later, from the kept buffer
    full = _ok(data).dataset
    assert full[0x00191001].value == b"\x01" * (2 << 20)


# -- lenient reading: accepted, flagged, values right -------------------------------------------------------


def test_file_without_preamble_and_dicm_prefix() -> None:
    data = _bytes("CT_small.dcm")
    result = _ok(data[132:])
    assert result.flags == ("no-preamble",)
    assert result.dataset.SOPInstanceUID == _dataset("CT_small.dcm").SOPInstanceUID
    assert result.dataset.PixelData == _dataset("CT_small.dcm").PixelData


def test_file_without_preamble_or_file_meta() -> None:
    result = _ok(_bytes("ExplVR_LitEndNoMeta.dcm"))
    assert result.flags == ("no-preamble", "no-file-meta")
    assert result.dataset.SOPInstanceUID


def _same_public_elements(read: Dataset, original: Dataset) -> None:
    for elem in original:
        if not elem.tag.is_private:
            assert read[elem.tag].VR == elem.VR, elem.tag
            assert read[elem.tag].value == elem.value, elem.tag


def test_implicit_vr_data_under_an_explicit_vr_meta() -> None:
    original = _dataset("CT_small.dcm")
    assert original.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # kept in the meta by the write below
    result = _ok(_write(original, implicit_vr=True, little_endian=True, force_encoding=True))
    assert result.flags == ("implicit-vr-mismatch",)
    _same_public_elements(result.dataset, original)


def test_explicit_vr_data_under_an_implicit_vr_meta() -> None:
    original = _dataset("MR_small.dcm")
    original.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    result = _ok(_write(original, implicit_vr=False, little_endian=True, force_encoding=True))
    assert result.flags == ("explicit-vr-mismatch",)
    _same_public_elements(result.dataset, original)


def test_one_implicit_vr_element_inside_explicit_vr_data() -> None:
    data = _bytes("MR_small.dcm")
    name = _raw(dcmread(io.BytesIO(data)), 0x00100010).value
    data = _replace_element(data, 0x00100010, b"PN", struct.pack("<HHL", 0x0010, 0x0010, len(name)) + name)
    result = _ok(data)
    assert result.flags == ("implicit-vr-mismatch:(0010,0010)",)
    assert str(result.dataset.PatientName) == "CompressedSamples^MR1"


def test_invalid_date_is_flagged_and_kept() -> None:
    ds = _dataset("MR_small.dcm")
    ds[0x00100030] = DataElement(0x00100030, "DA", "19xx-bad", validation_mode=config.IGNORE)
    result = _ok(_write(ds))
    assert result.flags == ("invalid-vr:(0010,0030)",)
    assert result.dataset.PatientBirthDate == "19xx-bad"
    assert "19xx-bad" in result.notes[0]


def test_unsigned_short_stored_as_text_is_read_as_a_number() -> None:
    data = _replace_element(_bytes("MR_small.dcm"), 0x00280010, b"US",
                            struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 3) + b"512")  # odd length: no US
    result = _ok(data)
    assert result.flags == ("invalid-vr:(0028,0010)",)
    assert result.dataset[0x00280010].VR == "US" and result.dataset.Rows == 512


def test_unsigned_short_stored_with_a_text_vr_is_read_as_a_number() -> None:
    ds = _dataset("MR_small.dcm")
    ds[0x00280010] = DataElement(0x00280010, "LO", "64", validation_mode=config.IGNORE)
    result = _ok(_write(ds))
    assert result.flags == ("invalid-vr:(0028,0010)",)
    assert result.dataset[0x00280010].VR == "US" and result.dataset.Rows == 64
    assert "LO" in result.notes[0]


def test_value_that_does_not_convert_is_kept_as_bytes() -> None:
    data = _replace_element(_bytes("MR_small.dcm"), 0x00180050, b"DS",
                            struct.pack("<HH2sH", 0x0018, 0x0050, b"DS", 4) + b"abc ")
    result = _ok(data)
    assert result.flags == ("value-error:(0018,0050)",)
    assert result.dataset[0x00180050].VR == "UN" and result.dataset[0x00180050].value == b"abc "


def _with_name(charset: str, name: bytes) -> bytes:
    ds = _dataset("MR_small.dcm")
    ds[0x00080005] = DataElement(0x00080005, "CS", charset, validation_mode=config.IGNORE)
    ds[0x00100010] = DataElement(0x00100010, "PN", name, validation_mode=config.IGNORE)
    return _write(ds)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_unknown_character_set_decodes_with_the_fallback(encoding: str) -> None:
    result = _ok(_with_name("ISO_IR 999", "Müller^Jürgen".encode(encoding)))
    assert result.flags == ("unknown-charset:ISO_IR 999",)
    assert str(result.dataset.PatientName) == "Müller^Jürgen"
    assert result.dataset.PatientName.family_name == "Müller"


def test_bytes_invalid_in_the_declared_character_set_decode_with_the_fallback() -> None:
    result = _ok(_with_name("ISO_IR 192", "Müller^Jürgen".encode("latin-1")))  # declares UTF-8
    assert result.flags == ("charset-decode-error:(0010,0010)",)
    assert str(result.dataset.PatientName) == "Müller^Jürgen"


def test_misspelt_character_set_is_corrected() -> None:
    result = _ok(_with_name("ISO IR 100", "Müller^Jürgen".encode("latin-1")))
    assert result.flags == ("charset-corrected:ISO IR 100",)
    assert str(result.dataset.PatientName) == "Müller^Jürgen"


def _private_bytes(ds: Dataset) -> int:
    return sum(len(_raw(ds, tag).value) for tag in list(ds.keys()) if tag.is_private)


@pytest.mark.parametrize("header_only", [False, True])
def test_huge_private_block_is_flagged(header_only: bool) -> None:
    ds = _dataset("MR_small.dcm")
    ds.private_block(0x0019, "ROSETTA TEST", create=True).add_new(0x01, "OB", b"\x00" * (2 << 20))
    data = _write(ds)
    expected = _private_bytes(dcmread(io.BytesIO(data)))
    assert expected > 2 << 20
    assert _ok(data, header_only=header_only).flags == (f"private-block-bytes:{expected}",)
    assert _ok(data, header_only=header_only, max_private_bytes=4 << 20).flags == ()


def test_missing_type_1_attributes_are_flagged() -> None:
    ds = _dataset("CT_small.dcm")
    del ds.SOPClassUID
    ds.Modality = ""
    result = _ok(_write(ds))
    assert result.flags == ("missing:(0008,0016)", "missing:(0008,0060)")
    assert "absent" in result.notes[0] and ds.file_meta.MediaStorageSOPClassUID in result.notes[0]
    assert "present but empty" in result.notes[1]


# -- rejected input -----------------------------------------------------------------------------------------


def test_empty_input_is_rejected() -> None:
    error = _rejected(b"")
    assert error.kind == "empty" and "empty" in error.reason


def test_png_is_rejected_as_not_dicom() -> None:
    out = io.BytesIO()
    Image.new("L", (4, 4)).save(out, format="PNG")
    error = _rejected(out.getvalue())
    assert error.kind == "not-dicom" and "PNG" in error.reason


def test_text_is_rejected_as_not_dicom() -> None:
    error = _rejected(b"PatientName: Doe^John\nModality: CT\n" * 10)
    assert error.kind == "not-dicom" and "text" in error.reason


def test_rejection_is_a_bad_record_carrying_label_reason_and_bytes() -> None:
    with pytest.raises(DicomReadError) as caught:
        read_instance(b"not dicom at all", "bucket/key.dcm")
    error = caught.value
    assert isinstance(error, BadRecordError) and isinstance(error, ValueError)
    assert error.source_id == "bucket/key.dcm" and str(error).startswith("bucket/key.dcm: the input is not DICOM")
    assert error.payload == b"not dicom at all" and "check that the source" in error.reason


CT_SIZE = len(_bytes("CT_small.dcm"))


@pytest.mark.parametrize("header_only", [False, True])
@pytest.mark.parametrize("cut", [CT_SIZE - 100, 6290, 6286, 6280, 3000, 200, 130])
def test_truncated_file_is_rejected(cut: int, header_only: bool) -> None:
    """Cut inside: pixel data value, pixel data header, a value, the next header, a header, the meta, 'DICM'."""
    error = _rejected(_bytes("CT_small.dcm")[:cut], header_only=header_only)
    assert error.kind == "truncated" and "fetch the file again" in error.reason


@pytest.mark.parametrize("header_only", [False, True])
def test_truncated_encapsulated_pixel_data_is_rejected(header_only: bool) -> None:
    assert _rejected(_bytes("JPEG2000.dcm")[:-10], header_only=header_only).kind == "truncated"


def test_truncated_undefined_length_sequence_is_rejected() -> None:
    ds = _dataset("rtplan.dcm")
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
    data = _write(ds)
    assert _ok(data).flags == ()
    assert _rejected(data[:2000]).kind == "truncated"


def test_truncated_deflated_file_is_rejected() -> None:
    assert _rejected(_bytes("image_dfl.dcm")[:-1000]).kind == "truncated"


def test_neither_sop_instance_uid_nor_pixel_data_is_rejected() -> None:
    ds = _dataset("rtplan.dcm")
    del ds.SOPInstanceUID
    assert _rejected(_write(ds)).kind == "not-an-instance"


def test_dicomdir_is_rejected() -> None:
    error = _rejected(_bytes("DICOMDIR"))
    assert error.kind == "dicomdir" and "read the instances it references" in error.reason


# -- the whole corpus, global state, threads ----------------------------------------------------------------


def _corpus() -> list[str]:
    return sorted(Path(path).relative_to(CORPUS).as_posix() for path in get_testdata_files() if os.path.isfile(path))


@pytest.mark.parametrize("header_only", [False, True])
def test_every_corpus_file_is_read_or_rejected_with_a_reason(header_only: bool) -> None:
    names = _corpus()
    assert set(REJECTED) | set(FLAGGED) <= set(names)
    for name in names:
        data = (CORPUS / name).read_bytes()
        try:
            result = read_instance(data, name, header_only=header_only)
        except DicomReadError as error:
            assert REJECTED.get(name) == error.kind, (name, error.reason)
            continue
        assert name not in REJECTED, name
        assert result.flags == FLAGGED.get(name, ()), name
        assert _all_converted(result.dataset), name


def test_global_state_is_restored_after_reads_and_rejections() -> None:
    before = _pydicom_state()
    _ok(_bytes("badVR.dcm"))
    _rejected(_bytes("MR_truncated.dcm"))
    _rejected(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert _pydicom_state() == before


def test_pydicom_warnings_become_flags_and_do_not_escape() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escaped read_instance would raise here
        result = _ok(_bytes("badVR.dcm"))
    assert "invalid-vr:(0008,1155)" in result.flags


def test_concurrent_reads_match_sequential_reads() -> None:
    inputs = [_bytes(name) for name in ("CT_small.dcm", "badVR.dcm", "SC_rgb_jpeg.dcm", "rtdose.dcm")]
    inputs += [_with_name("ISO_IR 999", "Müller".encode()), _bytes("MR_truncated.dcm")]

    def outcome(data: bytes) -> tuple[str, ...]:
        try:
            result = read_instance(data, "threaded")
        except DicomReadError as error:
            return (error.kind,)
        return (*result.flags, str(result.dataset.get("PatientName", "")))

    expected = [outcome(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(outcome, inputs * 8))
    assert got == expected * 8


def test_header_text_reads_what_pydicom_converts_without_converting() -> None:
    from transforms.dicom.deid import DeidConfig, Deidentifier
    from transforms.dicom.reading import HeaderText

    keywords = ["PatientID", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                "Modality", "SOPClassUID", "NumberOfFrames", "InstanceNumber", "ImagesInAcquisition",
                "TimezoneOffsetFromUTC", "AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "ContentDate",
                "ContentTime", "SeriesDate", "SeriesTime", "StudyDate", "StudyTime", "InstanceCreationDate"]
    deid = Deidentifier(DeidConfig(key="unit-test-key-0123456789abcdef"))
    compared = raw_kept = 0
    for name in _corpus():
        data = (CORPUS / name).read_bytes()
        for deidentify in (False, True):
            try:
                mine = read_instance(data, name, validate_values=False).dataset
                theirs = read_instance(data, name, validate_values=False).dataset
                if deidentify:
                    deid.deidentify(mine)
                    deid.deidentify(theirs)
            except Exception:  # refused input: covered above
                continue
            text = HeaderText(mine)
            for keyword in keywords:
                with warnings.catch_warnings():  # pydicom warns about invalid values it converts anyway
                    warnings.simplefilter("ignore")
                    got, expected = text.get(keyword), theirs.get(keyword)
                    assert ("" if got is None else str(got)) == ("" if expected is None else str(expected)), name
                compared += 1
            raw_kept += type(mine.get_item(0x0020000D, keep_deferred=True)).__name__ == "RawDataElement"
    assert compared > 2000 and raw_kept > 50  # most Study Instance UIDs were read without being converted
