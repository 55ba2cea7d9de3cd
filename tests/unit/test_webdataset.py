"""WebDataset shards written with the standard library's tarfile, the way real shard writers do."""

from __future__ import annotations

import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from connectors.sdk import Item, State, Window, load_connector
from connectors.webdataset import TAIL_ID, WebDatasetConfig, WebDatasetConnector
from rosetta.core.errors import BadRecordError, ConfigError
from schemas.records import SourceRecord
from tests.contract.harness_webdataset import write_shard

MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z, the members' mtime


def _connector(root: Path, **kw: object) -> WebDatasetConnector:
    return WebDatasetConnector(WebDatasetConfig(root=root, source="wds", **kw))  # type: ignore[arg-type]


def _png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, "PNG")
    return buffer.getvalue()


def _fetch_one(connector: WebDatasetConnector, source_id: str) -> SourceRecord:
    [item] = [i for i in connector.list_items() if i.source_id == source_id]
    [record] = connector.fetch(item)
    return record


def test_groups_members_by_key_and_reads_real_photos(tmp_path: Path, photo_dir: Path) -> None:
    rocket, chelsea = (photo_dir / "rocket.jpg").read_bytes(), (photo_dir / "chelsea.png").read_bytes()
    shard = write_shard(tmp_path / "shard-000000.tar", [
        ("rocket.jpg", rocket), ("rocket.txt", b"A rocket on its pad.\n"),
        ("./cats/chelsea.png", chelsea), ("./cats/chelsea.txt", b"A tabby cat."), ("./cats/chelsea.cls", b"3"),
        ("./cats/chelsea.seg.png", _png()), ("._rocket.jpg", b"macOS resource fork"),
    ], mtime=MTIME)
    connector = _connector(tmp_path)
    items = connector.list_items()
    assert [i.source_id for i in items] == ["shard-000000/cats/chelsea", "shard-000000/rocket"]
    assert {i.cursor for i in items} == {shard.stat().st_mtime_ns}
    assert all(i.problem is None for i in items)
    assert Item.from_json(json.loads(json.dumps(items[0].to_json()))) == items[0]
    cat, rock = (connector.fetch(i)[0] for i in items)
    image = rock.object("image")
    assert image is not None and image.data == rocket and image.media_type == "image/jpeg"
    assert rock.text == "A rocket on its pad." and rock.sample_id == "wds/shard-000000/rocket"
    assert (rock.event_time, rock.event_time_origin) == (datetime(2026, 1, 1, tzinfo=UTC), "mtime")
    assert rock.event_time.tzinfo is UTC
    cat_image = cat.object("image")
    assert cat_image is not None and cat_image.data == chelsea
    assert cat.metadata["other_members"] == ["./cats/chelsea.cls", "./cats/chelsea.seg.png"]


