"""A folder of videos with subtitle sidecars: one record per sampled frame, paired with its cue.

Layout: ``talk.mp4`` (``.mp4``, ``.mkv``, ``.webm``, ``.mov``) next to ``talk.srt`` or
``talk.vtt`` (UTF-8; a BOM and CRLF line ends are fine) and optionally ``talk.json``
(``{"start_time": "2026-01-02T03:04:05+01:00"}``).  One item is one video; its source id is
the path relative to the root without the suffix, and the cursor is the newest modification
time (ns) of the video and its sidecars.

``sampling="cues"`` takes one frame per subtitle cue, the frame on screen at the cue's
midpoint; ``sampling="rate"`` takes frames at a fixed rate (``fps``) and pairs each with the
cue on screen at that frame's time, if any.  Frame times are the decoded frames' exact
presentation timestamps (PTS), so a record's source id ``<video id>@<pts ms>`` and its
event time (media start + PTS, UTC) name the very frame it holds.

The media start (the absolute time of PTS 0) comes from the first of ``start_time_from``
that has one: the container's ``creation_time`` tag (UTC in MP4/MOV and Matroska), the JSON
sidecar's ``start_time``, or the video file's modification time; which one is recorded in
``event_time_origin``.

Subtitles are parsed here (SRT and WebVTT: cue settings, tags like ``<i>``, multi-line
cues) and rolling auto-captions (each cue repeating the previous cue's last line, as
YouTube's do) are reduced to the new text of each cue.  A video that cannot be decoded, a
subtitle file that cannot be parsed, or a video without subtitles (unless allowed) becomes a
:class:`BadRecordError` naming the file and the fix; a single cue that ends before it
starts is skipped and listed in every record's ``skipped_cues``.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import ensure_utc, from_timestamp
from schemas.records import RawObject, SourceRecord

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")
SUBTITLE_SUFFIXES = (".srt", ".vtt")  # when both exist, the first wins
START_TIME_SUFFIX = ".json"
#: Videos larger than this are not copied into quarantine (the file stays in the source folder).
QUARANTINE_PAYLOAD_LIMIT = 64 * 1024 * 1024
#: Decode forward instead of seeking when the next frame wanted is at most this far ahead (s).
SEEK_AHEAD_S = Fraction(2)
#: Rolling captions follow each other without a gap; a repeat after a longer pause (s) is kept.
ROLLING_MAX_GAP_MS = 500
#: Container times before this are "unset" placeholders (the MP4 epoch 1904, the POSIX epoch).
_EARLIEST_PLAUSIBLE = datetime(1971, 1, 1, tzinfo=UTC)
_CONTAINER_TIME_TAGS = ("com.apple.quicktime.creationdate", "creation_time")

StartTimeOrigin = Literal["container", "sidecar", "mtime"]


class VideoSubtitlesConfig(ConnectorConfig):
    """Where the videos are and how to sample them.

    ``fps``: frames per second of media time in ``rate`` mode.  ``max_frames_per_video``: at
    most this many records per video; more samples are thinned evenly over the video.
    ``frame_format``/``jpeg_quality``: how frames are encoded.  ``start_time_from``: where the
    media start time may come from, in order of preference.  ``require_subtitles``: a video
    without a subtitle file is quarantined (otherwise it is sampled at ``fps`` without text).
    ``dedupe_rolling_captions``: keep only the new line of rolling auto-captions.
    """

    root: Path
    source: str = Field(default="video_subtitles", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    sampling: Literal["cues", "rate"] = "cues"
    fps: float = Field(default=1.0, gt=0, le=120)
    max_frames_per_video: int = Field(default=1000, ge=1)
    frame_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(default=90, ge=1, le=95)
    start_time_from: tuple[StartTimeOrigin, ...] = Field(default=("container", "sidecar", "mtime"), min_length=1)
    require_subtitles: bool = True
    dedupe_rolling_captions: bool = True
    subtitle_encoding: str = "utf-8"
    max_subtitle_bytes: int = Field(default=16 * 1024 * 1024, ge=1)


# -- subtitles (pure) ------------------------------------------------------------------------------
class SubtitleError(ValueError):
    """A subtitle file that cannot be parsed; the message names the line."""


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue: ``start_ms``/``end_ms`` in milliseconds of media time; ``number`` is its
    1-based position in the file; ``text`` is plain text (tags removed, lines joined by ``\\n``)."""

    number: int
    start_ms: int
    end_ms: int
    text: str

    @property
    def midpoint(self) -> Fraction:
        """The cue's middle in seconds of media time (exact)."""
        return Fraction(self.start_ms + self.end_ms, 2000)

    def covers(self, seconds: Fraction) -> bool:
        """True if the cue is on screen at ``seconds`` of media time (``[start, end)``)."""
        return Fraction(self.start_ms, 1000) <= seconds < Fraction(self.end_ms, 1000)


