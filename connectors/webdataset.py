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

import os
import re
import tarfile
import threading
from collections import OrderedDict
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
_ZERO_BLOCK = bytes(_BLOCK)
_OPEN_SHARDS = 32  # descriptors kept open for fetching (least recently used closed first)
# Header types the fast walk reads itself: regular files (tarfile's REGTYPE, AREGTYPE, CONTTYPE), links,
# devices, fifos and folders.  Anything else (GNU long names, pax headers, sparse files) goes to tarfile.
_FAST_REGULAR = frozenset(b"0\x007")
_FAST_OTHER = frozenset(b"123456")

# (name, is_dir, regular, offset of the data, size, mtime): what listing needs of a member
_Member = tuple[str, bool, bool, int, int, int]


def _octal(field: bytes) -> int | None:
    """A header number (NUL/space padded octal); None for base-256 or garbage (tarfile then decides)."""
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _fast_members(handle: Any, shard_size: int) -> tuple[list[_Member], int] | None:
    """The members of a plain ustar/GNU/v7 shard and where they end, read straight from the headers.

    The same reading as :mod:`tarfile` for the headers tar writers emit for WebDataset shards, at a
    fraction of the cost.  Returns None at the first thing it does not handle itself (a long name or
    pax header, a base-256 number, a bad checksum, a header cut short, no end marker): the caller
    then reads the shard with :mod:`tarfile`, which gives the authoritative answer and error.
    """
    members: list[_Member] = []
    offset = 0
    while True:
        handle.seek(offset)
        block = handle.read(_BLOCK)
        if len(block) < _BLOCK:
            return None
        if block == _ZERO_BLOCK:
            return members, offset
        kind = block[156]
        if kind not in _FAST_REGULAR and kind not in _FAST_OTHER:
            return None
        checksum = _octal(block[148:156])
        if checksum is None or checksum != sum(block) - sum(block[148:156]) + 256:
            return None
        size, mtime = _octal(block[124:136]), _octal(block[136:148])
        if size is None or mtime is None:
            return None
        name = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        prefix = block[345:500].split(b"\0", 1)[0]
        is_dir = kind == 0x35 or (kind == 0 and name.endswith("/"))
        if is_dir:
            name = name.rstrip("/")
        if prefix:
            name = prefix.decode("utf-8", "surrogateescape") + "/" + name
        regular = kind in _FAST_REGULAR and not is_dir
        members.append((name, is_dir, regular, offset + _BLOCK, size, mtime))
        offset += _BLOCK
        if regular:
            offset += -(-size // _BLOCK) * _BLOCK
        if offset > shard_size:
            return None


def _tarfile_member(member: tarfile.TarInfo) -> _Member:
    return (member.name, member.isdir(), member.isreg() and not member.issparse(), member.offset_data,
            member.size, int(member.mtime))


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
        # fetch reads members with os.pread from one descriptor per shard and thread (LRU, closed by close())
        self._local = threading.local()
        self._fds: set[int] = set()
        self._fds_lock = threading.Lock()

    def close(self) -> None:
        with self._fds_lock:
            fds, self._fds = self._fds, set()
        for fd in fds:
            os.close(fd)
        self._local = threading.local()

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
            fast = _fast_members(handle, stat.st_size)
            if fast is not None:  # a clean shard: its headers read directly, its end marker found
                headers, end = fast
                for member in headers:
                    self._add_member(member, stat.st_size, samples, problems)
            else:
                try:
                    handle.seek(0)
                    with tarfile.open(fileobj=handle, mode="r:") as tar:
                        for info in tar:
                            end = tar.offset  # where the next header starts
                            self._add_member(_tarfile_member(info), stat.st_size, samples, problems)
                        end = tar.offset
                    handle.seek(end)  # a complete tar has zero blocks where its members end
                    marker = handle.read(_BLOCK)
                    if len(marker) < _BLOCK or marker.strip(b"\0"):
                        damage = ("no end-of-archive marker where the members end: the shard is truncated or "
                                  "has garbage after its last member")
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

    def _add_member(self, member: _Member, shard_size: int, samples: dict[str, dict[str, dict[str, Any]]],
                    problems: dict[str, str]) -> None:
        name, is_dir, regular, offset, size, mtime = member
        if is_dir:
            return
        match = _KEY_EXT.match(name.removeprefix("./"))
        if match is None:  # hidden members (macOS ._ files) and names without an extension are no sample
            return
        key, ext = match.group(1), match.group(2).lower()
        members = samples.setdefault(key, {})
        if ext in members:
            problems.setdefault(key, f"member {name} appears twice in the shard; write each member once")
            return
        members[ext] = {"name": name, "offset": offset, "size": size, "mtime": mtime}
        if not regular:
            problems.setdefault(key, f"member {name} is not a regular file; store the bytes themselves")
        elif offset + size > shard_size:
            problems.setdefault(key, f"member {name} is cut short: {size} bytes from byte "
                                     f"{offset} but the shard ends at byte {shard_size}")

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, item: Item) -> list[SourceRecord]:
        """Read the sample's members in place and build its record (BadRecordError if unusable)."""
        shard = self.root / item.ref["shard"]
        if item.problem is None:
            fd, item = self._current(shard, item)
        if item.problem is not None:
            raise BadRecordError(item.problem, source_id=item.source_id, payload=self._problem_bytes(shard, item))
        members: dict[str, dict[str, Any]] = item.ref["members"]
        image_ext = next(ext for ext in IMAGE_EXTENSIONS if ext in members)
        image_member = members[image_ext]
        image_name = f"{item.ref['shard']}:{image_member['name']}"
        image = self._read(fd, shard, image_member, item.source_id)
        media_type, _ = check_image(image_name, image, source_id=item.source_id, zone=UTC)
        sidecars = read_sidecars(
            source_id=item.source_id, image=image,
            txt=(f"{item.ref['shard']}:{members['txt']['name']}", self._read(fd, shard, members["txt"], item.source_id))
            if "txt" in members else None,
            json_sidecar=(f"{item.ref['shard']}:{members['json']['name']}",
                          self._read(fd, shard, members["json"], item.source_id)) if "json" in members else None,
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

    def _current(self, shard: Path, item: Item) -> tuple[int, Item]:
        """An open descriptor of the shard and ``item`` as the shard holds it now (rescanned if rewritten)."""
        fd = self._shard_fd(shard, item.source_id)
        if os.fstat(fd).st_mtime_ns == item.cursor:
            return fd, item
        self._forget_fd(shard)  # replaced or rewritten since listing: read what is there now
        fd = self._shard_fd(shard, item.source_id)
        fresh = next((i for i in self.scan_shard(shard) if i.source_id == item.source_id), None)
        if fresh is None:
            raise BadRecordError(f"sample is no longer in shard {item.ref['shard']}, which was rewritten after "
                                 "listing", source_id=item.source_id)
        return fd, fresh

    def _shard_fd(self, shard: Path, source_id: str) -> int:
        """This thread's open descriptor of ``shard`` (opened on first use; the least recently used closed)."""
        cache: OrderedDict[Path, int] | None = getattr(self._local, "fds", None)
        if cache is None:
            cache = self._local.fds = OrderedDict()
        fd = cache.get(shard)
        if fd is not None:
            cache.move_to_end(shard)
            return fd
        try:
            fd = os.open(shard, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise BadRecordError(f"shard {shard.relative_to(self.root).as_posix()} cannot be read ({exc.strerror}); "
                                 "it was removed after listing", source_id=source_id) from None
        with self._fds_lock:
            self._fds.add(fd)
        cache[shard] = fd
        if len(cache) > _OPEN_SHARDS:
            _, old = cache.popitem(last=False)
            self._close_fd(old)
        return fd

    def _forget_fd(self, shard: Path) -> None:
        cache: OrderedDict[Path, int] | None = getattr(self._local, "fds", None)
        if cache is not None and shard in cache:
            self._close_fd(cache.pop(shard))

    def _close_fd(self, fd: int) -> None:
        with self._fds_lock:
            self._fds.discard(fd)
        os.close(fd)

    def _read(self, fd: int, shard: Path, member: dict[str, Any], source_id: str) -> bytes:
        size = int(member["size"])
        if size > self.config.max_member_bytes:
            raise BadRecordError(f"{shard.name}:{member['name']} is {size} bytes, over max_member_bytes "
                                 f"({self.config.max_member_bytes})", source_id=source_id)
        try:
            data = os.pread(fd, size, int(member["offset"]))
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

