"""Encode a (de-identified) dataset back to PS3.10 bytes, fast where pydicom would copy bytes anyway.

Writing is the largest cost of read + de-identify + store.  pydicom's writer spends tens of
microseconds per element in Python, also for the raw elements it only copies (every element that
de-identification and the reader never touched: most of a header, and the pixel data).
:func:`write_instance` writes exactly what ``ds.save_as`` writes, but assembles the raw elements' tag,
VR, length and value itself, also inside sequences and the file meta, and leaves converted elements
(replaced values) and items built in memory to pydicom's writer.  The last element (usually the pixel
data) is joined to the output instead of copied into a growing buffer.

The fast path is taken only when pydicom would write every raw element as it was read: a public,
non-deflated transfer syntax that matches the encoding the dataset was read in, with the character set
unchanged (otherwise pydicom converts every element and re-encodes it); any element it does not write
the way pydicom would (no VR, a short VR too long for its length field, odd-length or unencapsulated
pixel data) sends the whole dataset to ``ds.save_as``.  ``tests/unit/test_dicom_writing.py`` checks that
both give identical bytes for every readable file of pydicom's corpus, de-identified and not.
"""

from __future__ import annotations

import io
import struct
from copy import deepcopy
from typing import Any

from rosetta.core.errors import BadRecordError

PIXEL_DATA = 0x7FE00010
_GROUP_LENGTH = 0x00020000
_UNDEFINED = 0xFFFFFFFF
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)


def write_instance(ds: Any, label: str, source_id: str) -> bytes:
    """``ds`` as the PS3.10 bytes ``ds.save_as`` would write.  BadRecordError naming ``label`` if it cannot."""
    encoding = _fast_encoding(ds)
    if encoding is None:
        return _write_all(ds, label, source_id)
    try:
        return _FastWriter(*encoding).file(ds)
    except _Unusual:
        return _write_all(ds, label, source_id)
    except Exception as exc:  # pydicom raises several types for unwritable values
        raise BadRecordError(f"{label}: the de-identified instance cannot be written ({type(exc).__name__}: {exc})",
                             source_id=source_id) from None


class _Unusual(Exception):
    """Something the fast path does not write the way pydicom would: write the dataset with pydicom."""