@dataclass(frozen=True, slots=True)
class Subtitles:
    """A parsed subtitle file: cues in time order and notes on the cues that were dropped."""

    format: str
    cues: tuple[Cue, ...]
    skipped: tuple[str, ...] = field(default=())


_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+(.*))?$")
_TAG = re.compile(r"<[^>]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")


def _ms(hours: str | None, minutes: str, seconds: str, fraction: str) -> int:
    if int(minutes) > 59 or int(seconds) > 59:
        raise ValueError("minutes or seconds above 59")
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(fraction.ljust(3, "0"))


def parse_timing(line: str) -> tuple[int, int] | None:
    """``00:01:02,500 --> 00:01:04.000 [settings]`` as (start ms, end ms); None if not a timing line.

    Accepts ``,`` or ``.`` before the milliseconds and optional hours (WebVTT); raises
    SubtitleError for a line with an arrow whose times are malformed.
    """
    if "-->" not in line:
        return None
    match = _TIMING.match(line)
    if not match:
        raise SubtitleError(f"malformed timing line {line.strip()!r} (expected HH:MM:SS,mmm --> HH:MM:SS,mmm)")
    groups = match.groups()
    try:
        return _ms(*groups[0:4]), _ms(*groups[4:8])
    except ValueError as exc:
        raise SubtitleError(f"malformed timing line {line.strip()!r} ({exc})") from None


def clean_cue_text(lines: Sequence[str]) -> str:
    """Cue payload lines as plain text: tags (``<i>``, ``<c.red>``, ``<v Name>``, inline
    timestamps), ASS overrides (``{\\an8}``) and entities removed, blank lines dropped."""
    out = []
    for line in lines:
        text = html.unescape(_ASS_OVERRIDE.sub("", _TAG.sub("", line))).replace("\u200e", "").replace("\u200f", "")
        text = " ".join(text.split())
        if text:
            out.append(text)
    return "\n".join(out)


def _lines(text: str) -> list[str]:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_srt(text: str) -> list[tuple[int, int, list[str]]]:
    """SubRip text as (start ms, end ms, payload lines) per cue, in file order.

    A cue is an optional number line, a timing line and its text lines; text after a
    blank line that is neither a number nor a timing continues the previous cue (a common
    authoring slip).  SubtitleError if there is text before the first cue.
    """
    lines = _lines(text)
    raw: list[tuple[int, int, list[str]]] = []
    in_cue = False
    for number, line in enumerate(lines, 1):
        try:
            timing = parse_timing(line)
        except SubtitleError as exc:
            raise SubtitleError(f"line {number}: {exc}") from None
        if timing is not None:
            raw.append((timing[0], timing[1], []))
            in_cue = True
        elif not line.strip():
            in_cue = False
        elif line.strip().isdigit() and number < len(lines) and "-->" in lines[number]:
            continue  # the cue number
        elif raw and (in_cue or raw[-1][2]):
            raw[-1][2].append(line)
            in_cue = True
        else:
            raise SubtitleError(f"line {number}: expected a cue number or a timing line, found {line.strip()[:60]!r}")
    return raw


