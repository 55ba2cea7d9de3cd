from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from connectors.sdk import Item, State, Window, load_connector
from connectors.video_subtitles import (
    Cue,
    SubtitleError,
    dedupe_rolling,
    parse_subtitles,
    parse_timing,
)
from rosetta.core.errors import BadRecordError
from schemas.records import SourceRecord
from tests.contract.harness_video_subtitles import frame_index, srt, touch_after_all, vtt, write_video

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _connector(root: Path, **options: object):  # type: ignore[no-untyped-def]
    return load_connector("video_subtitles", {"root": str(root), "source": "videos", **options})


def _records(root: Path, **options: object) -> list[SourceRecord]:
    connector = _connector(root, **options)
    [item] = [i for i in connector.list_items(State(), Window()) if i.problem is None]
    return list(connector.fetch(item))


def _clip(root: Path, subtitles: str | None = None, *, name: str = "clip.mp4", **video: object) -> Path:
    video.setdefault("creation_time", "2026-01-02T03:04:05.000000Z")
    path = write_video(root / name, **video)  # type: ignore[arg-type]
    if subtitles is not None:
        path.with_suffix(".srt" if not subtitles.startswith("WEBVTT") else ".vtt").write_text(subtitles)
    return path


# -- subtitle parsing --------------------------------------------------------------------------------
def test_srt_with_bom_crlf_tags_numbers_settings_and_multiline_cues() -> None:
    text = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,500 X1:10 X2:20\r\n<i>Hello</i> &amp; {\\an8}welcome\r\n"
            "second line\r\n\r\n2\r\n00:00:03.000 --> 01:00:04,5\r\n<font color=\"red\">Later</font>\r\n\r\n")
    subs = parse_subtitles(text, fmt="srt")
    assert subs.cues == (Cue(1, 1000, 2500, "Hello & welcome\nsecond line"), Cue(2, 3000, 3_604_500, "Later"))
    assert subs.skipped == ()


def test_srt_text_after_a_blank_line_continues_the_cue_and_order_is_by_time() -> None:
    text = srt(("00:00:05,000", "00:00:06,000", "late"), ("00:00:01,000", "00:00:02,000", "early\n\nstill early"))
    assert [(c.number, c.text) for c in parse_subtitles(text, fmt="srt").cues] == [(2, "early\nstill early"),
                                                                                 (1, "late")]


def test_vtt_header_blocks_identifiers_optional_hours_settings_and_voice_tags() -> None:
    text = ("WEBVTT - a title\nKind: captions\nLanguage: en\n\nSTYLE\n::cue { color: red }\n\n"
            "NOTE this is a comment\nspanning lines\n\nintro\n00:01.000 --> 00:02.000 align:start position:10%\n"
            "<v Roger>Hi <b>there</b></v>\n\n01:00:00.000 --> 01:00:01.250\n<c.yellow>Bye</c> &lt;3\n")
    subs = parse_subtitles(text, fmt="vtt")
    assert subs.cues == (Cue(1, 1000, 2000, "Hi there"), Cue(2, 3_600_000, 3_601_250, "Bye <3"))


def test_timing_lines() -> None:
    assert parse_timing("00:00:01,000 --> 00:00:02,000") == (1000, 2000)
    assert parse_timing("  01:02.3 --> 01:03.45 line:0") == (62300, 63450)
    assert parse_timing("just text") is None
    with pytest.raises(SubtitleError, match="malformed timing"):
        parse_timing("00:00:01 --> 00:00:02")
    with pytest.raises(SubtitleError, match="above 59"):
        parse_timing("00:61:01,000 --> 00:62:02,000")


def test_rolling_auto_captions_keep_only_the_new_text() -> None:
    # YouTube-style: each cue repeats the previous cue's last line; short "repeat" cues in between
    text = ("WEBVTT\nKind: captions\nLanguage: en\n\n"
            "00:00:00.000 --> 00:00:02.000 align:start position:0%\n \nhello<00:00:00.500><c> world</c>\n\n"
            "00:00:02.000 --> 00:00:02.010 align:start position:0%\nhello world\n \n\n"
            "00:00:02.010 --> 00:00:04.000 align:start position:0%\nhello world\nthis<00:00:02.500><c> is new</c>\n\n"
            "00:00:04.000 --> 00:00:04.010\nthis is new\n \n\n"
            "00:00:04.010 --> 00:00:06.000\nthis is new\nand the end\n")
    cues = parse_subtitles(text, fmt="vtt").cues
    assert [(c.start_ms, c.end_ms, c.text) for c in cues] == [
        (0, 2000, "hello world"), (2010, 4000, "this is new"), (4010, 6000, "and the end")]
    assert len(parse_subtitles(text, fmt="vtt", dedupe=False).cues) == 5