def _fast_encoding(ds: Any) -> tuple[bool, bool, bool] | None:
    """(implicit VR, little endian, compressed) when the fast path writes what pydicom writes; else None."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta else None
    if not syntax or syntax.is_private or not syntax.is_transfer_syntax or str(syntax) in _DEFLATED:
        return None
    implicit, little = bool(syntax.is_implicit_VR), bool(syntax.is_little_endian)
    if implicit and not little:
        return None
    if ds.original_encoding != (implicit, little) or ds.original_character_set != ds._character_set:
        return None  # pydicom converts and re-encodes every element
    return implicit, little, bool(syntax.is_compressed)


class _FastWriter:
    """Mirrors pydicom's dcmwrite / write_dataset / write_data_element for one encoding (see the module doc)."""

    def __init__(self, implicit: bool, little: bool, compressed: bool) -> None:
        from pydicom.filebase import DicomBytesIO

        self.implicit, self.compressed = implicit, compressed
        order = "<" if little else ">"
        self.tag = struct.Struct(order + "HH")
        self.short = struct.Struct(order + "HH2sH")  # tag, VR, 2-byte length
        self.long = struct.Struct(order + "HH2s2xL")  # tag, VR, reserved, 4-byte length
        self.implicit_header = struct.Struct(order + "HHL")  # tag, 4-byte length
        self.item_tag = self.tag.pack(*_ITEM)
        self.tail: list[bytes] = []  # the last element's pieces when it is raw (pixel data): joined, not copied twice
        self.fp = DicomBytesIO()
        self.fp.is_implicit_VR, self.fp.is_little_endian = implicit, little

    def file(self, ds: Any) -> bytes:
        preamble = getattr(ds, "preamble", None)
        if preamble:
            if len(preamble) != 128:
                raise _Unusual
            self.fp.write(preamble)
            self.fp.write(b"DICM")
        if ds.file_meta:
            self.meta(ds.file_meta)
        tags = sorted(ds.keys())
        if tags and tags[0] >> 16 in (0, 2):
            raise _Unusual  # pydicom refuses command or file meta elements in the body
        self.dataset(ds, tags, ds.get("SpecificCharacterSet", "iso8859"), top=True)
        return b"".join([self.fp.getvalue(), *self.tail])

    def meta(self, file_meta: Any) -> None:
        """The File Meta Information (explicit VR little endian), as ``write_file_meta_info`` writes it."""
        from pydicom.dataset import validate_file_meta
        from pydicom.filewriter import write_file_meta_info

        validate_file_meta(file_meta, enforce_standard=False)
        if file_meta.original_encoding != (False, True):  # built in memory: pydicom converts it, let it
            write_file_meta_info(self.fp, deepcopy(file_meta), enforce_standard=False)
            return
        writer = _FastWriter(False, True, False)
        tags = sorted(file_meta.keys())
        writer.dataset(file_meta, [tag for tag in tags if tag != _GROUP_LENGTH], "iso8859")
        rest = writer.fp.getvalue()
        if tags and tags[0] == _GROUP_LENGTH:  # its value: the bytes after it
            self.fp.write(struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(rest)))
        self.fp.write(rest)

    def dataset(self, ds: Any, tags: list[Any], charset: Any, top: bool = False) -> None:
        from pydicom.dataelem import RawDataElement
        from pydicom.filewriter import write_data_element

        fp = self.fp
        last = tags[-1] if top and tags else None
        for tag in tags:
            if tag & 0xFFFF == 0 and tag >> 16 > 6:  # retired group lengths are not written (PS3.5 7.2)
                continue
            elem = ds.get_item(tag)
            if isinstance(elem, RawDataElement):
                self.raw(elem, top and tag == PIXEL_DATA, self.tail.append if tag == last else fp.write)
            elif elem.VR == "SQ" and not (top and tag == PIXEL_DATA):
                self.sequence(elem, charset)
            else:
                write_data_element(fp, elem, charset)

    def header(self, tag: int, vr: str | None, length: int) -> bytes:
        group, element = tag >> 16, tag & 0xFFFF
        if self.implicit:
            return self.implicit_header.pack(group, element, length)
        if not vr or len(vr) != 2:
            raise _Unusual
        if vr in _LONG_VRS:
            return self.long.pack(group, element, vr.encode("ascii"), length)
        if length == _UNDEFINED or length > 0xFFFF:
            raise _Unusual  # pydicom rewrites the VR as UN
        return self.short.pack(group, element, vr.encode("ascii"), length)

    def raw(self, elem: Any, pixel_data: bool, write: Any) -> None:
        value = elem.value
        if value is None:
            raise _Unusual
        if pixel_data:  # dcmwrite makes it a DataElement, undefined length exactly when the syntax is compressed
            undefined = self.compressed
            if elem.VR not in (None, "OB", "OW") or len(value) % 2 or (undefined and
                                                                       not value.startswith(self.item_tag)):
                raise _Unusual  # pydicom converts, pads or refuses such pixel data
        else:
            undefined = elem.length == _UNDEFINED
        write(self.header(elem.tag, elem.VR, _UNDEFINED if undefined else len(value)))
        write(value)
        if undefined:
            write(self.tag.pack(*_SEQUENCE_DELIMITER) + bytes(4))

    def sequence(self, elem: Any, charset: Any) -> None:
        from pydicom.charset import convert_encodings
        from pydicom.filewriter import write_dataset

        fp = self.fp
        undefined = bool(elem.is_undefined_length)
        fp.write(self.header(elem.tag, "SQ", _UNDEFINED))
        length_at = fp.tell() - 4
        start = fp.tell()
        encodings = convert_encodings(charset or ["iso8859"])
        for item in elem.value or ():
            fp.write(self.item_tag + b"\xff\xff\xff\xff")
            item_length_at = fp.tell() - 4
            if item.original_encoding != (fp.is_implicit_VR, fp.is_little_endian) or \
                    item.original_character_set != item._character_set:
                write_dataset(fp, item, parent_encoding=encodings)  # pydicom converts this item: let it
            else:
                self.dataset(item, sorted(item.keys()), item.get("SpecificCharacterSet", encodings))
            if getattr(item, "is_undefined_length_sequence_item", False):
                fp.write(self.tag.pack(*_ITEM_DELIMITER) + bytes(4))
            else:
                self.patch_length(item_length_at)
        if undefined:
            fp.write(self.tag.pack(*_SEQUENCE_DELIMITER) + bytes(4))
        else:
            end = fp.tell()
            fp.seek(length_at)
            fp.write_UL(end - start)
            fp.seek(end)

    def patch_length(self, at: int) -> None:
        fp = self.fp
        end = fp.tell()
        fp.seek(at)
        fp.write_UL(end - at - 4)
        fp.seek(end)


def _write_all(ds: Any, label: str, source_id: str) -> bytes:
    out = io.BytesIO()
    try:
        try:
            ds.save_as(out)
        except (TypeError, ValueError):
            # An element read without a VR (implicit data under an explicit meta) cannot be written raw:
            # converting every element gives each its dictionary VR; then write again.
            for _ in ds.iterall():
                pass
            out = io.BytesIO()
            ds.save_as(out)
    except Exception as exc:  # pydicom raises several types for unwritable values
        raise BadRecordError(f"{label}: the de-identified instance cannot be written ({type(exc).__name__}: {exc})",
                             source_id=source_id) from None
    return out.getvalue()
