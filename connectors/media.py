"""Checks shared by the connectors that read images with caption sidecars.

Pure functions over bytes (no I/O): is an image complete and decodable, what
is its media type and EXIF capture time (UTC), and is a caption sidecar
usable text.  Every failure is a :class:`BadRecordError` that names the file
and the fix and carries the bytes to keep in quarantine.  Pillow is imported
only when an image is checked.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from rosetta.core.errors import BadRecordError
from rosetta.core.timeutil import ensure_utc
from schemas.records import RawObject

#: File suffixes (lower case, with the dot) read as images.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
#: Pillow formats accepted as images.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_OFFSET_TIME_ORIGINAL = 36881


def check_image(name: str, data: bytes, *, source_id: str, zone: tzinfo) -> tuple[str, datetime | None]:
    """Check the image ``data`` (read from ``name``) is complete and readable; return its media type and EXIF time.

    The common case, a JPEG or PNG without EXIF, is checked straight from its
    bytes (:func:`plain_image_type`); everything else goes through Pillow.
    JPEG: the headers parse and the scan ends with an end-of-image marker
    (what a truncated upload loses; libjpeg itself decodes damaged scan data
    without complaint).  PNG: every chunk's CRC up to IEND.  Other formats:
    a full decode.  The encoders decode every image fully later and
    quarantine what still fails there.  ``zone`` is the camera clock's zone
    for EXIF times without an offset; the returned time is UTC.
    """
    fast = plain_image_type(data)
    if fast is not None:
        return fast, None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or "?"
            if fmt not in SUPPORTED_FORMATS:
                raise BadRecordError(f"{name}: image format {fmt} is not supported; convert it to JPEG or PNG",
                                     source_id=source_id, payload=data)
            if image.width < 1 or image.height < 1:
                raise ValueError(f"image has no pixels ({image.width}x{image.height})")
            capture_time = exif_time(image, zone)
            media_type = Image.MIME.get(fmt, "application/octet-stream")
            if fmt in ("JPEG", "MPO"):
                if not jpeg_is_complete(data):
                    raise ValueError("JPEG ends before its end-of-image marker: the file is truncated")
            elif fmt == "PNG":
                with Image.open(io.BytesIO(data)) as fresh:  # verify() must come straight after open
                    fresh.verify()
            else:
                image.load()
    except BadRecordError:
        raise
    except Exception as exc:
        raise BadRecordError(f"{name}: cannot decode image ({type(exc).__name__}: {exc}); re-export the file "
                             "or remove it from the source", source_id=source_id, payload=data) from None
    return media_type, capture_time


def exif_time(image: Any, zone: tzinfo) -> datetime | None:
    """The EXIF DateTimeOriginal of an open Pillow image in UTC (``zone`` if it has no offset), or None."""
    try:
        exif = image.getexif().get_ifd(_EXIF_IFD)
        raw = exif.get(_DATETIME_ORIGINAL)
        if not raw:
            return None
        naive = datetime.strptime(str(raw).strip(), "%Y:%m:%d %H:%M:%S")
        offset = exif.get(_OFFSET_TIME_ORIGINAL)
        if offset:
            return ensure_utc(datetime.fromisoformat(naive.isoformat() + str(offset).strip()))
        return ensure_utc(naive.replace(tzinfo=zone))
    except Exception:  # unreadable EXIF is not a reason to drop the picture
        return None


def decode_caption(name: str, raw: bytes, *, source_id: str, max_bytes: int) -> str:
    """The sidecar ``raw`` (read from ``name``) as text: at most ``max_bytes`` bytes of UTF-8."""
    if len(raw) > max_bytes:
        raise BadRecordError(f"{name}: caption is {len(raw)} bytes, over the {max_bytes}-byte limit",
                             source_id=source_id, payload=raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecordError(f"{name}: caption is not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8",
                             source_id=source_id, payload=raw) from None


def parse_json_sidecar(name: str, text: str, raw: bytes, *, source_id: str,
                       caption_fields: tuple[str, ...] = ("caption",),
                       require_caption: bool = True) -> tuple[str | None, datetime | None, dict[str, Any]]:
    """A JSON sidecar's caption (the first of ``caption_fields`` present), event time (UTC) and whole object.

    ``event_time`` must be ISO 8601 with a UTC offset.  Raises BadRecordError
    (keeping ``raw``) for invalid JSON, a non-object, a non-string caption or
    a missing one when ``require_caption``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecordError(f"{name}: invalid JSON sidecar ({exc.msg} at line {exc.lineno}); fix it "
                             "or use a .txt caption", source_id=source_id, payload=raw) from None
    fields = " or ".join(repr(f) for f in caption_fields)
    if not isinstance(data, dict):
        raise BadRecordError(f"{name}: JSON sidecar must be an object with a string field {fields}",
                             source_id=source_id, payload=raw)
    present = [f for f in caption_fields if data.get(f) is not None]
    caption = data[present[0]] if present else None
    if (caption is None and require_caption) or (caption is not None and not isinstance(caption, str)):
        raise BadRecordError(f"{name}: JSON sidecar needs a string field {fields}", source_id=source_id,
                             payload=raw)
    event_time = None
    if data.get("event_time") is not None:
        try:
            event_time = ensure_utc(datetime.fromisoformat(str(data["event_time"])), name="event_time")
        except ValueError as exc:
            raise BadRecordError(f"{name}: event_time {data['event_time']!r} is not an ISO 8601 "
                                 f"time with a UTC offset ({exc})", source_id=source_id, payload=raw) from None
    return caption, event_time, data


