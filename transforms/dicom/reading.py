"""Vendor-robust reading of one DICOM instance: parse what can be parsed, flag the rest, reject the unusable.

:func:`read_instance` takes the bytes of one stored instance and returns a :class:`ReadResult`: the pydicom
dataset with every header element already converted (pixel data stays raw bytes, never decoded), plus short
machine-readable ``flags`` and one human ``note`` per flag.  Input that cannot be used raises
:class:`DicomReadError` (a :class:`~rosetta.core.errors.BadRecordError`: quarantine it and go on).

Flags (``T`` is an element tag such as ``(0010,0030)``):

- ``no-preamble``: no 128-byte preamble and ``DICM`` prefix (read anyway, ``force=True``).
- ``no-file-meta``: no File Meta Information; the transfer syntax was guessed from the first bytes.
- ``implicit-vr-mismatch`` / ``explicit-vr-mismatch``: the file meta promises explicit (implicit) VR but the
  data set is implicit (explicit); pydicom noticed and read it with the encoding actually used.
- ``implicit-vr-mismatch:T``: one element of an explicit VR data set is encoded with implicit VR.
- ``invalid-vr:T``: the value does not fit its VR (a DA that is no date, a US stored as text, a value of the
  wrong length...), or the file's VR differs in kind from the data dictionary's.  Numbers stored as text
  are converted to the dictionary VR when they parse; the note says what was done.
- ``unknown-vr:T``: implicit VR element whose tag is not in the data dictionary; kept as UN bytes.
- ``value-error:T``: the value could not be converted at all; kept as raw bytes with VR UN.
- ``unknown-charset:NAME``: Specific Character Set term pydicom does not know; text is decoded as UTF-8
  where that is valid, otherwise as Latin-1.
- ``charset-corrected:NAME``: misspelt or misplaced Specific Character Set term that pydicom corrected.
- ``charset-decode-error:T``: the bytes are not valid in the declared character set; decoded with the
  fallback (UTF-8 where valid, otherwise Latin-1) instead of replacement characters.
- ``private-block-bytes:N``: private elements hold ``N`` bytes in all, more than ``max_private_bytes``.
- ``missing:T``: a Type 1 attribute the pipeline needs (SOP Class/Instance UID, Study/Series Instance UID,
  Modality) or the meta's Transfer Syntax UID is absent or empty.
- ``trailing-bytes:N``: ``N`` bytes after the last element were not parsed (zero padding, stray delimiter).
- ``pydicom-warning`` / ``pydicom-warning:T``: any other warning pydicom emitted; the note has its text.

Rejections (:attr:`DicomReadError.kind`): ``empty``, ``not-dicom``, ``truncated``, ``unparseable``,
``dicomdir``, ``not-an-instance``.

Where pydicom 3.0 is silent, the walk checks for itself: DA/DT/TM values are not validated on reading; a value
that fails to convert (a DS of "abc") is retried as other VRs and kept as a str under its VR; a value of the
wrong length is announced as "Setting VR to 'UN'" but keeps the dictionary VR with raw bytes; a value cut short
by the end of the data is returned short.  Truncation is found by comparing each element's declared end with
the data size (header-only mode hops the element headers after the stop, pixel data items included).

Thread safety: pydicom 3.0 has no per-call options for lenient reading (``dcmread`` takes only ``force``,
``stop_before_pixels``, ``defer_size`` and ``specific_tags``); its switches (``config.settings.
reading_validation_mode``, ``config.convert_wrong_length_to_UN``, ``values.convert_retry_VR_order``, ...) are
module globals, and :class:`warnings.catch_warnings` swaps process-wide state.  So every call sets the switches
and captures warnings inside one module-level lock and restores both before returning, also on error.  Calls
from several threads are serialised for the parse (pure Python under the GIL, so little throughput is lost).
Other code calling pydicom in another thread at that moment sees the lenient switches and its warnings land in
this call's flags.  pydicom also logs each warning on the ``pydicom`` logger; that is left as it is.
Header-only datasets keep large binary values deferred: reading one later seeks in the dataset's buffer, so do
not read the same dataset's deferred values from two threads at once.
"""

from __future__ import annotations

import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, MutableSequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, cast

from rosetta.core.errors import BadRecordError

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset, FileDataset