def test_rolling_dedupe_keeps_a_line_said_again_after_a_pause() -> None:
    cues = [Cue(1, 0, 1000, "No!"), Cue(2, 3000, 4000, "No!")]
    assert dedupe_rolling(cues) == cues


def test_cue_ending_before_it_starts_is_skipped_and_noted() -> None:
    subs = parse_subtitles(srt(("00:00:05,000", "00:00:04,000", "backwards"), ("00:00:06,000", "00:00:07,000", "ok"),
                               ("00:00:08,000", "00:00:09,000", "<i></i>")), fmt="srt")
    assert [c.text for c in subs.cues] == ["ok"]
    assert subs.skipped == ("cue 1: ends (4000 ms) before it starts (5000 ms)", "cue 3: no text")


@pytest.mark.parametrize(("text", "fmt", "reason"), [
    ("1\n00:00:xx,000 --> 00:00:01,000\nBroken\n", "srt", "line 2: malformed timing"),
    ("just some prose\nwith no timings\n", "srt", "line 1: expected a cue number or a timing line"),
    ("00:00.000 --> 00:01.000\nno signature\n", "vtt", "missing the WEBVTT signature"),
    ("WEBVTT\n\nstray words\nmore\n", "vtt", "line 3: a block without a timing line"),
])
def test_unparseable_subtitles(text: str, fmt: str, reason: str) -> None:
    with pytest.raises(SubtitleError, match=reason):
        parse_subtitles(text, fmt=fmt)


# -- sampling real videos ------------------------------------------------------------------------------
def test_one_frame_per_cue_at_the_midpoint_with_exact_pts_and_event_time(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,000", "00:00:01,000", "<i>first</i>"),
                        ("00:00:01,000", "00:00:01,250", "second"),
                        ("00:00:01,500", "00:00:02,000", "third\nline")))
    records = _records(tmp_path)
    assert [r.source_id for r in records] == ["clip@500", "clip@1100", "clip@1700"]
    assert [frame_index(r.objects[0].data) for r in records] == [5, 11, 17]  # midpoints 0.5, 1.125, 1.75 s
    assert [r.text for r in records] == ["first", "second", "third\nline"]
    assert [r.event_time for r in records] == [START + timedelta(milliseconds=ms) for ms in (500, 1100, 1700)]
    first = records[0]
    assert first.event_time_origin == "container"
    assert first.keys == {"video_id": "clip"}
    assert first.objects[0].role == "image" and first.objects[0].media_type == "image/jpeg"
    assert first.objects[0].data[:3] == b"\xff\xd8\xff"
    assert first.metadata["pts_s"] == 0.5 and first.metadata["pts"] == 5120  # MP4 time base 1/10240
    assert (first.metadata["cue_start_s"], first.metadata["cue_end_s"]) == (0.0, 1.0)
    assert first.metadata["video"] == "clip.mp4" and first.metadata["subtitles"] == "clip.srt"


def test_rate_sampling_pairs_each_frame_with_the_cue_on_screen(tmp_path: Path) -> None:
    _clip(tmp_path, vtt(("00:00.300", "00:00.900", "early"), ("00:01.150", "00:01.700", "late")), name="c.mkv")
    records = _records(tmp_path, sampling="rate", fps=2.5, frame_format="png")
    assert [r.metadata["pts_s"] for r in records] == [0.0, 0.4, 0.8, 1.2, 1.6]
    assert [frame_index(r.objects[0].data) for r in records] == [0, 4, 8, 12, 16]
    assert [r.text for r in records] == [None, "early", "early", "late", "late"]
    assert records[0].objects[0].media_type == "image/png"
    assert "cue_start_s" not in records[0].metadata and records[1].metadata["cue_end_s"] == 0.9


