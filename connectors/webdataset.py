"""WebDataset shards: plain tar files of samples in a local or network folder.

A shard ``shard-000001.tar`` holds samples as members grouped by key, the
member name up to the first dot of its base name (WebDataset's rule):
``cats/tom.jpg`` + ``cats/tom.txt`` (caption, UTF-8) and/or ``cats/tom.json``
(``{"caption": "...", "text": "...", "event_time": "2026-01-02T03:04:05+00:00"}``).
Members with other extensions (``tom.cls``, ``tom.seg.png``) are named in the
record's metadata and not ingested.  Only the standard library's
:mod:`tarfile` is used.

One item is one sample; its source id is ``<shard path without .tar>/<key>``.
The incremental cursor is the shard's modification time in nanoseconds, so a
new (or rewritten) shard lists all its samples and an old one none.  The
event time is the JSON sidecar's ``event_time``, else the image member's
mtime (UTC).  The item records each member's data offset and size, so a fetch
reads just those bytes.

A truncated or corrupt shard does not stop the listing: every sample read
before the damage is listed, a sample with a member cut short is a problem
item, and the unreadable rest of the shard is one problem item
``<shard>/_unreadable_tail`` to quarantine.  Compressed shards (``.tar.gz``)
are not read: WebDataset shards are plain tar so members can be read in place.
"""

from __future__ import annotations

import re
import tarfile
from datetime import UTC
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from connectors.media import IMAGE_SUFFIXES, check_image, read_sidecars
from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import from_timestamp
from schemas.records import RawObject, SourceRecord

MiB = 1024 * 1024
#: Image extensions, most preferred first when a sample has several.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", *sorted(s[1:] for s in IMAGE_SUFFIXES
                                                          if s[1:] not in ("jpg", "jpeg", "png", "webp")))
TAIL_ID = "_unreadable_tail"
_KEY_EXT = re.compile(r"^((?:.*/)?[^./][^./]*)\.([^/]*)$")  # WebDataset's base_plus_ext, hidden names excluded
_BLOCK = tarfile.BLOCKSIZE