#: Type 1 attributes of the composite IOD that the pipeline keys records by.
REQUIRED_TAGS: dict[int, str] = {
    0x00080016: "SOP Class UID",
    0x00080018: "SOP Instance UID",
    0x0020000D: "Study Instance UID",
    0x0020000E: "Series Instance UID",
    0x00080060: "Modality",
}
#: Values larger than this stay unread in header-only mode when their VR is binary (they are never parsed).
HEADER_DEFER_BYTES = 64 * 1024

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_SOP_INSTANCE_UID = 0x00080018
_TRANSFER_SYNTAX_UID = 0x00020010
_CHARSET = 0x00080005
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
# Explicit VR elements with these VRs have 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"}
_BYTES_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}
_TEXT_CHARSET_VRS = {"LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_INT_RANGES = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
               "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}
_FLOAT_VRS = {"FL", "FD"}
_VR_KIND = {**dict.fromkeys(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
                             "UI", "UR", "UT"), "text"),
            **dict.fromkeys(_INT_RANGES, "number"), **dict.fromkeys(_FLOAT_VRS, "number"), "AT": "tag",
            **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), "bytes"), "SQ": "sequence"}
# Leading bytes of common non-DICOM payloads, to say what was delivered instead.
_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"),
               (b"\x1f\x8b", "gzip data (decompress it first)"), (b"PK\x03\x04", "a ZIP archive (unpack it first)"),
               (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"))

_PYDICOM_LOCK = threading.RLock()


class DicomReadError(BadRecordError, ValueError):
    """One input is not a usable DICOM instance.

    ``reason`` is a sentence naming what is wrong and the fix; ``kind`` is one of ``empty``, ``not-dicom``,
    ``truncated``, ``unparseable``, ``dicomdir``, ``not-an-instance``; ``source_id`` is the caller's label and
    ``payload`` the rejected bytes, so quarantine keeps them.
    """

    def __init__(self, label: str, kind: str, reason: str, *, payload: bytes | None = None) -> None:
        self.kind = kind
        super().__init__(reason, source_id=label, payload=payload)


@dataclass(frozen=True)
class ReadResult:
    """A parsed instance.

    ``dataset``: pydicom ``FileDataset`` with every header element converted (pixel data left as raw bytes;
    absent when read with ``header_only=True``).  ``flags``: short machine-readable findings, in the order
    found, without duplicates.  ``notes``: one human sentence per flag, same order.
    """

    dataset: Any
    flags: tuple[str, ...]
    notes: tuple[str, ...]


def read_instance(data: bytes, label: str, *, header_only: bool = False, validate_values: bool = True,
                  max_private_bytes: int = 1 << 20) -> ReadResult:
    """Read one DICOM instance from ``data`` leniently; flag deviations, reject what cannot be used.

    ``label`` names the input in errors (a path or an object key).  ``header_only=True`` stops before the
    pixel data and leaves large binary values unread, which makes it the cheap metadata path; the header is
    still fully parsed.  ``validate_values=False`` skips the element walk that converts and checks every
    value (several times the cost of the parse itself): the structure is still checked (preamble, file meta,
    VR encoding, truncation, instance, Type 1 attributes, private block size from the declared lengths), and
    values are converted lazily by whoever reads them.  ``max_private_bytes``: total size of private element
    values above which the ``private-block-bytes:N`` flag is raised.  Raises :class:`DicomReadError` for input
    that is empty, not DICOM, truncated, unparseable, a DICOMDIR, or neither has a SOP Instance UID nor pixel
    data.
    No global state is left changed; safe to call from several threads (see the module docstring).
    """
    _check_looks_like_dicom(data, label)
    findings = _Findings()
    with pydicom_quiet(), _lenient_pydicom(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = _Reader(data, label, header_only, findings, caught)
        ds = reader.parse()
        if validate_values:
            reader.walk(ds.file_meta, "")
            private_bytes = reader.walk(ds, "")
        else:
            private_bytes = _declared_private_bytes(ds)
    if private_bytes > max_private_bytes:
        findings.add(f"private-block-bytes:{private_bytes}",
                     f"Private elements hold {private_bytes} bytes, more than the {max_private_bytes} allowed; "
                     "check for vendor blobs before storing the header.")
    for tag, name in REQUIRED_TAGS.items():
        _flag_missing(ds, tag, name, findings)
    return ReadResult(ds, tuple(findings.flags), tuple(findings.notes))


def _declared_private_bytes(ds: Any) -> int:
    """Total declared length of the top-level private elements, without converting any value."""
    total = 0
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset converts every element
        if tag.group & 1:
            length = getattr(ds.get_item(tag, keep_deferred=True), "length", None)
            if isinstance(length, int) and length != _UNDEFINED:
                total += length
    return total


@contextmanager
def pydicom_quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Hold the pydicom lock with its warnings recorded (yielded) and its logger silenced.

    pydicom repeats values in its warnings and log lines ("Invalid value for VR DA: '19470312'"), and a
    header value may be a patient's birth date: nothing pydicom says while a dataset is read, de-identified
    or rendered may reach a log.  Callers turn the recorded warnings into flags.  Re-entrant.
    """
    import logging

    logger = logging.getLogger("pydicom")
    with _PYDICOM_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        disabled, logger.disabled = logger.disabled, True
        try:
            yield caught
        finally:
            logger.disabled = disabled


class _Findings:
    """Ordered, de-duplicated flags with their notes."""

    def __init__(self) -> None:
        self.flags: list[str] = []
        self.notes: list[str] = []
        self.unknown_charsets: set[str] = set()

    def add(self, flag: str, note: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)
            self.notes.append(note)


@contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """Set pydicom's reading switches to lenient values and restore them afterwards (caller holds the lock)."""
    from pydicom import config, values

    settings = config.settings
    # The private attribute keeps "unset" (None, which follows enforce_valid_values) restorable, exactly as
    # pydicom's own config.disable_value_validation() does.
    saved = (settings._reading_validation_mode, settings.infer_sq_for_un_vr, config.convert_wrong_length_to_UN,
             config.replace_un_with_known_vr, config.assume_implicit_vr_switch, config.datetime_conversion,
             values.convert_retry_VR_order)
    try:
        settings.reading_validation_mode = config.WARN  # invalid values warn (captured as flags), never raise
        settings.infer_sq_for_un_vr = True  # undefined-length UN is a sequence (PS3.5 6.2.2)
        config.convert_wrong_length_to_UN = True  # a US stored as "512" becomes UN bytes, not an exception
        config.replace_un_with_known_vr = True  # explicit UN of a known tag gets its dictionary VR
        config.assume_implicit_vr_switch = True  # invalid VR bytes in explicit data: read that element as implicit
        config.datetime_conversion = False  # DA/DT/TM stay strings, so garbage dates are flagged, not raised
        # On a ValueError (a DS of "abc") pydicom silently retries the value as SH, UL, ... and keeps the VR,
        # so a DS element would hold a str.  Without retries the value stays bytes, which the walk flags.
        values.convert_retry_VR_order = []
        yield
    finally:
        (settings._reading_validation_mode, settings.infer_sq_for_un_vr, config.convert_wrong_length_to_UN,
         config.replace_un_with_known_vr, config.assume_implicit_vr_switch, config.datetime_conversion,
         values.convert_retry_VR_order) = saved


def _check_looks_like_dicom(data: bytes, label: str) -> None:
    """Reject empty and obviously non-DICOM input before pydicom's ``force=True`` turns it into garbage."""
    if not data:
        raise DicomReadError(label, "empty", "the input is empty (0 bytes); fetch or export the instance again")
    if data[128:132] == b"DICM":
        return
    if 128 < len(data) < 132 and b"DICM".startswith(data[128:]):
        raise DicomReadError(label, "truncated", f"the data ends at byte {len(data)}, inside the 'DICM' prefix; "
                             "fetch the file again from the source", payload=data)
    if _starts_with_known_element(data):
        return
    what = next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
    if what is None and all(32 <= b < 127 or b in b"\t\r\n" for b in data[:64]):
        what = "text"
    shown = " ".join(f"{b:02X}" for b in data[:8])
    raise DicomReadError(label, "not-dicom", f"the input is not DICOM ({what or 'unknown content'}): no 'DICM' "
                         f"prefix at byte 128 and the first bytes ({shown}) are no DICOM element; check that the "
                         "source delivers DICOM Part 10 files", payload=data)


def _starts_with_known_element(data: bytes) -> bool:
    """True if the first 4 bytes are a data dictionary tag in little or big endian (files without preamble)."""
    from pydicom.datadict import dictionary_has_tag

    if len(data) < 8:
        return False
    for endian in "<>":
        group, element = struct.unpack(f"{endian}HH", data[:4])
        if dictionary_has_tag(group << 16 | element) or (element == 0 and group % 2 == 0 and 0 < group <= 0x7FE0):
            return True
    return False


def _stored(ds: Dataset, tag: int) -> RawDataElement | DataElement:
    """The element as stored: raw (unconverted, deferred values not read) until something converts it."""
    return cast("RawDataElement | DataElement", ds.get_item(tag, keep_deferred=True))


#: VRs whose values are ASCII whatever the character set, and in which leading spaces do not count.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: Text VRs in the character set: their ASCII bytes read the same in every DICOM character set.
_CHARSET_VRS = frozenset({"LO", "SH"})


class HeaderText:
    """Single text values of a dataset by keyword, read from the raw bytes when possible.

    ``HeaderText(ds).get("StudyInstanceUID")`` equals ``str(ds.get("StudyInstanceUID"))`` but leaves the
    element unconverted (pydicom's conversion costs tens of microseconds an element, and a record reads a
    dozen).  Multi-valued, non-ASCII and binary values are converted by pydicom as usual.
    """

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def get(self, keyword: str, default: Any = None) -> Any:
        from pydicom.datadict import dictionary_VR, tag_for_keyword
        from pydicom.dataelem import RawDataElement

        ds = self.ds
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            return default
        elem = ds.get_item(tag, keep_deferred=True)
        value = getattr(elem, "value", None)
        if isinstance(elem, RawDataElement) and isinstance(value, bytes) and b"\\" not in value and \
                value.isascii() and b"\x1b" not in value:
            vr = elem.VR if elem.VR and elem.VR != "UN" else dictionary_VR(tag)
            if vr in _ASCII_VRS:
                text = value.decode("ascii").strip(" \x00")
                return text if text else ds.get(keyword, default)  # empty: whatever pydicom makes of it
            if vr in _CHARSET_VRS:
                text = value.decode("ascii").rstrip(" \x00")
                return text if text else ds.get(keyword, default)
        return ds.get(keyword, default)


def _raw_text(ds: Dataset, tag: int) -> str:
    """The value of a short text element without converting it (conversion belongs to the walk)."""
    from pydicom.dataelem import RawDataElement

    if tag not in ds:
        return ""
    elem = _stored(ds, tag)
    if isinstance(elem, RawDataElement):
        return elem.value.decode("latin-1").strip(" \x00") if isinstance(elem.value, bytes) else ""
    return str(elem.value or "")


def _has_value(ds: Dataset, tag: int) -> bool:
    """True if the element holds at least one value; read from the raw bytes when still raw (these are
    text VRs: UI, CS), so a UID that de-identification replaces next is not converted for nothing.  An element
    stored as UN is converted, which gives it its dictionary VR in the output as before."""
    from pydicom.dataelem import RawDataElement

    elem = _stored(ds, tag)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and elem.VR != "UN":
        return any(part.strip(b" \x00") for part in elem.value.split(b"\\"))
    return bool(ds[tag].VM > 0)


def _flag_missing(ds: Dataset, tag: int, name: str, findings: _Findings) -> None:
    from pydicom.tag import Tag

    if tag in ds and _has_value(ds, tag):
        return
    state = "present but empty" if tag in ds else "absent"
    note = f"Type 1 attribute {name} {Tag(tag)} is {state}"
    if tag == 0x00080016 and ds.file_meta.get("MediaStorageSOPClassUID"):
        note += f"; the file meta has Media Storage SOP Class UID {ds.file_meta.MediaStorageSOPClassUID}"
    findings.add(f"missing:{Tag(tag)}", note + ".")


class _Reader:
    """One call's parse: dcmread, structural checks, then the element walk that converts every value."""

    def __init__(self, data: bytes, label: str, header_only: bool, findings: _Findings,
                 caught: list[warnings.WarningMessage]) -> None:
        self.data, self.label, self.header_only = data, label, header_only
        self.findings, self.caught = findings, caught
        self.source: Any = None  # the FileDataset, once parsed

    # -- parsing -----------------------------------------------------------------------------------------

    def reject(self, kind: str, reason: str) -> DicomReadError:
        return DicomReadError(self.label, kind, reason, payload=self.data)

    def parse(self) -> FileDataset:
        from pydicom import dcmread

        fp = BytesIO(self.data)
        try:
            ds = dcmread(fp, force=True, stop_before_pixels=self.header_only,
                         defer_size=HEADER_DEFER_BYTES if self.header_only else None)
        except (EOFError, zlib.error) as exc:
            raise self.reject("truncated", f"the data ends inside an element ({exc}); fetch the file again "
                              "from the source") from None
        except Exception as exc:
            if "No tag to read" in str(exc):  # pydicom's OSError when a sequence item header is cut off
                raise self.reject("truncated", f"the data ends inside a sequence ({exc}); fetch the file again "
                                  "from the source") from None
            raise self.reject("unparseable", f"pydicom cannot parse it ({type(exc).__name__}: {exc}); "
                              "quarantine it and ask the source for a valid export") from None
        self.take_warnings(0, None, "")
        if self.data[128:132] != b"DICM":
            self.findings.add("no-preamble", "No 128-byte preamble and 'DICM' prefix (not a PS3.10 file); "
                              "read without them.")
        if not ds.file_meta:
            self.findings.add("no-file-meta", "No File Meta Information; the transfer syntax was inferred "
                              "from the first element.")
        elif _TRANSFER_SYNTAX_UID not in ds.file_meta:
            self.findings.add("missing:(0002,0010)", "The file meta has no Transfer Syntax UID; the encoding "
                              "was inferred from the first element.")
        self.source = ds
        has_pixels = self.check_complete(ds, fp)
        self.check_is_instance(ds, has_pixels)
        return ds

    def check_complete(self, ds: FileDataset, fp: BytesIO) -> bool:
        """Reject data cut short; return whether pixel data is present (read, or next in header-only mode)."""
        from pydicom.dataelem import RawDataElement

        if _raw_text(ds.file_meta, _TRANSFER_SYNTAX_UID) == _DEFLATED:
            return any(tag in ds for tag in _PIXEL_TAGS)  # inflate raised already if the stream was cut
        size = len(self.data)
        raws: list[RawDataElement] = []
        last_raw, last_undefined = None, -1
        for in_body, d in ((False, ds.file_meta), (True, ds)):
            for tag in list(d.keys()):
                elem = _stored(d, tag)
                if isinstance(elem, RawDataElement):
                    if elem.length != _UNDEFINED and elem.value_tell + elem.length > size:
                        raise self.reject("truncated", f"element {elem.tag} declares {elem.length} bytes at offset "
                                          f"{elem.value_tell} but the data ends at byte {size}; fetch the file "
                                          "again from the source")
                    raws.append(elem)
                    if last_raw is None or elem.value_tell > last_raw.value_tell:
                        last_raw = elem
                elif in_body:
                    last_undefined = max(last_undefined, elem.file_tell or 0)
        position = fp.tell()
        if self.header_only and position < size:
            return self.check_rest(ds, raws, position)
        if last_raw is not None and last_raw.value_tell > last_undefined:
            self.check_tail(last_raw.value_tell + last_raw.length)
        return any(tag in ds for tag in _PIXEL_TAGS)

    def check_tail(self, end: int) -> None:
        """Bytes after the last element: a cut-off element header is truncation; zeros or more are flagged."""
        tail = self.data[end:]
        if not tail:
            return
        if len(tail) < 8 and tail.strip(b"\x00"):
            raise self.reject("truncated", f"the data ends at byte {len(self.data)}, inside the header of the "
                              "element after the last complete one; fetch the file again from the source")
        self.findings.add(f"trailing-bytes:{len(tail)}", f"{len(tail)} bytes after the last element at byte {end} "
                          "were not parsed (padding or a stray delimiter).")

    def check_rest(self, ds: FileDataset, raws: list[RawDataElement], position: int) -> bool:
        """Header-only mode stopped before pixel data: hop the remaining element headers (values unread) to
        check they fit in the data; return whether pixel data is there."""
        own = [raw for raw in raws if raw.tag >> 16 != 2]  # the meta is always explicit VR little endian
        implicit, little = (own[-1].is_implicit_VR, own[-1].is_little_endian) if own else ds.original_encoding
        endian = "<" if little is not False else ">"
        size, has_pixels = len(self.data), False
        while size - position >= 8:
            tag, header, length = self.element_header(position, bool(implicit), endian)
            if tag >> 16 == 0xFFFE:  # a stray delimiter: pydicom stops reading there as well
                break
            has_pixels |= tag in _PIXEL_TAGS
            start = position + header
            if length == _UNDEFINED and tag not in _PIXEL_TAGS:
                return has_pixels  # an undefined-length sequence after the pixels is not hopped
            end = self.encapsulated_end(start, endian) if length == _UNDEFINED else start + length
            if end is None or end > size:
                raise self.reject("truncated", f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {position} "
                                  f"runs past the end of the data ({size} bytes); fetch the file again from the "
                                  "source")
            position = end
        self.check_tail(position)
        return has_pixels

    def element_header(self, position: int, implicit: bool, endian: str) -> tuple[int, int, int]:
        """(tag, header size, value length) of the element at ``position``; PS3.5 7.1."""
        data = self.data
        group, element = struct.unpack(f"{endian}HH", data[position:position + 4])
        if implicit:
            header, length_format = 8, "L"
        elif data[position + 4:position + 6].decode("latin-1") in _LONG_VRS:
            header, length_format = 12, "L"
        else:
            header, length_format = 8, "H"
        if position + header > len(data):
            raise self.reject("truncated", f"the data ends at byte {len(data)}, inside the header of the element "
                              f"at byte {position}; fetch the file again from the source")
        size = struct.calcsize(endian + length_format)
        (length,) = struct.unpack(f"{endian}{length_format}", data[position + header - size:position + header])
        return group << 16 | element, header, length

    def encapsulated_end(self, start: int, endian: str) -> int | None:
        """End of encapsulated pixel data: hop its item headers up to the sequence delimiter; None if cut."""
        data, size, position = self.data, len(self.data), start
        while position + 8 <= size:
            group, element, length = struct.unpack(f"{endian}HHL", data[position:position + 8])
            tag = group << 16 | element
            if tag == _SEQUENCE_END:
                return position + 8
            if tag != _ITEM or length == _UNDEFINED:  # not item-structured: search like pydicom does
                found = data.find(b"\xfe\xff\xdd\xe0" if endian == "<" else b"\xff\xfe\xe0\xdd", position)
                return found + 8 if found >= 0 else None
            position += 8 + length
        return None

    def check_is_instance(self, ds: FileDataset, has_pixels: bool) -> None:
        sop_classes = {_raw_text(ds.file_meta, 0x00020002), _raw_text(ds, 0x00080016)}
        if _MEDIA_STORAGE_DIRECTORY in sop_classes or 0x00041220 in ds:
            raise self.reject("dicomdir", "it is a DICOMDIR (the index of a DICOM file-set), not an instance; "
                              "read the instances it references instead")
        if not _raw_text(ds, _SOP_INSTANCE_UID) and not has_pixels:
            raise self.reject("not-an-instance", "it has neither SOP Instance UID (0008,0018) nor Pixel Data "
                              "(7FE0,0010), so it is no DICOM instance (a fragment or a dump?); quarantine it "
                              "and ask the source for the complete instance")

    # -- warnings ----------------------------------------------------------------------------------------

    def take_warnings(self, mark: int, tag: Any, where: str) -> list[str]:
        """Turn warnings recorded since ``mark`` into flags (``tag`` None: read level); return their texts."""
        texts = [str(w.message) for w in self.caught[mark:]]
        del self.caught[mark:]
        for text in texts:
            self.classify(text, tag, where)
        return texts

    def classify(self, text: str, tag: Any, where: str) -> None:
        add = self.findings.add
        if text.startswith("Expected explicit VR, but found implicit VR"):
            add("implicit-vr-mismatch", "The file meta declares explicit VR but the data set is implicit VR; "
                "read as implicit VR with VRs from the data dictionary.")
        elif text.startswith("Expected implicit VR, but found explicit VR"):
            add("explicit-vr-mismatch", "The file meta declares implicit VR but the data set is explicit VR; "
                "read as explicit VR.")
        elif text.startswith("Unknown encoding '"):
            name = text.split("'")[1]
            self.findings.unknown_charsets.add(name)
            add(f"unknown-charset:{name}", f"Specific Character Set '{name}' is unknown; text is decoded as UTF-8 "
                "where valid, otherwise as Latin-1.")
        elif text.startswith("Incorrect value for Specific Character Set '") or (
                text.startswith("Value '") and "code extension" in text):
            add(f"charset-corrected:{text.split(chr(39))[1]}", text)
        elif text.startswith("End of file reached"):
            if tag is None:
                raise self.reject("truncated", f"the data ends before a sequence or pixel data is complete "
                                  f"({text}); fetch the file again from the source")
            add(f"value-error:{tag}", f"{where}: a nested value ends early ({text}).")
        elif tag is None:
            add("pydicom-warning", text)
        elif text.startswith("Failed to decode byte string"):
            add(f"charset-decode-error:{tag}", f"{where}: bytes not valid in the declared character set; "
                "decoded as UTF-8 where valid, otherwise as Latin-1.")
        elif "Setting VR to 'UN'" in text:
            pass  # wrong length for the VR: the walk converts numbers stored as text or keeps the bytes
        elif text.startswith("VR lookup failed"):
            add(f"unknown-vr:{tag}", f"{where}: tag not in the data dictionary and the file is implicit VR; "
                "kept as UN bytes.")
        elif "VR" in text:
            add(f"invalid-vr:{tag}", f"{where}: {text}")
        else:
            add(f"pydicom-warning:{tag}", f"{where}: {text}")

    # -- the walk: convert every element so conversion problems surface now -------------------------------

    def walk(self, ds: Dataset, prefix: str, unknown_charset: bool = False, private: str = "none") -> int:
        """Convert and check every element of ``ds`` (recursing into sequences); return private value bytes.

        ``private`` is ``none``, ``count`` (inside an undefined-length private sequence: count everything)
        or ``counted`` (inside a private value whose length was already counted).
        """
        from pydicom.dataelem import RawDataElement

        total = 0
        unknown_charset = self.charset_unknown(ds, unknown_charset)
        for tag in list(ds.keys()):
            raw = _stored(ds, tag)
            where = f"{prefix}{tag}"
            length = raw.length if isinstance(raw, RawDataElement) else _UNDEFINED
            counts = private == "count" or (tag.is_private and private == "none")
            if counts and length != _UNDEFINED:
                total += length
            child = "counted" if private == "counted" or (counts and length != _UNDEFINED) else (
                "count" if counts else "none")
            if isinstance(raw, RawDataElement) and raw.value is None and length not in (0, _UNDEFINED):
                if self.header_only and _vr_of(raw) in _BYTES_VRS:
                    continue  # a large binary value stays deferred: nothing to convert
                raw = self.load_deferred(ds, raw)
            elem = self.convert(ds, tag, raw, where, unknown_charset)
            if elem is None or elem.VR != "SQ":
                continue
            for index, item in enumerate(elem.value):
                total += self.walk(item, f"{where}[{index}].", unknown_charset, child)
        return total

    def charset_unknown(self, ds: Dataset, inherited: bool) -> bool:
        """Whether ``ds`` (own Specific Character Set, else its parent's) uses a term pydicom did not know."""
        if _CHARSET not in ds:
            return inherited
        terms = {term.strip() for term in _raw_text(ds, _CHARSET).split("\\")}
        return bool(terms & self.findings.unknown_charsets)

    def load_deferred(self, ds: Dataset, raw: RawDataElement) -> RawDataElement:
        from pydicom.filereader import read_deferred_data_element

        source = self.source  # the meta has no buffer of its own; both were read from this one
        loaded = read_deferred_data_element(source.fileobj_type, source.buffer, source.timestamp, raw)
        ds._dict[raw.tag] = loaded  # Dataset.__setitem__ would convert private values before we can check them
        return loaded

    def convert(self, ds: Dataset, tag: Any, raw: RawDataElement | DataElement, where: str,
                unknown_charset: bool) -> DataElement | None:
        """Convert one element with pydicom, then apply the checks and fallbacks pydicom does not."""
        from pydicom.dataelem import RawDataElement

        mark = len(self.caught)
        try:
            elem = ds[tag]
            _touch(elem.value)
        except Exception as exc:
            self.take_warnings(mark, tag, where)
            self.keep_raw(ds, raw, where, f"{type(exc).__name__}: {exc}")
            return None
        texts = self.take_warnings(mark, tag, where)
        if not isinstance(raw, RawDataElement):
            return elem
        if isinstance(elem.value, bytes) and elem.value and elem.VR not in _BYTES_VRS:
            # Wrong length for the VR (pydicom warns, says UN but keeps the dictionary VR) or a value that did not
            # convert (pydicom says nothing): the value is still the raw bytes.
            fixed = self.numbers_stored_as_text(ds, raw, elem.VR, elem.VR, where)
            if fixed is None:
                self.keep_raw(ds, raw, where, f"{len(elem.value)} bytes are no valid {elem.VR} value")
            return fixed
        if raw.VR is None and not raw.is_implicit_VR:
            self.findings.add(f"implicit-vr-mismatch:{tag}", f"{where}: encoded with implicit VR inside an "
                              "explicit VR data set; read as implicit VR.")
        if elem.VR in _TEXT_CHARSET_VRS and isinstance(raw.value, bytes) and (
                any(t.startswith("Failed to decode") for t in texts) or (unknown_charset and not raw.value.isascii())):
            elem = self.redecode(ds, raw)
        if elem.VR in ("DA", "DT", "TM"):
            self.check_dates(elem, where)
        return self.check_vr_kind(ds, raw, elem, where)

    def keep_raw(self, ds: Dataset, raw: RawDataElement | DataElement, where: str, problem: str) -> None:
        """Replace an element that does not convert by its raw bytes with VR UN, and flag it."""
        from pydicom.config import IGNORE
        from pydicom.dataelem import DataElement, RawDataElement

        value = raw.value if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes) else b""
        elem = DataElement(raw.tag, "OB", value, validation_mode=IGNORE)
        elem.VR = "UN"  # set afterwards: DataElement() swaps UN for the dictionary VR and converts again
        ds[raw.tag] = elem
        self.findings.add(f"value-error:{raw.tag}", f"{where}: cannot be converted ({problem}); kept as raw bytes "
                          "with VR UN.")

    def redecode(self, ds: Dataset, raw: RawDataElement) -> DataElement:
        """Decode text with the fallback: UTF-8 where valid, otherwise Latin-1 (never replacement characters)."""
        from pydicom.dataelem import convert_raw_data_element

        value = raw.value
        assert isinstance(value, bytes)
        try:
            value.decode("utf-8")
            codec = "utf_8"
        except UnicodeDecodeError:
            codec = "latin_1"
        mark = len(self.caught)
        fixed = convert_raw_data_element(raw, encoding=[codec], ds=ds)
        _touch(fixed.value)
        del self.caught[mark:]  # the value was checked already when first converted
        ds[raw.tag] = fixed
        return fixed

    def check_dates(self, elem: DataElement, where: str) -> None:
        """pydicom 3.0 does not validate DA/DT/TM when reading; the pipeline parses them into event times."""
        from pydicom.valuerep import VALIDATORS

        values = [elem.value] if isinstance(elem.value, str) else list(elem.value or [])
        for value in values:
            ok, message = VALIDATORS[elem.VR](elem.VR, value) if value else (True, "")
            if not ok:
                self.findings.add(f"invalid-vr:{elem.tag}", f"{where}: {message}")
                return

    def check_vr_kind(self, ds: Dataset, raw: RawDataElement, elem: DataElement, where: str) -> DataElement:
        """Flag a VR of another kind than the dictionary's; convert numbers stored as text to the dictionary VR."""
        from pydicom.datadict import dictionary_VR

        if raw.tag.is_private or raw.tag.element == 0 or raw.VR is None or raw.VR == "UN":
            return elem
        try:
            expected = dictionary_VR(raw.tag)
        except KeyError:
            return elem
        # An implicit VR element carries the dictionary's VR, possibly ambiguous ("OB or OW").
        stored_kinds = {_VR_KIND.get(vr) for vr in raw.VR.split(" or ")}
        if stored_kinds & {_VR_KIND.get(vr) for vr in expected.split(" or ")}:
            return elem
        fixed = self.numbers_stored_as_text(ds, raw, raw.VR, expected, where)
        if fixed is not None:
            return fixed
        self.findings.add(f"invalid-vr:{raw.tag}", f"{where}: stored as {raw.VR}, the data dictionary says "
                          f"{expected}; kept as read.")
        return elem

    def numbers_stored_as_text(self, ds: Dataset, raw: RawDataElement, stored: str, expected: str,
                               where: str) -> DataElement | None:
        """A number written as text ("512" in a US element): convert it to the dictionary VR, flag invalid-vr."""
        from pydicom.config import IGNORE
        from pydicom.datadict import dictionary_VR
        from pydicom.dataelem import DataElement

        try:
            target = dictionary_VR(raw.tag).split(" or ")[0]
        except KeyError:
            return None
        text = raw.value.decode("latin-1") if isinstance(raw.value, bytes) else ""
        numbers = _numbers_from_text(text, target)
        if numbers is None:
            return None
        fixed = DataElement(raw.tag, target, numbers[0] if len(numbers) == 1 else numbers, validation_mode=IGNORE)
        ds[raw.tag] = fixed
        self.findings.add(f"invalid-vr:{raw.tag}", f"{where}: holds the text {text.strip(chr(0) + ' ')!r} (stored as "
                          f"{stored}) where the data dictionary says {expected}; read as {target} {fixed.value}.")
        return fixed


def _vr_of(raw: RawDataElement) -> str:
    from pydicom.datadict import dictionary_VR

    if raw.VR:
        return raw.VR
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        return "UN"


def _touch(value: Any) -> None:
    """Force pydicom's lazy parts (person names decode on first use) so their problems surface now."""
    from pydicom.valuerep import PersonName

    for item in value if isinstance(value, MutableSequence) else [value]:
        if isinstance(item, PersonName):
            str(item)


def _numbers_from_text(text: str, vr: str) -> list[int | float] | None:
    """Numbers written as text ("512", "1\\2"), converted for VR ``vr``; None if they are not that."""
    if vr not in _INT_RANGES and vr not in _FLOAT_VRS:
        return None
    parts = text.split("\\")
    numbers: list[int | float] = []
    try:
        for part in parts:
            cleaned = part.strip(" \x00")
            if vr in _FLOAT_VRS:
                numbers.append(float(cleaned))
                continue
            number = int(cleaned)
            low, high = _INT_RANGES[vr]
            if not low <= number <= high:
                return None
            numbers.append(number)
    except ValueError:
        return None
    return numbers or None