def test_rate_above_the_video_rate_takes_each_frame_once_and_max_frames_thins_evenly(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,000", "00:00:02,000", "all along")))
    assert len(_records(tmp_path, sampling="rate", fps=30)) == 20
    thinned = _records(tmp_path, sampling="rate", fps=10, max_frames_per_video=4)
    assert [r.source_id for r in thinned] == ["clip@0", "clip@600", "clip@1300", "clip@1900"]


def test_cues_far_apart_are_reached_by_seeking(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,100", "00:00:00,300", "a"), ("00:00:07,000", "00:00:07,400", "b"),
                        ("00:00:03,300", "00:00:03,300", "c"), ("00:00:20,000", "00:00:21,000", "after the end")),
          frames=100, gop=10)
    records = _records(tmp_path)
    assert [(r.source_id, r.text) for r in records] == [("clip@200", "a"), ("clip@3300", "c"), ("clip@7200", "b")]
    assert [frame_index(r.objects[0].data) for r in records] == [2, 33 % 20, 72 % 20]


def test_two_cues_on_one_frame_make_one_record(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,500", "00:00:00,520", "one"), ("00:00:00,540", "00:00:00,560", "two")))
    [record] = _records(tmp_path, dedupe_rolling_captions=False)
    assert record.source_id == "clip@500" and record.text == "one\ntwo"
    assert [c["number"] for c in record.metadata["cues"]] == [1, 2]


def test_start_time_from_sidecar_then_mtime(tmp_path: Path) -> None:
    video = _clip(tmp_path, srt(("00:00:00,000", "00:00:00,200", "x")), name="c.mkv", creation_time="")
    (tmp_path / "c.json").write_text(json.dumps({"start_time": "2026-05-06T12:00:00+02:00"}))
    [record] = _records(tmp_path)
    assert record.event_time_origin == "sidecar"
    assert record.event_time == datetime(2026, 5, 6, 10, 0, 0, 100_000, tzinfo=UTC)
    (tmp_path / "c.json").unlink()
    os.utime(video, (1_700_000_000, 1_700_000_000))
    [record] = _records(tmp_path)
    assert record.event_time_origin == "mtime"
    assert record.event_time == datetime.fromtimestamp(1_700_000_000, UTC) + timedelta(milliseconds=100)


def test_sidecar_preferred_when_configured_and_a_missing_start_time_is_a_bad_record(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,000", "00:00:00,200", "x")))
    (tmp_path / "clip.json").write_text(json.dumps({"start_time": "2026-05-06T12:00:00Z"}))
    [record] = _records(tmp_path, start_time_from=["sidecar", "container"])
    assert record.event_time_origin == "sidecar"
    (tmp_path / "clip.json").unlink()
    connector = _connector(tmp_path, start_time_from=["sidecar"])
    [item] = connector.list_items(State(), Window())
    with pytest.raises(BadRecordError, match="no start time from any of sidecar"):
        connector.fetch(item)


# -- malformed input -----------------------------------------------------------------------------------
def _bad(root: Path, **options: object) -> BadRecordError:
    connector = _connector(root, **options)
    [item] = connector.list_items(State(), Window())
    with pytest.raises(BadRecordError) as err:
        connector.fetch(item)
    return err.value


def test_truncated_mp4_is_a_bad_record_with_the_bytes(tmp_path: Path) -> None:
    video = _clip(tmp_path, srt(("00:00:00,000", "00:00:01,000", "x")))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    error = _bad(tmp_path)
    assert "cannot open the video" in error.reason and error.source_id == "clip"
    assert error.payload == data[: len(data) // 2]


def test_truncated_mkv_that_still_opens_is_caught_by_its_declared_duration(tmp_path: Path) -> None:
    video = _clip(tmp_path, srt(("00:00:00,000", "00:00:00,200", "early cue, before the cut")), name="c.mkv")
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.4)])
    assert "truncated" in _bad(tmp_path).reason


def test_not_a_video_is_a_bad_record(tmp_path: Path) -> None:
    (tmp_path / "clip.webm").write_bytes(b"\x1aE\xdf\xa3 definitely not matroska" * 20)
    (tmp_path / "clip.srt").write_text(srt(("00:00:00,000", "00:00:01,000", "x")))
    assert "cannot open the video" in _bad(tmp_path).reason