def parse_vtt(text: str) -> list[tuple[int, int, list[str]]]:
    """WebVTT text as (start ms, end ms, payload lines) per cue, in file order.

    Skips the header, ``NOTE``, ``STYLE`` and ``REGION`` blocks and cue identifiers;
    cue settings after the timing are ignored.  SubtitleError without the ``WEBVTT`` signature.
    """
    lines = _lines(text)
    if not lines or not (lines[0] == "WEBVTT" or lines[0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise SubtitleError("line 1: missing the WEBVTT signature")
    raw: list[tuple[int, int, list[str]]] = []
    block: list[tuple[int, str]] = []
    for number, line in [*enumerate(lines, 1), (len(lines) + 1, "")]:
        if line:  # only an empty line ends a block; a line of spaces is (blank) cue text
            block.append((number, line))
            continue
        if block and block[0][0] != 1 and not block[0][1].startswith(("NOTE", "STYLE", "REGION")):
            timing_at = next((i for i, (_, text_line) in enumerate(block[:2]) if "-->" in text_line), None)
            if timing_at is None:
                raise SubtitleError(f"line {block[0][0]}: a block without a timing line")
            line_number, timing_line = block[timing_at]
            try:
                timing = parse_timing(timing_line)
            except SubtitleError as exc:
                raise SubtitleError(f"line {line_number}: {exc}") from None
            assert timing is not None
            raw.append((timing[0], timing[1], [text_line for _, text_line in block[timing_at + 1:]]))
        block = []
    return raw


def dedupe_rolling(cues: Sequence[Cue], *, max_gap_ms: int = ROLLING_MAX_GAP_MS) -> list[Cue]:
    """Rolling auto-captions reduced to each cue's new text.

    In rolling captions each cue starts with the line(s) the previous cue ended with; those
    lines are removed, and a cue left empty (the short "repeat" cues) is dropped.  Only cues
    that follow the previous one within ``max_gap_ms`` are compared, so a line genuinely
    said twice after a pause stays.
    """
    out: list[Cue] = []
    previous: Cue | None = None
    for cue in cues:
        lines = cue.text.split("\n")
        if previous is not None and cue.start_ms - previous.end_ms <= max_gap_ms:
            before = previous.text.split("\n")
            overlap = next((n for n in range(min(len(lines), len(before)), 0, -1) if lines[:n] == before[-n:]), 0)
            lines = lines[overlap:]
        previous = cue
        if lines:
            out.append(Cue(cue.number, cue.start_ms, cue.end_ms, "\n".join(lines)))
    return out


def parse_subtitles(text: str, *, fmt: str, dedupe: bool = True) -> Subtitles:
    """Parse SRT (``fmt="srt"``) or WebVTT (``"vtt"``) text into cues sorted by start time.

    A cue that ends before it starts, or has no text, is skipped and noted in
    ``skipped``; SubtitleError if the file cannot be parsed.
    """
    raw = parse_srt(text) if fmt == "srt" else parse_vtt(text)
    cues: list[Cue] = []
    skipped: list[str] = []
    for number, (start, end, payload) in enumerate(raw, 1):
        if end < start:
            skipped.append(f"cue {number}: ends ({end} ms) before it starts ({start} ms)")
            continue
        text_ = clean_cue_text(payload)
        if not text_:
            skipped.append(f"cue {number}: no text")
            continue
        cues.append(Cue(number, start, end, text_))
    cues.sort(key=lambda cue: (cue.start_ms, cue.number))
    if dedupe:
        cues = dedupe_rolling(cues)
    return Subtitles(format=fmt, cues=tuple(cues), skipped=tuple(skipped))


# -- sampling (pure) -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    """A wanted frame: the frame on screen at ``at`` seconds of media time, and the cue it is for."""

    at: Fraction
    cue: Cue | None = None


def thin_evenly(samples: Sequence[Sample], limit: int) -> list[Sample]:
    """At most ``limit`` of ``samples``, spread evenly from the first to the last."""
    if len(samples) <= limit:
        return list(samples)
    if limit == 1:
        return [samples[0]]
    return [samples[round(i * (len(samples) - 1) / (limit - 1))] for i in range(limit)]


def plan_samples(cues: Sequence[Cue], *, sampling: str, fps: float, duration: Fraction | None,
                 limit: int) -> list[Sample]:
    """The frames to take, in time order: cue midpoints, or every ``1/fps`` s up to ``duration``."""
    if sampling == "cues":
        samples = [Sample(cue.midpoint, cue) for cue in sorted(cues, key=lambda c: (c.midpoint, c.number))]
    else:
        step = 1 / Fraction(fps).limit_denominator(1_000_000)
        count = int(duration / step) + (0 if duration % step == 0 else 1) if duration is not None else limit
        samples = [Sample(k * step) for k in range(count)]
    return thin_evenly(samples, limit)


# -- the connector ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Frame:
    position: Fraction  # seconds since the stream start (exact PTS arithmetic)
    pts: int
    image: bytes
    cues: list[Cue] = field(default_factory=list)


class VideoSubtitlesConnector(Connector[VideoSubtitlesConfig]):
    """Lists a video folder and samples frames with their subtitle text.

    Incremental by modification time (ns, the newest of a video and its sidecars); a
    backfill window selects by that time (UTC).
    """

    name = "video_subtitles"
    config_class = VideoSubtitlesConfig
    requires = ("av",)
    extra = "video"

    def __init__(self, config: VideoSubtitlesConfig) -> None:
        super().__init__(config)
        self.root = config.root.expanduser().resolve()
        try:
            "".encode(config.subtitle_encoding)
        except LookupError:
            raise ConfigError(f"unknown subtitle encoding {config.subtitle_encoding!r}; use a Python codec name "
                              "such as 'utf-8' or 'cp1252'", setting="subtitle_encoding") from None

    def check(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"video folder {self.root} does not exist or is not a directory; set the option "
                              "'root' to a folder of videos with .srt/.vtt sidecars", setting="root")

    # -- listing -----------------------------------------------------------------------------------
    def list_items(self, state: State, window: Window) -> list[Item]:
        """New videos (and unusable sidecars) after ``state``, inside ``window`` by mtime, by source id."""
        items = list(self.new_items(self._scan(), state))
        return [item for item in items if window.contains_mtime_ns(int(item.cursor or 0))]

    def _scan(self) -> list[Item]:
        self.check()
        groups: dict[str, dict[str, str]] = {}
        items: list[Item] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                rel = Path(dirpath, name).relative_to(self.root).as_posix()
                stem, suffix = os.path.splitext(rel)
                suffix = suffix.lower()
                role = ("video" if suffix in VIDEO_SUFFIXES else "subtitles" if suffix in SUBTITLE_SUFFIXES
                        else "start_time" if suffix == START_TIME_SUFFIX else None)
                if role is None:
                    continue  # thumbnails, notes: not this connector's
                files = groups.setdefault(stem, {})
                if role in files and (role != "subtitles" or _subtitle_rank(files[role]) < _subtitle_rank(rel)):
                    if role == "video":
                        items.append(Item(source_id=rel, cursor=self._mtime_ns(rel), ref={"path": rel},
                                          problem=f"another video is also called {stem!r}; rename one of them"))
                    continue
                files[role] = rel
        for stem, files in groups.items():
            cursor = max(self._mtime_ns(rel) for rel in files.values())
            if "video" in files:
                items.append(Item(source_id=stem, cursor=cursor, ref=dict(files)))
            else:
                for rel in files.values():
                    items.append(Item(source_id=rel, cursor=self._mtime_ns(rel), ref={"path": rel},
                                      problem="sidecar without a video; add the video (" +
                                              "/".join(VIDEO_SUFFIXES) + ") with the same name or remove it"))
        return sorted(items, key=lambda item: item.source_id)

    def _mtime_ns(self, rel: str) -> int:
        try:
            return (self.root / rel).stat().st_mtime_ns
        except OSError:
            return 0

    # -- fetching ----------------------------------------------------------------------------------
    def fetch(self, item: Item) -> list[SourceRecord]:
        """One record per sampled frame of the item's video, in time order."""
        if item.problem is not None:
            path = item.ref.get("path", item.source_id)
            raise BadRecordError(f"{path}: {item.problem}", source_id=item.source_id,
                                 payload=self._read(path, item.source_id))
        video_rel: str = item.ref["video"]
        subtitles = self._subtitles(item)
        if subtitles is not None and not subtitles.cues:
            raise BadRecordError(f"{item.ref['subtitles']}: no usable cues ({'; '.join(subtitles.skipped) or 'empty'})"
                                 "; fix the subtitle file", source_id=item.source_id,
                                 payload=self._read(item.ref["subtitles"], item.source_id))
        sidecar_time = self._sidecar_start(item)
        cues = subtitles.cues if subtitles is not None else ()
        sampling = self.config.sampling if subtitles is not None else "rate"
        try:
            start, origin, frames = self._decode(video_rel, cues, sampling, sidecar_time)
        except BadRecordError as exc:
            raise BadRecordError(f"{video_rel}: {exc.reason}", source_id=item.source_id,
                                 payload=self._video_payload(video_rel)) from None
        if not frames:
            raise BadRecordError(f"{video_rel}: no frame at any cue time (do the subtitles belong to this video?)",
                                 source_id=item.source_id, payload=self._video_payload(video_rel))
        media_type = "image/jpeg" if self.config.frame_format == "jpeg" else "image/png"
        common: dict[str, Any] = {"video": video_rel, "sampling": sampling,
                                  "media_start": start.isoformat(), "subtitles": item.ref.get("subtitles")}
        if subtitles is not None and subtitles.skipped:
            common["skipped_cues"] = list(subtitles.skipped)
        records = []
        for frame in frames:
            ms = round(frame.position * 1000)
            metadata = {**common, "pts_s": float(frame.position), "pts": frame.pts}
            if frame.cues:
                metadata["cues"] = [{"number": c.number, "start_s": c.start_ms / 1000, "end_s": c.end_ms / 1000}
                                    for c in frame.cues]
                metadata["cue_start_s"] = frame.cues[0].start_ms / 1000
                metadata["cue_end_s"] = frame.cues[-1].end_ms / 1000
            records.append(SourceRecord(
                source=self.source, source_id=f"{item.source_id}@{ms}",
                event_time=start + timedelta(microseconds=round(frame.position * 1_000_000)),
                objects=(RawObject("image", frame.image, media_type),),
                text="\n".join(c.text for c in frame.cues) or None,
                keys={"video_id": item.source_id}, metadata=metadata, event_time_origin=origin))
        return records

    def _read(self, rel: str, source_id: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except OSError as exc:
            raise BadRecordError(f"{rel}: cannot read file ({exc.strerror})", source_id=source_id) from None

    def _video_payload(self, rel: str) -> bytes | None:
        path = self.root / rel
        try:
            return path.read_bytes() if path.stat().st_size <= QUARANTINE_PAYLOAD_LIMIT else None
        except OSError:
            return None

    def _subtitles(self, item: Item) -> Subtitles | None:
        rel = item.ref.get("subtitles")
        if rel is None:
            if self.config.require_subtitles:
                raise BadRecordError(f"{item.ref['video']}: no subtitle file; add {item.source_id}.srt or "
                                     f"{item.source_id}.vtt, or set require_subtitles: false",
                                     source_id=item.source_id)
            return None
        raw = self._read(rel, item.source_id)
        if len(raw) > self.config.max_subtitle_bytes:
            raise BadRecordError(f"{rel}: {len(raw)} bytes, over max_subtitle_bytes "
                                 f"({self.config.max_subtitle_bytes})", source_id=item.source_id, payload=raw)
        encoding = self.config.subtitle_encoding
        try:
            text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
        except UnicodeDecodeError as exc:
            raise BadRecordError(f"{rel}: not valid {encoding} text ({exc.reason} at byte {exc.start}); save it as "
                                 "UTF-8 or set subtitle_encoding", source_id=item.source_id, payload=raw) from None
        fmt = rel.rsplit(".", 1)[-1].lower()
        try:
            return parse_subtitles(text, fmt=fmt, dedupe=self.config.dedupe_rolling_captions)
        except SubtitleError as exc:
            raise BadRecordError(f"{rel}: unparseable {fmt.upper()} subtitles, {exc}; fix or replace the file",
                                 source_id=item.source_id, payload=raw) from None

    def _sidecar_start(self, item: Item) -> datetime | None:
        """The JSON sidecar's ``start_time`` (UTC); BadRecordError if the sidecar is there but wrong."""
        rel = item.ref.get("start_time")
        if rel is None or "sidecar" not in self.config.start_time_from:
            return None
        raw = self._read(rel, item.source_id)
        try:
            data = json.loads(raw)
            value = data["start_time"]
            return ensure_utc(datetime.fromisoformat(value), name="start_time")
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise BadRecordError(f"{rel}: needs {{\"start_time\": \"<ISO 8601 time with offset>\"}} ({exc})",
                                 source_id=item.source_id, payload=raw) from None

    def _decode(self, rel: str, cues: Sequence[Cue], sampling: str,
                sidecar_time: datetime | None) -> tuple[datetime, str, list[_Frame]]:
        """Open the video, find its start time and take the planned frames (BadRecordError if unusable)."""
        import av

        path = self.root / rel
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise BadRecordError(f"cannot open the video ({exc}); the file is corrupt, truncated or not a "
                                 "video") from None
        with container:
            if not container.streams.video:
                raise BadRecordError("no video stream in the file")
            stream = container.streams.video[0]
            start, origin = self._media_start(container, path, sidecar_time)
            duration = _video_duration(container, stream)
            samples = plan_samples(cues, sampling=sampling, fps=self.config.fps, duration=duration,
                                   limit=self.config.max_frames_per_video)
            try:
                frames = self._take(container, stream, samples, cues, duration)
                if duration is not None:
                    _check_complete(container, stream, duration)
            except av.error.FFmpegError as exc:
                raise BadRecordError(f"cannot decode the video ({exc}); the file is corrupt or truncated") from None
        return start, origin, frames

    def _media_start(self, container: Any, path: Path, sidecar_time: datetime | None) -> tuple[datetime, str]:
        """The absolute UTC time of media position 0, and where it came from."""
        for origin in self.config.start_time_from:
            if origin == "container":
                found = _container_time(container)
                if found is not None:
                    return found, "container"
            elif origin == "sidecar" and sidecar_time is not None:
                return sidecar_time, "sidecar"
            elif origin == "mtime":
                return from_timestamp(path.stat().st_mtime), "mtime"
        raise BadRecordError(f"no start time from any of {', '.join(self.config.start_time_from)}; add a "
                             f"{path.stem}.json sidecar with start_time or allow 'mtime' in start_time_from")

    def _take(self, container: Any, stream: Any, samples: Sequence[Sample], cues: Sequence[Cue],
              duration: Fraction | None) -> list[_Frame]:
        """The frames on screen at the samples' times, one per distinct frame, with their cues."""
        by_pts: dict[int, _Frame] = {}
        order: list[_Frame] = []
        for sample, frame in _frames_at(container, stream, samples, duration):
            position = _position(frame, stream)
            taken = by_pts.get(frame.pts)
            if taken is None:
                taken = _Frame(position=position, pts=frame.pts, image=self._encode(frame))
                by_pts[frame.pts] = taken
                order.append(taken)
                if sample.cue is None:  # rate mode: pair with the cue(s) on screen at this frame
                    taken.cues.extend(cue for cue in cues if cue.covers(position))
            if sample.cue is not None and sample.cue not in taken.cues:
                taken.cues.append(sample.cue)
        return order

    def _encode(self, frame: Any) -> bytes:
        image = frame.to_image()
        out = io.BytesIO()
        if self.config.frame_format == "jpeg":
            image.convert("RGB").save(out, format="JPEG", quality=self.config.jpeg_quality)
        else:
            image.save(out, format="PNG")
        return out.getvalue()


def _subtitle_rank(rel: str) -> int:
    return SUBTITLE_SUFFIXES.index(os.path.splitext(rel)[1].lower())


def _position(frame: Any, stream: Any) -> Fraction:
    """Exact seconds since the stream start of a decoded frame (``frame.time`` as a fraction)."""
    start = stream.start_time or 0
    return (Fraction(frame.pts) - start) * Fraction(stream.time_base)


def _frames_at(container: Any, stream: Any, samples: Sequence[Sample],
               duration: Fraction | None) -> Iterator[tuple[Sample, Any]]:
    """(sample, frame on screen at the sample's time) for samples in time order.

    The frame on screen at ``t`` is the last one with PTS <= t.  Decodes forward, seeking
    (to the keyframe before the time) only when the next sample is more than
    :data:`SEEK_AHEAD_S` ahead.  A sample past the last frame's display time is dropped.
    """
    base = Fraction(stream.time_base)
    start = stream.start_time or 0
    interval = _frame_interval(stream)
    decoder: Iterator[Any] | None = None
    shown: Any = None  # last frame with position <= the current sample
    ahead: Any = None  # first decoded frame after it
    exhausted = False
    for sample in sorted(samples, key=lambda s: s.at):
        current = ahead if ahead is not None else shown
        if decoder is None or (current is not None and sample.at - _position(current, stream) > SEEK_AHEAD_S):
            container.seek(int(sample.at / base) + start, stream=stream, backward=True, any_frame=False)
            decoder = (f for f in container.decode(stream) if f.pts is not None)
            shown, ahead, exhausted = None, None, False
        if ahead is not None and _position(ahead, stream) <= sample.at:
            shown, ahead = ahead, None
        while ahead is None and not exhausted:
            frame = next(decoder, None)
            if frame is None:
                exhausted = True
            elif _position(frame, stream) <= sample.at:
                shown = frame
            else:
                ahead = frame
        if shown is None:
            if ahead is not None and sample.at < _position(ahead, stream):
                yield sample, ahead  # before the first frame: the first frame is what a player shows
            continue
        if exhausted and sample.at >= (duration if duration is not None else _position(shown, stream) + interval):
            continue  # after the end of the video
        yield sample, shown


def _video_duration(container: Any, stream: Any) -> Fraction | None:
    """The video stream's declared length in seconds, if the file says (MP4 stream, Matroska tag, container)."""
    if stream.duration:
        return Fraction(stream.duration) * Fraction(stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    if tag:
        match = re.match(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$", tag.strip())
        if match:
            return (Fraction(int(match[1]) * 3600 + int(match[2]) * 60) + Fraction(match[3]))
    if container.duration:
        return Fraction(container.duration, 1_000_000)
    return None


def _frame_interval(stream: Any) -> Fraction:
    """Seconds between frames (from the stream's average rate; 0.1 s if the file does not say)."""
    rate = stream.average_rate or stream.guessed_rate
    return 1 / Fraction(rate) if rate else Fraction(1, 10)


def _check_complete(container: Any, stream: Any, duration: Fraction) -> None:
    """BadRecordError if the frames stop well before the declared duration (a truncated file)."""
    interval = _frame_interval(stream)
    slack = max(Fraction(1, 2), 2 * interval)
    probe = max(Fraction(0), duration - 2 * slack)
    base = Fraction(stream.time_base)
    container.seek(int(probe / base) + (stream.start_time or 0), stream=stream, backward=True, any_frame=False)
    last: Fraction | None = None
    for frame in container.decode(stream):
        if frame.pts is not None:
            last = _position(frame, stream)
    if last is None or last + interval < duration - slack:
        ends = "no frames" if last is None else f"the last frame at {float(last):.3f} s"
        raise BadRecordError(f"the video stops early ({ends}; the file says it lasts {float(duration):.3f} s): "
                             "it is truncated; copy it again")


def _container_time(container: Any) -> datetime | None:
    """The container's recording time as UTC (an unset 1904/1970 placeholder counts as none).

    MP4/MOV ``creation_time`` and Matroska ``DateUTC`` are UTC by their specs, so a time
    without an offset is read as UTC; Apple's ``creationdate`` carries its own offset.
    """
    tags: dict[str, str] = {}
    for source in (container.metadata or {}, *((s.metadata or {}) for s in container.streams.video)):
        for key, value in source.items():
            tags.setdefault(key.lower(), value)
    for key in _CONTAINER_TIME_TAGS:
        value = tags.get(key)
        if not value:
            continue
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            continue
        moment = ensure_utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
        if moment >= _EARLIEST_PLAUSIBLE:
            return moment
    return None