@pytest.mark.parametrize(("sidecar", "text", "event_time"), [
    ({"caption": " red ", "event_time": "2025-01-01T10:00:00+01:00"}, "red", datetime(2025, 1, 1, 9, tzinfo=UTC)),
    ({"text": "green", "width": 32}, "green", datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_json_sidecar_gives_caption_and_event_time(tmp_path: Path, sidecar: dict[str, object], text: str,
                                                   event_time: datetime) -> None:
    write_shard(tmp_path / "s.tar", [("a.png", _png()), ("a.json", json.dumps(sidecar).encode())], mtime=MTIME)
    record = _fetch_one(_connector(tmp_path), "s/a")
    caption = record.object("caption")
    assert caption is not None and caption.media_type == "application/json"
    assert (record.text, record.event_time) == (text, event_time)


def test_txt_is_the_caption_and_json_the_metadata_when_both_exist(tmp_path: Path) -> None:
    meta = json.dumps({"caption": "from json", "event_time": "2024-02-03T04:05:06Z", "url": "http://x"}).encode()
    write_shard(tmp_path / "s.tar", [("a.jpg", _png()), ("a.txt", b"from txt"), ("a.json", meta)])
    record = _fetch_one(_connector(tmp_path), "s/a")
    assert record.text == "from txt"
    assert [(o.role, o.data) for o in record.objects][1:] == [("caption", b"from txt"), ("metadata", meta)]
    assert record.event_time == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    image = record.object("image")
    assert image is not None and image.media_type == "image/png"  # by content, not name


@pytest.mark.parametrize(("members", "reason"), [
    ([("a.png", _png()[:60]), ("a.txt", b"cut short")], "cannot decode image"),
    ([("a.jpg", b"not an image at all"), ("a.txt", b"text")], "cannot decode image"),
    ([("a.png", _png()), ("a.txt", b"  \n")], "empty caption"),
    ([("a.png", _png())], "no caption"),
    ([("a.png", _png()), ("a.txt", b"\xff\xfe bad")], "not UTF-8"),
    ([("a.png", _png()), ("a.json", b"{not json")], "invalid JSON"),
    ([("a.png", _png()), ("a.json", b'["a list"]')], "must be an object"),
    ([("a.png", _png()), ("a.json", b'{"url": "no caption"}')], "needs a string field"),
    ([("a.png", _png()), ("a.json", b'{"caption": "x", "event_time": "2025-01-01T10:00:00"}')], "UTC offset"),
    ([("a.txt", b"orphan"), ("a.json", b"{}")], "no image member"),
    ([("a.png", _png()), ("a.txt", b"one"), ("a.txt", b"two")], "appears twice"),
])
def test_bad_samples_are_bad_records_that_keep_their_bytes(tmp_path: Path, members: list[tuple[str, bytes]],
                                                           reason: str) -> None:
    write_shard(tmp_path / "s.tar", [*members, ("ok.png", _png()), ("ok.txt", b"fine")])
    connector = _connector(tmp_path)
    items = {i.source_id: i for i in connector.list_items()}
    assert set(items) == {"s/a", "s/ok"}
    assert connector.fetch(items["s/ok"])[0].text == "fine"
    with pytest.raises(BadRecordError) as err:
        connector.fetch(items["s/a"])
    assert reason in err.value.reason and err.value.source_id == "s/a"
    assert err.value.payload  # something to keep in quarantine


def test_json_caption_is_optional_when_captions_are(tmp_path: Path) -> None:
    write_shard(tmp_path / "s.tar", [("a.png", _png()), ("a.json", b'{"url": "x"}'), ("b.png", _png())])
    connector = _connector(tmp_path, require_caption=False)
    a, b = (connector.fetch(i)[0] for i in connector.list_items())
    assert a.text is None and [o.role for o in a.objects] == ["image", "metadata"]
    assert b.text is None and [o.role for o in b.objects] == ["image"]


def test_truncated_shard_lists_what_it_can_and_quarantines_the_rest(tmp_path: Path, photo_dir: Path) -> None:
    photo = (photo_dir / "coffee.png").read_bytes()
    shard = write_shard(tmp_path / "s.tar", [("a.png", photo), ("a.txt", b"one"),
                                             ("b.png", photo), ("b.txt", b"two"), ("c.png", photo)])
    with tarfile.open(shard) as tar:
        b_image = tar.getmember("b.png")
    data = shard.read_bytes()
    shard.write_bytes(data[: b_image.offset_data + 1000])  # the upload stopped inside b.png
    connector = _connector(tmp_path)
    items = {i.source_id: i for i in connector.list_items()}
    assert set(items) == {"s/a", "s/b", f"s/{TAIL_ID}"}
    assert connector.fetch(items["s/a"])[0].text == "one"
    assert items["s/b"].problem is not None and "cut short" in items["s/b"].problem
    tail = items[f"s/{TAIL_ID}"]
    assert tail.problem is not None and "re-write the shard" in tail.problem
    for bad in ("s/b", f"s/{TAIL_ID}"):
        with pytest.raises(BadRecordError) as err:
            connector.fetch(items[bad])
        assert err.value.source_id == bad and err.value.reason
    with pytest.raises(BadRecordError) as err:
        connector.fetch(items["s/b"])
    assert err.value.payload == data[b_image.offset_data: b_image.offset_data + 1000]


def test_shard_cut_at_a_member_boundary_or_with_a_corrupt_header(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "cut.tar", [("a.png", _png()), ("a.txt", b"one"), ("b.png", _png()),
                                               ("b.txt", b"two")])
    with tarfile.open(shard) as tar:
        b_header = tar.getmember("b.png").offset
    data = shard.read_bytes()
    shard.write_bytes(data[:b_header])  # no end-of-archive blocks
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(data[:b_header] + b"\x13" * 512 + data[b_header + 512:])
    items = {i.source_id: i for i in _connector(tmp_path).list_items()}
    assert set(items) == {"corrupt/a", f"corrupt/{TAIL_ID}", "cut/a", f"cut/{TAIL_ID}"}
    assert f"from byte {b_header}" in (items[f"cut/{TAIL_ID}"].problem or "")
    assert f"from byte {b_header}" in (items[f"corrupt/{TAIL_ID}"].problem or "")
    assert all(items[i].problem is None for i in ("cut/a", "corrupt/a"))


@pytest.mark.parametrize("content", [b"", b"this is not a tar archive" * 40, b"gzip"])
def test_unreadable_shards_are_one_problem_item_each(tmp_path: Path, content: bytes) -> None:
    if content == b"gzip":  # a compressed shard named .tar
        write_shard(tmp_path / "inner.tar", [("a.png", _png()), ("a.txt", b"x")])
        with tarfile.open(tmp_path / "s.tar", "w:gz") as tar:
            tar.add(tmp_path / "inner.tar", arcname="inner.tar")
        (tmp_path / "inner.tar").unlink()
    else:
        (tmp_path / "s.tar").write_bytes(content)
    connector = _connector(tmp_path)
    [item] = connector.list_items()
    assert item.source_id == f"s/{TAIL_ID}" and item.problem and "from byte 0" in item.problem
    with pytest.raises(BadRecordError):
        connector.fetch(item)


def test_incremental_by_shard_mtime(tmp_path: Path) -> None:
    first = write_shard(tmp_path / "shard-0.tar", [("a.png", _png()), ("a.txt", b"a")])
    connector = _connector(tmp_path)
    state = State().advance(connector.list_items())
    assert state.cursor == first.stat().st_mtime_ns and connector.list_items(state) == []
    second = write_shard(tmp_path / "shard-1.tar", [("a.png", _png()), ("a.txt", b"a"), ("b.png", _png()),
                                                   ("b.txt", b"b")])
    later = first.stat().st_mtime_ns + 10**9
    os.utime(second, ns=(later, later))
    new = connector.list_items(state)
    assert [i.source_id for i in new] == ["shard-1/a", "shard-1/b"]
    state = State.from_json(json.loads(json.dumps(state.advance(new).to_json())))
    assert connector.list_items(state) == []
    # a third shard written in the same nanosecond as the last one is still new (tie by source id)
    third = write_shard(tmp_path / "shard-2.tar", [("c.png", _png()), ("c.txt", b"c")])
    os.utime(third, ns=(later, later))
    assert [i.source_id for i in connector.list_items(state)] == ["shard-2/c"]


def test_backfill_window_selects_shards_by_mtime(tmp_path: Path) -> None:
    march = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    for day, name in enumerate(("day0", "day1")):
        shard = write_shard(tmp_path / f"{name}.tar", [("a.png", _png()), ("a.txt", b"a")])
        os.utime(shard, (march + day * 86400, march + day * 86400))
    window = Window(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    assert [i.source_id for i in _connector(tmp_path).list_items(State(), window)] == ["day0/a"]


def test_shard_rewritten_after_listing_is_read_as_it_is_now(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "s.tar", [("a.png", _png()), ("a.txt", b"old"), ("b.png", _png()),
                                             ("b.txt", b"b")])
    connector = _connector(tmp_path)
    a, b = connector.list_items()
    write_shard(shard, [("pad.txt", b"x" * 3000), ("a.png", _png((1, 2, 3))), ("a.txt", b"new caption")])
    newer = int(a.cursor or 0) + 10**9
    os.utime(shard, ns=(newer, newer))
    assert connector.fetch(a)[0].text == "new caption"
    with pytest.raises(BadRecordError, match="no longer in shard"):
        connector.fetch(b)


def test_nested_shards_with_a_pattern_and_config_errors(tmp_path: Path) -> None:
    (tmp_path / "2026" / "01").mkdir(parents=True)
    write_shard(tmp_path / "2026" / "01" / "s.tar", [("a.png", _png()), ("a.txt", b"a")])
    assert _connector(tmp_path).list_items() == []
    assert [i.source_id for i in _connector(tmp_path, pattern="**/*.tar").list_items()] == ["2026/01/s/a"]
    with pytest.raises(ConfigError, match="root"):
        _connector(tmp_path / "missing").list_items()
    with pytest.raises(ConfigError, match="not_an_option"):
        load_connector("webdataset", {"root": str(tmp_path), "source": "x", "not_an_option": 1})
    with pytest.raises(ConfigError, match="pattern"):
        load_connector("webdataset", {"root": str(tmp_path), "pattern": "../*.tar"})
    assert isinstance(load_connector("webdataset", {"root": str(tmp_path)}), WebDatasetConnector)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_header_walk_lists_what_tarfile_lists_in_every_format(tmp_path: Path, fmt: int) -> None:
    """Plain headers are read directly; long names, pax headers and the rest go through tarfile."""
    from connectors.webdataset import _fast_members, _tarfile_member

    deep = "d" * 60 + "/" + "e" * 60  # over 100 characters: a ustar prefix, a GNU long name or a pax path
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w", format=fmt) as tar:
        for name, data in [("a.png", _png()), ("a.txt", b"caption a"), (f"{deep}/b.png", _png()),
                           (f"{deep}/b.txt", "caption b \u00e9".encode())]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("sub")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("c.png")
        link.type, link.linkname = tarfile.SYMTYPE, "a.png"
        tar.addfile(link)
    with tarfile.open(shard) as tar:
        expected = [_tarfile_member(m) for m in tar]
    with shard.open("rb") as handle:
        fast = _fast_members(handle, shard.stat().st_size)
    if fmt == tarfile.USTAR_FORMAT:
        assert fast is not None and fast[0] == expected
    else:  # long names need tarfile's reading
        assert fast is None
    items = {i.source_id: i for i in _connector(tmp_path).list_items()}
    assert sorted(items) == ["s/a", "s/c", f"s/{deep}/b"]
    assert "not a regular file" in (items["s/c"].problem or "")
    connector = _connector(tmp_path)
    assert connector.fetch(items[f"s/{deep}/b"])[0].text == "caption b \u00e9"
    assert connector.fetch(items["s/a"])[0].text == "caption a"
    connector.close()


def test_corrupt_header_checksum_is_left_to_tarfile(tmp_path: Path) -> None:
    from connectors.webdataset import _fast_members

    shard = write_shard(tmp_path / "s.tar", [("a.png", _png()), ("a.txt", b"a"), ("b.png", _png()),
                                             ("b.txt", b"b")])
    raw = bytearray(shard.read_bytes())
    second = 512 + -(-len(_png()) // 512) * 512 + 512 + 512  # header of b.png
    raw[second + 10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with shard.open("rb") as handle:
        assert _fast_members(handle, len(raw)) is None
    items = _connector(tmp_path).list_items()
    assert [i.source_id for i in items] == ["s/_unreadable_tail", "s/a"]
    assert "unreadable from byte" in (items[0].problem or "")