class WebDatasetConfig(ConnectorConfig):
    """Where the shards are and how to read them.

    ``pattern`` is a glob relative to ``root`` (``**/*.tar`` to include
    subfolders).  Sizes are in bytes.
    """

    root: Path
    pattern: str = Field(default="*.tar", min_length=1)
    source: str = Field(default="webdataset", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    require_caption: bool = True
    max_caption_bytes: int = Field(default=64 * 1024, ge=1)
    max_member_bytes: int = Field(default=256 * MiB, ge=1)

    @field_validator("pattern")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("pattern is a glob relative to root, such as '*.tar' or '**/*.tar'")
        return value


class WebDatasetConnector(Connector[WebDatasetConfig]):
    """Lists the samples of a folder of WebDataset tar shards and reads them; no client, only files."""

    name = "webdataset"
    config_class = WebDatasetConfig
    requires = ("PIL",)

    def __init__(self, config: WebDatasetConfig) -> None:
        super().__init__(config)
        self.root = config.root.expanduser().resolve()

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"WebDataset folder {self.root} does not exist or is not a directory; set root to "
                              "the folder holding the .tar shards", setting="root")

    # -- listing -------------------------------------------------------------------------------
    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """Samples of shards modified after ``state`` and inside ``window`` (by shard mtime), sorted by source id.

        Problem items (a sample without an image, a member cut short, the
        unreadable tail of a shard) are always listed, as the SDK's
        :meth:`~connectors.sdk.Connector.new_items` does.
        """
        state, window = state or State(), window or Window()
        self.check()
        items: list[Item] = []
        for shard in sorted(p for p in self.root.glob(self.config.pattern) if p.is_file()):
            try:
                mtime_ns = shard.stat().st_mtime_ns
            except OSError:  # deleted while listing
                continue
            if not window.contains_mtime_ns(mtime_ns):
                continue
            items.extend(self.new_items(self.scan_shard(shard), state))
        return sorted(items, key=lambda item: item.source_id)

    def scan_shard(self, shard: Path) -> list[Item]:
        """The samples of one shard in member order, plus a problem item for any unreadable tail."""
        rel = shard.relative_to(self.root).as_posix()
        shard_id = rel[:-4] if rel.lower().endswith(".tar") else rel
        stat = shard.stat()
        cursor = stat.st_mtime_ns
        samples: dict[str, dict[str, dict[str, Any]]] = {}
        problems: dict[str, str] = {}
        tail: Item | None = None
        with shard.open("rb") as handle:
            end, damage = 0, ""
            try:
                with tarfile.open(fileobj=handle, mode="r:") as tar:
                    for member in tar:
                        end = tar.offset  # where the next header starts
                        self._add_member(member, stat.st_size, samples, problems)
                    end = tar.offset
                handle.seek(end)  # a complete tar has zero blocks where its members end
                marker = handle.read(_BLOCK)
                if len(marker) < _BLOCK or marker.strip(b"\0"):
                    damage = ("no end-of-archive marker where the members end: the shard is truncated or has "
                              "garbage after its last member")
            except (tarfile.TarError, EOFError, OSError) as exc:
                damage = f"{type(exc).__name__}: {exc}"
            if damage:
                end = min(end, stat.st_size)
                tail = Item(source_id=f"{shard_id}/{TAIL_ID}", cursor=cursor,
                            ref={"shard": rel, "offset": end, "size": stat.st_size - end},
                            problem=f"shard {rel} is unreadable from byte {end} of {stat.st_size} ({damage}); "
                                    "the samples before it were listed; re-write the shard to recover the rest")
        items = []
        for key, members in samples.items():
            source_id = f"{shard_id}/{key}"
            problem = problems.get(key)
            if problem is None and not any(ext in members for ext in IMAGE_EXTENSIONS):
                problem = (f"sample has no image member (has: {', '.join('.' + e for e in members)}); add "
                           f"{key}.jpg (or .png, .webp) to the shard")
            items.append(Item(source_id=source_id, cursor=cursor, ref={"shard": rel, "members": members},
                              problem=problem))
        return [*items, *([tail] if tail else [])]

    def _add_member(self, member: tarfile.TarInfo, shard_size: int, samples: dict[str, dict[str, dict[str, Any]]],
                    problems: dict[str, str]) -> None:
        if member.isdir():
            return
        match = _KEY_EXT.match(member.name.removeprefix("./"))
        if match is None:  # hidden members (macOS ._ files) and names without an extension are no sample
            return
        key, ext = match.group(1), match.group(2).lower()
        members = samples.setdefault(key, {})
        if ext in members:
            problems.setdefault(key, f"member {member.name} appears twice in the shard; write each member once")
            return
        members[ext] = {"name": member.name, "offset": member.offset_data, "size": member.size,
                        "mtime": member.mtime}
        if not member.isreg() or member.issparse():
            problems.setdefault(key, f"member {member.name} is not a regular file; store the bytes themselves")
        elif member.offset_data + member.size > shard_size:
            problems.setdefault(key, f"member {member.name} is cut short: {member.size} bytes from byte "
                                     f"{member.offset_data} but the shard ends at byte {shard_size}")

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, item: Item) -> list[SourceRecord]:
        """Read the sample's members in place and build its record (BadRecordError if unusable)."""
        shard = self.root / item.ref["shard"]
        if item.problem is None:
            item = self._current(shard, item)
        if item.problem is not None:
            raise BadRecordError(item.problem, source_id=item.source_id, payload=self._problem_bytes(shard, item))
        members: dict[str, dict[str, Any]] = item.ref["members"]
        image_ext = next(ext for ext in IMAGE_EXTENSIONS if ext in members)
        image_member = members[image_ext]
        image_name = f"{item.ref['shard']}:{image_member['name']}"
        image = self._read(shard, image_member, item.source_id)
        media_type, _ = check_image(image_name, image, source_id=item.source_id, zone=UTC)
        sidecars = read_sidecars(
            source_id=item.source_id, image=image,
            txt=(f"{item.ref['shard']}:{members['txt']['name']}", self._read(shard, members["txt"], item.source_id))
            if "txt" in members else None,
            json_sidecar=(f"{item.ref['shard']}:{members['json']['name']}",
                          self._read(shard, members["json"], item.source_id)) if "json" in members else None,
            max_bytes=self.config.max_caption_bytes, require_caption=self.config.require_caption,
            missing_hint=f"add a .txt member (or a .json with 'caption') for {image_name}")
        if sidecars.event_time is not None:
            event_time, origin = sidecars.event_time, "sidecar"
        else:
            event_time, origin = from_timestamp(float(image_member["mtime"])), "mtime"
        others = sorted(m["name"] for ext, m in members.items() if ext not in (image_ext, "txt", "json"))
        return [SourceRecord(
            source=self.config.source, source_id=item.source_id, event_time=event_time,
            objects=(RawObject("image", image, media_type), *sidecars.objects), text=sidecars.text,
            event_time_origin=origin,
            metadata={"shard": item.ref["shard"], "member": image_member["name"], "other_members": others})]

    def _current(self, shard: Path, item: Item) -> Item:
        """``item`` as the shard holds it now: rescanned if the shard was rewritten since listing."""
        try:
            mtime_ns = shard.stat().st_mtime_ns
        except OSError as exc:
            raise BadRecordError(f"shard {item.ref['shard']} cannot be read ({exc.strerror}); it was removed "
                                 "after listing", source_id=item.source_id) from None
        if mtime_ns == item.cursor:
            return item
        fresh = next((i for i in self.scan_shard(shard) if i.source_id == item.source_id), None)
        if fresh is None:
            raise BadRecordError(f"sample is no longer in shard {item.ref['shard']}, which was rewritten after "
                                 "listing", source_id=item.source_id)
        return fresh

    def _read(self, shard: Path, member: dict[str, Any], source_id: str) -> bytes:
        size = int(member["size"])
        if size > self.config.max_member_bytes:
            raise BadRecordError(f"{shard.name}:{member['name']} is {size} bytes, over max_member_bytes "
                                 f"({self.config.max_member_bytes})", source_id=source_id)
        try:
            with shard.open("rb") as handle:
                handle.seek(int(member["offset"]))
                data = handle.read(size)
        except OSError as exc:
            raise BadRecordError(f"{shard.name}:{member['name']}: cannot read ({exc.strerror})",
                                 source_id=source_id) from None
        if len(data) < size:
            raise BadRecordError(f"{shard.name}:{member['name']} is cut short: {len(data)} of {size} bytes",
                                 source_id=source_id, payload=data or None)
        return data

    def _problem_bytes(self, shard: Path, item: Item) -> bytes | None:
        """The bytes a problem item keeps in quarantine: its members, or the shard's unreadable tail."""
        limit = self.config.max_member_bytes
        try:
            with shard.open("rb") as handle:
                if "members" not in item.ref:
                    handle.seek(int(item.ref["offset"]))
                    return handle.read(limit) or None
                parts = []
                for member in sorted(item.ref["members"].values(), key=lambda m: int(m["offset"])):
                    handle.seek(int(member["offset"]))
                    parts.append(handle.read(min(int(member["size"]), limit)))
                return b"".join(parts) or None
        except OSError:
            return None

