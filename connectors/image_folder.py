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

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field

from connectors.media import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from connectors.media import JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE, check_image, decode_caption, parse_json_sidecar
from connectors.media import SUPPORTED_FORMATS as SUPPORTED_FORMATS
from connectors.media import jpeg_is_complete as jpeg_is_complete
from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import from_timestamp
from schemas.records import RawObject, SourceRecord

CAPTION_SUFFIXES = (".txt", ".json")
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


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
        # Relative paths are joined as strings: building a Path per file was a quarter of the listing time.
        self._root_prefix = str(self.root).rstrip(os.sep) + os.sep
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
        return [item for item in items if window.contains_mtime_ns(int(item.cursor or 0))]

    def _scan(self) -> list[Item]:
        """Everything in the folder, sorted by source id (deterministic batches).

        One ``os.scandir`` walk: the modification time comes from the directory entry
        (one ``stat`` per file, no path re-parsing), paths stay plain strings.
        """
        self.check()
        groups: dict[str, dict[str, tuple[str, int, int]]] = {}
        items: list[Item] = []
        stack = [("", str(self.root))]
        while stack:
            rel_prefix, path = stack.pop()
            try:
                with os.scandir(path) as it:
                    entries = list(it)
            except OSError as exc:
                raise ConfigError(f"cannot list {path} ({exc.strerror}); check the folder's permissions",
                                  setting="source_dir") from None
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name in IGNORED_NAMES:
                    continue
                if entry.is_dir():  # symlinked folders are not followed (as os.walk), so no cycles
                    if not entry.is_symlink():
                        stack.append((rel_prefix + name + "/", entry.path))
                    continue
                try:
                    stat = entry.stat()
                except OSError:  # vanished between listing and stat: the next run sees what is there
                    continue
                rel, mtime_ns = rel_prefix + name, stat.st_mtime_ns
                stem, suffix = os.path.splitext(rel)
                suffix = suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    groups.setdefault(stem, {}).setdefault("image", (rel, mtime_ns, stat.st_size))
                elif suffix in CAPTION_SUFFIXES:
                    groups.setdefault(stem, {}).setdefault("caption", (rel, mtime_ns, stat.st_size))
                else:
                    items.append(Item(
                        source_id=rel, cursor=mtime_ns, ref={"path": rel},
                        problem=f"unknown file type {suffix or '(no suffix)'!r}; supported images: "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))} with a .txt or .json caption sidecar"))
        for stem, files in groups.items():
            image, caption = files.get("image"), files.get("caption")
            if image is None:
                assert caption is not None
                items.append(Item(source_id=stem, cursor=caption[1], ref={"path": caption[0]},
                                  problem="caption sidecar without an image; add the image or remove the caption file"))
            # The image's mtime travels with the item (the event time falls back to it), the sizes as read hints.
            elif caption is None:
                items.append(Item(source_id=stem, cursor=image[1], ref={
                    "image": image[0], "image_mtime_ns": image[1], "image_size": image[2]}))
            else:
                items.append(Item(source_id=stem, cursor=max(image[1], caption[1]), ref={
                    "image": image[0], "caption": caption[0], "image_mtime_ns": image[1], "image_size": image[2],
                    "caption_size": caption[2]}))
        items.sort(key=lambda item: (item.source_id, item.ref.get("path", "")))
        return items

    def _mtime_ns(self, rel: str) -> int:
        try:
            return os.stat(self._root_prefix + rel).st_mtime_ns
        except OSError:
            return 0

    def fetch(self, item: Item) -> list[SourceRecord]:
        return [self.parse(item, self.read_files(item))]

    def read_files(self, item: Item) -> dict[str, bytes]:
        """The item's raw bytes by role (``image``, ``caption``, or ``file`` for a rejected file)."""
        if item.problem is not None:
            return {"file": self._read_file(item.ref.get("path", item.source_id), item.source_id)}
        files = {"image": self._read_file(item.ref["image"], item.source_id, item.ref.get("image_size"))}
        if item.ref.get("caption"):
            files["caption"] = self._read_file(item.ref["caption"], item.source_id, item.ref.get("caption_size"))
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
            mtime_ns = item.ref.get("image_mtime_ns") or os.stat(self._root_prefix + image_name).st_mtime_ns
            event_time, origin = from_timestamp(mtime_ns / 1e9), "mtime"
        objects = [RawObject("image", image_bytes, media_type)]
        if caption_bytes:
            objects.append(RawObject("caption", caption_bytes, caption_type))
        return SourceRecord(source=self.config.source, source_id=item.source_id, event_time=event_time,
                            objects=tuple(objects), text=caption or None, event_time_origin=origin,
                            metadata={"path": image_name})

    # -- parsing -------------------------------------------------------------------------------
    def _read_file(self, rel: str, source_id: str, size_hint: int | None = None) -> bytes:
        """The whole file.  With the size seen at listing, one ``read`` call usually gets it all; a file
        that changed since is still read to its end (unbuffered, no extra ``fstat``)."""
        try:
            fd = os.open(self._root_prefix + rel, _READ_FLAGS)
            try:
                data = os.read(fd, (size_hint or 64 * 1024) + 1)
                if size_hint is None or len(data) > size_hint:
                    chunks = [data]
                    while chunk := os.read(fd, 1024 * 1024):
                        chunks.append(chunk)
                    data = b"".join(chunks)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            raise BadRecordError(f"{rel}: cannot read file ({exc.strerror})", source_id=source_id) from None

    def _check_image(self, rel: str, data: bytes, source_id: str) -> tuple[str, datetime | None]:
        """Check the image is complete and readable; return its media type and EXIF time (see :func:`check_image`)."""
        return check_image(rel, data, source_id=source_id, zone=self.zone)

    def _read_caption(self, item: Item, image_bytes: bytes,
                      raw: bytes | None) -> tuple[str, bytes, str, datetime | None]:
        caption_name: str = item.ref.get("caption", "")
        if raw is None:
            if self.config.require_caption:
                raise BadRecordError(f"{item.ref['image']}: no caption sidecar; add {item.source_id}.txt or "
                                     f"{item.source_id}.json next to the image", source_id=item.source_id,
                                     payload=image_bytes)
            return "", b"", TEXT_MEDIA_TYPE, None
        text = decode_caption(caption_name, raw, source_id=item.source_id, max_bytes=self.config.max_caption_bytes)
        event_time = None
        if caption_name.lower().endswith(".json"):
            caption, event_time, _ = parse_json_sidecar(caption_name, text, raw, source_id=item.source_id)
            text, media_type = caption or "", JSON_MEDIA_TYPE
        else:
            media_type = TEXT_MEDIA_TYPE
        if not text.strip():
            raise BadRecordError(f"{caption_name}: empty caption; write the caption text or remove the file",
                                 source_id=item.source_id, payload=image_bytes)
        return text.strip(), raw, media_type, event_time