@dataclass(frozen=True, slots=True)
class Sidecars:
    """What a sample's caption sidecars give: the caption text, an event time (UTC) and the raw objects."""

    text: str | None
    event_time: datetime | None
    objects: tuple[RawObject, ...]


def read_sidecars(*, source_id: str, image: bytes, txt: tuple[str, bytes] | None,
                  json_sidecar: tuple[str, bytes] | None, max_bytes: int, require_caption: bool,
                  missing_hint: str, caption_fields: tuple[str, ...] = ("caption", "text")) -> Sidecars:
    """Validate a sample's ``.txt`` and/or ``.json`` sidecars, each given as ``(name, bytes)``.

    The caption is the ``.txt`` text, else the JSON's first of
    ``caption_fields``; the event time is the JSON's ``event_time``.  The
    ``.txt`` is kept with role ``caption``; the JSON with role ``caption`` when
    it holds the caption and ``metadata`` when a ``.txt`` does.  A missing
    caption (when ``require_caption``; ``missing_hint`` says what to add) or an
    empty one is a BadRecordError that keeps the image bytes.
    """
    text: str | None = None
    event_time: datetime | None = None
    objects: list[RawObject] = []
    caption_name = ""
    if txt is not None:
        caption_name, raw = txt
        text = decode_caption(caption_name, raw, source_id=source_id, max_bytes=max_bytes)
        objects.append(RawObject("caption", raw, TEXT_MEDIA_TYPE))
    if json_sidecar is not None:
        name, raw = json_sidecar
        decoded = decode_caption(name, raw, source_id=source_id, max_bytes=max_bytes)
        json_caption, event_time, _ = parse_json_sidecar(name, decoded, raw, source_id=source_id,
                                                         caption_fields=caption_fields,
                                                         require_caption=require_caption and txt is None)
        if txt is None and json_caption is not None:
            text, caption_name = json_caption, name
            objects.append(RawObject("caption", raw, JSON_MEDIA_TYPE))
        else:
            objects.append(RawObject("metadata", raw, JSON_MEDIA_TYPE))
    if text is None:
        if require_caption:
            raise BadRecordError(f"no caption; {missing_hint}", source_id=source_id, payload=image)
        return Sidecars(None, event_time, tuple(objects))
    if not text.strip():
        raise BadRecordError(f"{caption_name}: empty caption; write the caption text or remove the sidecar",
                             source_id=source_id, payload=image)
    return Sidecars(text.strip(), event_time, tuple(objects))


# JPEG markers without a length field (TEM, RSTn, SOI, EOI).
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def jpeg_is_complete(data: bytes) -> bool:
    """True if the JPEG's segments lead to a scan that ends with an EOI marker.

    Walks the header segments by their lengths (so an EXIF thumbnail's own
    markers are skipped) to the first start-of-scan, then looks for EOI after
    it.  Inside scan data every 0xFF byte is stuffed or a restart marker, so
    the first 0xFFD9 there is the real end.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return False
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos + 2 + length) != -1
        pos += 2 + length
    return False


# SOFn markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_U16 = struct.Struct(">H")
_SIZE = struct.Struct(">HH")


def plain_image_type(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` if ``data`` is a complete, well-formed JPEG or PNG without EXIF.

    Reads the structure straight from the bytes, the same checks :func:`check_image` makes through
    Pillow, in a fraction of the time: JPEG segments by their lengths to a frame header with a
    non-zero size and a scan that ends with EOI; PNG chunks with valid CRCs, IHDR first with a
    non-zero size, up to IEND.  Returns None for anything else (other formats, EXIF to read, any
    irregularity), which then goes the slow way and gets Pillow's verdict and message.
    """
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg" if _plain_jpeg(data) else None
    if data.startswith(_PNG_SIGNATURE):
        return "image/png" if _plain_png(data) else None
    return None


def _plain_jpeg(data: bytes) -> bool:
    pos, size, framed = 2, len(data), False
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = _U16.unpack_from(data, pos + 2)
        if length < 2 or pos + 2 + length > size:
            return False
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return False  # a capture time to read: Pillow parses EXIF
        if marker in _SOF:
            if length < 8:
                return False
            height, width = _SIZE.unpack_from(data, pos + 5)
            if not height or not width:
                return False
            framed = True
        if marker == 0xDA:  # the scan runs to EOI: at the very end, or before trailing padding
            return framed and (data.endswith(b"\xff\xd9") or data.find(b"\xff\xd9", pos + 2 + length) != -1)
        pos += 2 + length
    return False


def _plain_png(data: bytes) -> bool:
    import zlib

    pos, size, first = 8, len(data), True
    while pos + 12 <= size:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > size:
            return False
        if zlib.crc32(data[pos + 4:pos + 8 + length]) != int.from_bytes(data[pos + 8 + length:end], "big"):
            return False
        if first:
            if kind != b"IHDR" or length != 13 or not int.from_bytes(data[pos + 8:pos + 12], "big") or \
                    not int.from_bytes(data[pos + 12:pos + 16], "big"):
                return False
            first = False
        elif kind == b"eXIf":
            return False
        if kind == b"IEND":
            return True
        pos = end
    return False