def test_unparseable_subtitles_quarantine_the_whole_video(tmp_path: Path) -> None:
    _clip(tmp_path, "1\n00:00:00,000 --> 00:00:01,000\nfine\n\n2\n00:00:01,000 --> 00:00:0,000\nbad\n")
    error = _bad(tmp_path)
    assert error.reason.startswith("clip.srt: unparseable SRT subtitles, line 6: malformed timing line")
    assert error.payload and error.payload.startswith(b"1\n")


def test_subtitles_that_are_not_utf8_are_a_bad_record_unless_the_encoding_is_set(tmp_path: Path) -> None:
    _clip(tmp_path)
    (tmp_path / "clip.srt").write_bytes(srt(("00:00:00,000", "00:00:01,000", "Café")).encode("cp1252"))
    assert "not valid utf-8" in _bad(tmp_path).reason
    assert [r.text for r in _records(tmp_path, subtitle_encoding="cp1252")] == ["Café"]


def test_a_backwards_cue_is_skipped_and_noted_on_every_record(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:01,000", "00:00:00,500", "backwards"), ("00:00:00,000", "00:00:00,400", "fine")))
    [record] = _records(tmp_path)
    assert record.text == "fine"
    assert record.metadata["skipped_cues"] == ["cue 1: ends (500 ms) before it starts (1000 ms)"]


def test_subtitles_without_any_usable_cue_are_a_bad_record(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:01,000", "00:00:00,500", "backwards")))
    assert "no usable cues (cue 1: ends (500 ms) before it starts (1000 ms))" in _bad(tmp_path).reason


def test_video_without_subtitles_is_quarantined_unless_allowed(tmp_path: Path) -> None:
    _clip(tmp_path)
    assert "no subtitle file; add clip.srt or clip.vtt" in _bad(tmp_path).reason
    records = _records(tmp_path, require_subtitles=False, fps=1)
    assert [(r.source_id, r.text) for r in records] == [("clip@0", None), ("clip@1000", None)]


def test_broken_start_time_sidecar_is_a_bad_record(tmp_path: Path) -> None:
    _clip(tmp_path, srt(("00:00:00,000", "00:00:01,000", "x")))
    (tmp_path / "clip.json").write_text('{"start_time": "2026-05-06T12:00:00"}')
    assert "has no timezone" in _bad(tmp_path).reason


# -- listing -------------------------------------------------------------------------------------------
def test_listing_groups_sidecars_flags_orphans_and_is_incremental(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _clip(tmp_path / "sub", srt(("00:00:00,000", "00:00:01,000", "srt wins")))
    (tmp_path / "sub" / "clip.vtt").write_text(vtt(("00:00.000", "00:01.000", "vtt loses")))
    (tmp_path / "orphan.srt").write_text(srt(("00:00:00,000", "00:00:01,000", "x")))
    (tmp_path / "notes.txt").write_text("ignored")
    connector = _connector(tmp_path)
    items = connector.list_items(State(), Window())
    assert [(i.source_id, i.problem is not None) for i in items] == [("orphan.srt", True), ("sub/clip", False)]
    assert items[1].ref == {"video": "sub/clip.mp4", "subtitles": "sub/clip.srt"}
    assert items[1].cursor == max((tmp_path / "sub" / n).stat().st_mtime_ns for n in ("clip.mp4", "clip.srt"))
    with pytest.raises(BadRecordError, match="sidecar without a video"):
        connector.fetch(items[0])
    assert [r.text for r in connector.fetch(items[1])] == ["srt wins"]
    state = State().advance([items[1]])
    assert [i.source_id for i in connector.list_items(state, Window())] == ["orphan.srt"]
    touch_after_all(tmp_path, [tmp_path / "sub" / "clip.srt"])
    assert [i.source_id for i in connector.list_items(state, Window()) if i.problem is None] == ["sub/clip"]
    later = Window(start=datetime.now(UTC) + timedelta(days=2))
    assert connector.list_items(State(), later) == []
    assert Item.from_json(json.loads(json.dumps(items[1].to_json()))) == items[1]


def test_frame_position_is_exact() -> None:
    assert Cue(1, 1000, 1250, "x").midpoint == Fraction(9, 8)
    assert Cue(1, 1000, 1250, "x").covers(Fraction(1)) and not Cue(1, 1000, 1250, "x").covers(Fraction(5, 4))


def test_module_imports_no_decoder() -> None:
    code = "import sys, connectors.video_subtitles; sys.exit('av' in sys.modules or 'PIL' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
