from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from connectors.image_folder import ImageFolderConfig, ImageFolderConnector
from connectors.sdk import Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError


def _connector(root: Path, **kw: object) -> ImageFolderConnector:
    return ImageFolderConnector(ImageFolderConfig(root=root, source="test", **kw))  # type: ignore[arg-type]


def _jpeg(exif_time: str | None = None, offset: str | None = None) -> bytes:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    if exif_time:
        ifd = exif.get_ifd(0x8769)
        ifd[36867] = exif_time
        if offset:
            ifd[36881] = offset
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_lists_real_photos_with_sidecars_sorted(small_photo_dir: Path) -> None:
    items = _connector(small_photo_dir).list_items()
    assert [i.source_id for i in items] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert all(i.problem is None and i.ref["caption"] and i.ref["image"] for i in items)
    assert Item.from_json(items[0].to_json()) == items[0]


def test_reads_a_real_photo(small_photo_dir: Path) -> None:
    connector = _connector(small_photo_dir)
    item = next(i for i in connector.list_items() if i.source_id == "chelsea")
    [sample] = connector.fetch(item)
    assert sample.sample_id == "test/chelsea"
    image = sample.object("image")
    assert image is not None and image.data == (small_photo_dir / "chelsea.png").read_bytes()
    assert image.media_type == "image/png"
    assert sample.text is not None and "cat" in sample.text and sample.text == sample.text.strip()
    caption = sample.object("caption")
    assert caption is not None and caption.data == (small_photo_dir / "chelsea.txt").read_bytes()
    assert sample.event_time_origin == "mtime" and sample.event_time.tzinfo is UTC
    assert sample.event_time.timestamp() == pytest.approx(os.stat(small_photo_dir / "chelsea.png").st_mtime)


def test_event_time_from_exif_with_and_without_offset(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg("2024:05:06 07:08:09", "+02:00"))
    (tmp_path / "a.txt").write_text("red square")
    (tmp_path / "b.jpg").write_bytes(_jpeg("2024:05:06 07:08:09"))
    (tmp_path / "b.txt").write_text("red square")
    connector = _connector(tmp_path, timezone="America/New_York")
    a, b = (connector.fetch(i)[0] for i in connector.list_items())
    assert (a.event_time, a.event_time_origin) == (datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC), "exif")
    assert b.event_time == datetime(2024, 5, 6, 11, 8, 9, tzinfo=UTC)  # EDT is UTC-4


def test_json_sidecar_gives_caption_and_event_time(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg("2024:05:06 07:08:09"))
    (tmp_path / "a.json").write_text(json.dumps({"caption": " red ", "event_time": "2025-01-01T10:00:00+01:00"}))
    connector = _connector(tmp_path)
    sample = connector.fetch(connector.list_items()[0])[0]
    caption = sample.object("caption")
    assert sample.text == "red" and caption is not None and caption.media_type == "application/json"
    assert (sample.event_time, sample.event_time_origin) == (datetime(2025, 1, 1, 9, tzinfo=UTC), "sidecar")


@pytest.mark.parametrize(("files", "reason"), [
    ({"a.jpg": _jpeg()[:300], "a.txt": b"cut short"}, "cannot decode image"),
    ({"a.jpg": b"not an image at all", "a.txt": b"text"}, "cannot decode image"),
    ({"a.jpg": _jpeg(), "a.txt": b"  \n"}, "empty caption"),
    ({"a.jpg": _jpeg()}, "no caption sidecar"),
    ({"a.jpg": _jpeg(), "a.txt": b"\xff\xfe bad"}, "not UTF-8"),
    ({"a.jpg": _jpeg(), "a.json": b"{not json"}, "invalid JSON"),
    ({"a.jpg": _jpeg(), "a.json": b'{"caption": "x", "event_time": "2025-01-01T10:00:00"}'}, "UTC offset"),
    ({"a.xyz": b"mystery"}, "unknown file type '.xyz'"),
    ({"a.txt": b"orphan"}, "caption sidecar without an image"),
])
def test_bad_records_name_the_file_and_keep_the_bytes(tmp_path: Path, files: dict[str, bytes], reason: str) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    connector = _connector(tmp_path)
    items = connector.list_items()
    assert len(items) == 1
    with pytest.raises(BadRecordError) as err:
        connector.fetch(items[0])
    assert reason in err.value.reason
    assert "a." in err.value.reason  # names the file
    assert err.value.source_id is not None and err.value.source_id.startswith("a")
    assert err.value.payload  # something to keep in quarantine


def test_caption_optional_when_configured(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_jpeg())
    connector = _connector(tmp_path, require_caption=False)
    [record] = connector.fetch(connector.list_items()[0])
    assert record.text is None and record.object("caption") is None


def test_missing_folder_and_bad_timezone_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="source_dir"):
        _connector(tmp_path / "nope").list_items()
    with pytest.raises(ConfigError, match="timezone"):
        _connector(tmp_path, timezone="Mars/Olympus")


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"junk")
    assert _connector(tmp_path).list_items() == []


def test_jpeg_completeness_check(photo_dir: Path) -> None:
    from connectors.image_folder import jpeg_is_complete

    whole = (photo_dir / "rocket.jpg").read_bytes()
    assert jpeg_is_complete(whole)
    assert jpeg_is_complete(whole + b"trailing bytes some cameras append")
    assert not jpeg_is_complete(whole[:-2])
    assert not jpeg_is_complete(whole[: len(whole) // 2])
    assert not jpeg_is_complete(b"\xff\xd8\xff")
    assert not jpeg_is_complete(b"GIF89a")
    with_thumbnail = _jpeg("2024:05:06 07:08:09")  # EXIF segment before the scan
    assert jpeg_is_complete(with_thumbnail) and not jpeg_is_complete(with_thumbnail[:-40])


def test_truncated_png_is_rejected(tmp_path: Path, photo_dir: Path) -> None:
    data = (photo_dir / "coffee.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) - 5000])
    (tmp_path / "a.txt").write_text("coffee")
    connector = _connector(tmp_path)
    with pytest.raises(BadRecordError, match="cannot decode image"):
        connector.fetch(connector.list_items()[0])


def test_incremental_listing_by_modification_time(small_photo_dir: Path) -> None:
    connector = _connector(small_photo_dir)
    items = connector.list_items(State(), Window())
    state = State().advance(items)
    assert connector.list_items(state, Window()) == []
    newer = max(int(i.cursor or 0) for i in items) + 1_000_000_000
    os.utime(small_photo_dir / "coffee.txt", ns=(newer, newer))
    assert [i.source_id for i in connector.list_items(state, Window())] == ["coffee"]


def test_backfill_window_selects_by_modification_time(small_photo_dir: Path) -> None:
    stamp = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    for path in small_photo_dir.iterdir():
        os.utime(path, (stamp, stamp))
    os.utime(small_photo_dir / "rocket.jpg", (stamp + 86400, stamp + 86400))
    connector = _connector(small_photo_dir)
    day = Window(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    assert [i.source_id for i in connector.list_items(State(), day)] == ["astronaut", "chelsea", "coffee"]
