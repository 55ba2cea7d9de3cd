"""Contract harness for ``video_subtitles``: real videos written with PyAV and real SRT/VTT files.

The video helpers here are also used by ``tests/unit/test_video_subtitles.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest


def grey_level(index: int) -> int:
    """Frame ``index`` of a test video is solid grey at this level (0-255), so a sample says which it is."""
    return 10 + (index % 20) * 12


def write_video(path: Path, *, frames: int = 20, fps: int = 10, creation_time: str | None = None,
                gop: int | None = None) -> Path:
    """A ``frames``-frame 64x48 video at ``fps`` (libx264 for .mp4/.mov, MPEG-4 part 2 for .mkv)."""
    import av
    import numpy as np

    codec = "libx264" if path.suffix in (".mp4", ".mov") else "mpeg4"
    with av.open(str(path), "w") as container:
        if creation_time:
            container.metadata["creation_time"] = creation_time
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for index in range(frames):
            pixels = np.full((48, 64, 3), grey_level(index), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_index(image: bytes, *, frames: int = 20) -> int:
    """Which test frame (mod 20) a sampled JPEG/PNG shows, from its grey level."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        level = float(np.asarray(picture.convert("L")).mean())
    return min(range(min(frames, 20)), key=lambda i: abs(grey_level(i) - level))


def srt(*cues: tuple[str, str, str]) -> str:
    """SubRip text for (start, end, text) cues, times as ``HH:MM:SS,mmm``."""
    return "\n".join(f"{n}\n{start} --> {end}\n{text}\n" for n, (start, end, text) in enumerate(cues, 1))


def vtt(*cues: tuple[str, str, str]) -> str:
    """WebVTT text for (start, end, text) cues, times as ``[HH:]MM:SS.mmm``."""
    return "WEBVTT\n\n" + "\n".join(f"{start} --> {end}\n{text}\n" for start, end, text in cues)


def touch_after_all(root: Path, paths: Sequence[Path]) -> None:
    """Give ``paths`` a modification time after every file under ``root`` (cursor order)."""
    for path in paths:
        stamp = max(p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()) + 10**9
        os.utime(path, ns=(stamp, stamp))


class VideoSubtitlesHarness:
    name = "video_subtitles"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "videos"
        (root / "talks").mkdir(parents=True)
        write_video(root / "intro.mp4", creation_time="2026-01-02T03:04:05.000000Z")
        (root / "intro.srt").write_text(srt(("00:00:00,000", "00:00:01,000", "Hello."),
                                            ("00:00:01,000", "00:00:02,000", "<i>Welcome</i> back.")))
        write_video(root / "talks" / "panel.mkv")
        (root / "talks" / "panel.vtt").write_text(vtt(("00:00.500", "00:01.500", "A panel.")))
        (root / "talks" / "panel.json").write_text(json.dumps({"start_time": "2026-02-03T10:00:00+01:00"}))
        write_video(root / "outro.mp4")
        (root / "outro.srt").write_text(srt(("00:00:00,200", "00:00:00,800", "Bye.")))
        touch_after_all(root, sorted(p for p in root.rglob("*") if p.is_file()))
        return {"root": str(root), "source": "contract_videos"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        write_video(root / "fresh.mkv")
        (root / "fresh.srt").write_text(srt(("00:00:01,000", "00:00:01,400", "New.")))
        touch_after_all(root, [root / "fresh.mkv", root / "fresh.srt"])
        return {"fresh"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        good = (root / "intro.mp4").read_bytes()
        (root / "cut.mp4").write_bytes(good[: len(good) // 2])  # MP4 index (moov) is at the end: unreadable
        (root / "cut.srt").write_text(srt(("00:00:00,000", "00:00:01,000", "Cut.")))
        (root / "garbled.mp4").write_bytes(good)
        (root / "garbled.srt").write_text("1\n00:00:xx,000 --> 00:00:01,000\nBroken.\n")
        (root / "mute.mp4").write_bytes(good)
        (root / "lonely.vtt").write_text(vtt(("00:00.000", "00:01.000", "Nobody here.")))
        touch_after_all(root, [root / name for name in ("cut.mp4", "cut.srt", "garbled.mp4", "garbled.srt", "mute.mp4",
                                                  "lonely.vtt")])
        return {"cut", "garbled", "mute", "lonely.vtt"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "root": str(Path(options["root"]) / "missing")},
            {**options, "sampling": "sometimes"},
            {**options, "fps": 0},
            {**options, "subtitle_encoding": "no-such-codec"},
            {**options, "start_time_from": []},
        ]


HARNESS = VideoSubtitlesHarness()
