"""A local or network folder of images with caption sidecars.

Layout: ``photo.jpg`` (any format Pillow decodes: JPEG, PNG, WebP, GIF, BMP,
TIFF) next to ``photo.txt`` (the caption, UTF-8) or ``photo.json``
(``{"caption": "...", "event_time": "2026-01-02T03:04:05+00:00"}``).  The
source id is the path relative to the root without its suffix.

Anything unusable (undecodable image, empty or missing caption, a file of an
unknown type, a caption without an image) becomes a :class:`BadRecordError`
naming the file and the fix; the caller quarantines it and goes on.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import ensure_utc, from_timestamp
from schemas.records import RawObject, SourceRecord

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
CAPTION_SUFFIXES = (".txt", ".json")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_OFFSET_TIME_ORIGINAL = 36881


class ImageFolderConfig(ConnectorConfig):
    """Where the folder is and how to read it.

    ``timezone`` is the IANA zone of the camera clock, used for EXIF times
    that carry no offset.
    """

    root: Path
    source: str = Field(default="image_folder", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    require_caption: bool = True
    timezone: str = "UTC"
    max_caption_bytes: int = Field(default=64 * 1024, ge=1)


class ImageFolderConnector(Connector[ImageFolderConfig]):
    """Lists and reads an image folder; pure apart from reading the files.

    Incremental by file modification time (the newest of an image and its
    sidecar, in nanoseconds); the pipeline's sha256 check then skips files
    that were touched but not changed.  A backfill window selects by that time.
    """

    name = "image_folder"
    config_class = ImageFolderConfig
    requires = ("PIL",)

    def __init__(self, config: ImageFolderConfig) -> None:
        super().__init__(config)
        self.root = config.root.expanduser().resolve()
        try:
            self.zone = ZoneInfo(config.timezone)
        except Exception:
            raise ConfigError(f"unknown timezone {config.timezone!r} for source {config.source!r}; use an IANA "
                              "name such as 'UTC' or 'Europe/Berlin'", setting="timezone") from None

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"source folder {self.root} does not exist or is not a directory; set the "
                              "source_dir param (or ROSETTA_SOURCE_DIR) to a folder of images",
                              setting="source_dir")

    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """What is new in the folder after ``state`` and inside ``window``, sorted by source id."""
        state, window = state or State(), window or Window()
        items = [item for item in self._scan() if item.problem is not None or state.is_new(item)]
        if window.bounded:
            items = [item for item in items if window.contains(from_timestamp(int(item.cursor or 0) / 1e9))]
        return items

    def _scan(self) -> list[Item]:
        """Everything in the folder, sorted by source id (deterministic batches)."""
        self.check()
        groups: dict[str, dict[str, str]] = {}
        items: list[Item] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or name in IGNORED_NAMES:
                    continue
                rel = Path(dirpath, name).relative_to(self.root).as_posix()
                stem, suffix = os.path.splitext(rel)
                suffix = suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    groups.setdefault(stem, {}).setdefault("image", rel)
                elif suffix in CAPTION_SUFFIXES:
                    groups.setdefault(stem, {}).setdefault("caption", rel)
                else:
                    items.append(Item(
                        source_id=rel, cursor=self._mtime_ns(rel), ref={"path": rel},
                        problem=f"unknown file type {suffix or '(no suffix)'!r}; supported images: "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))} with a .txt or .json caption sidecar"))
        for stem, files in groups.items():
            cursor = max(self._mtime_ns(rel) for rel in files.values())
            if "image" not in files:
                items.append(Item(source_id=stem, cursor=cursor, ref={"path": files["caption"]},
                                  problem="caption sidecar without an image; add the image or remove the caption file"))
            else:
                items.append(Item(source_id=stem, cursor=cursor, ref=dict(files)))
        return sorted(items, key=lambda item: (item.source_id, item.ref.get("path", "")))

    def _mtime_ns(self, rel: str) -> int:
        try:
            return (self.root / rel).stat().st_mtime_ns
        except OSError:
            return 0

    def fetch(self, item: Item) -> list[SourceRecord]:
        return [self.parse(item, self.read_files(item))]

    def read_files(self, item: Item) -> dict[str, bytes]:
        """The item's raw bytes by role (``image``, ``caption``, or ``file`` for a rejected file)."""
        if item.problem is not None:
            return {"file": self._read_file(item.ref.get("path", item.source_id), item.source_id)}
        files = {"image": self._read_file(item.ref["image"], item.source_id)}
        if item.ref.get("caption"):
            files["caption"] = self._read_file(item.ref["caption"], item.source_id)
        return files

    def parse(self, item: Item, files: dict[str, bytes]) -> SourceRecord:
        """Validate the bytes :meth:`read_files` returned and build the record (no I/O but the mtime)."""
        if item.problem is not None:
            raise BadRecordError(f"{item.ref.get('path')}: {item.problem}", source_id=item.source_id,
                                 payload=files.get("file"))
        image_name: str = item.ref["image"]
        image_bytes = files["image"]
        media_type, exif_time = self._check_image(image_name, image_bytes, item.source_id)
        caption, caption_bytes, caption_type, sidecar_time = self._read_caption(item, image_bytes,
                                                                                files.get("caption"))
        if sidecar_time is not None:
            event_time, origin = sidecar_time, "sidecar"
        elif exif_time is not None:
            event_time, origin = exif_time, "exif"
        else:
            event_time, origin = from_timestamp(os.stat(self.root / image_name).st_mtime), "mtime"
        objects = [RawObject("image", image_bytes, media_type)]
        if caption_bytes:
            objects.append(RawObject("caption", caption_bytes, caption_type))
        return SourceRecord(source=self.config.source, source_id=item.source_id, event_time=event_time,
                            objects=tuple(objects), text=caption or None, event_time_origin=origin,
                            metadata={"path": image_name})

    # -- parsing -------------------------------------------------------------------------------
    def _read_file(self, rel: str, source_id: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except OSError as exc:
            raise BadRecordError(f"{rel}: cannot read file ({exc.strerror})", source_id=source_id) from None

    def _check_image(self, rel: str, data: bytes, source_id: str) -> tuple[str, datetime | None]:
        """Check the image is complete and readable; return its media type and EXIF time.

        JPEG: the headers parse and the scan ends with an end-of-image marker
        (what a truncated upload loses; libjpeg itself decodes damaged scan data
        without complaint).  PNG: every chunk's CRC up to IEND.  Other formats:
        a full decode.  The encoders decode every image fully later and
        quarantine what still fails there.
        """
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or "?"
                if fmt not in SUPPORTED_FORMATS:
                    raise BadRecordError(f"{rel}: image format {fmt} is not supported; convert it to JPEG or PNG",
                                         source_id=source_id, payload=data)
                if image.width < 1 or image.height < 1:
                    raise ValueError(f"image has no pixels ({image.width}x{image.height})")
                exif_time = self._exif_time(image)
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
            raise BadRecordError(f"{rel}: cannot decode image ({type(exc).__name__}: {exc}); re-export the file "
                                 "or remove it from the source folder", source_id=source_id, payload=data) from None
        return media_type, exif_time

    def _exif_time(self, image: Any) -> datetime | None:
        try:
            exif = image.getexif().get_ifd(_EXIF_IFD)
            raw = exif.get(_DATETIME_ORIGINAL)
            if not raw:
                return None
            naive = datetime.strptime(str(raw).strip(), "%Y:%m:%d %H:%M:%S")
            offset = exif.get(_OFFSET_TIME_ORIGINAL)
            if offset:
                return ensure_utc(datetime.fromisoformat(naive.isoformat() + str(offset).strip()))
            return ensure_utc(naive.replace(tzinfo=self.zone))
        except Exception:  # unreadable EXIF is not a reason to drop the picture
            return None

    def _read_caption(self, item: Item, image_bytes: bytes,
                      raw: bytes | None) -> tuple[str, bytes, str, datetime | None]:
        caption_name: str = item.ref.get("caption", "")
        if raw is None:
            if self.config.require_caption:
                raise BadRecordError(f"{item.ref['image']}: no caption sidecar; add {item.source_id}.txt or "
                                     f"{item.source_id}.json next to the image", source_id=item.source_id,
                                     payload=image_bytes)
            return "", b"", "text/plain; charset=utf-8", None
        if len(raw) > self.config.max_caption_bytes:
            raise BadRecordError(f"{caption_name}: caption is {len(raw)} bytes, over the "
                                 f"{self.config.max_caption_bytes}-byte limit", source_id=item.source_id,
                                 payload=raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRecordError(f"{caption_name}: caption is not UTF-8 ({exc.reason} at byte {exc.start}); "
                                 "save it as UTF-8", source_id=item.source_id, payload=raw) from None
        event_time = None
        if caption_name.lower().endswith(".json"):
            text, event_time = self._parse_json_sidecar(item, text, raw)
            media_type = "application/json"
        else:
            media_type = "text/plain; charset=utf-8"
        if not text.strip():
            raise BadRecordError(f"{caption_name}: empty caption; write the caption text or remove the file",
                                 source_id=item.source_id, payload=image_bytes)
        return text.strip(), raw, media_type, event_time

    def _parse_json_sidecar(self, item: Item, text: str, raw: bytes) -> tuple[str, datetime | None]:
        caption_name = item.ref.get("caption", "")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRecordError(f"{caption_name}: invalid JSON sidecar ({exc.msg} at line {exc.lineno}); fix it "
                                 "or use a .txt caption", source_id=item.source_id, payload=raw) from None
        if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
            raise BadRecordError(f"{caption_name}: JSON sidecar needs a string field 'caption'",
                                 source_id=item.source_id, payload=raw)
        event_time = None
        if data.get("event_time") is not None:
            try:
                event_time = ensure_utc(datetime.fromisoformat(str(data["event_time"])), name="event_time")
            except ValueError as exc:
                raise BadRecordError(f"{caption_name}: event_time {data['event_time']!r} is not an ISO 8601 "
                                     f"time with a UTC offset ({exc})", source_id=item.source_id,
                                     payload=raw) from None
        return data["caption"], event_time


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
