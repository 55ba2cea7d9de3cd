"""Time hygiene: UTC, clock offsets (configured and estimated), media time, duplicates, rolling captions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from rosetta.core.errors import ConfigError
from transforms.alignment.hygiene import (
    apply_clock_offset,
    collapse_rolling_text,
    drop_duplicates,
    estimate_clock_offset,
    media_time_to_utc,
    to_utc,
)

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")  # the night Europe/Berlin moves its clocks forward


def test_naive_times_need_their_zone_and_become_utc() -> None:
    naive = pa.table({"event_time": pa.array([datetime(2026, 1, 5, 10, 0)], pa.timestamp("s"))})
    with pytest.raises(ConfigError, match="assume_zone"):
        to_utc(naive, "event_time")
    utc = to_utc(naive, "event_time", assume_zone="Europe/Berlin")
    assert utc.column("event_time").to_pylist() == [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    assert str(utc.schema.field("event_time").type) == "timestamp[us, tz=UTC]"


def test_clock_offsets_are_applied_recorded_and_estimated_robustly() -> None:
    truth = [T0 + timedelta(minutes=i) for i in range(6)]
    events = [f"e{i}" for i in range(6)]
    reference = pa.table({"event": events, "event_time": pa.array(truth, TS)})
    skewed = [t + timedelta(seconds=2.5) for t in truth]
    skewed[3] += timedelta(minutes=5)  # one mis-matched anchor
    camera = pa.table({"event": events, "event_time": pa.array(skewed, TS)})
    estimate = estimate_clock_offset(camera, reference, on="event")
    assert estimate.offset == timedelta(seconds=2.5) and estimate.anchors == 6 and estimate.spread == timedelta(0)
    fixed = apply_clock_offset(camera, "event_time", estimate.offset)
    assert fixed.column("event_time").to_pylist()[0] == truth[0]
    assert fixed.column("clock_offset_us").to_pylist() == [2_500_000] * 6
    with pytest.raises(ConfigError, match="anchor"):
        estimate_clock_offset(camera.slice(0, 2), reference, on="event")


def test_media_time_becomes_utc_from_the_media_start() -> None:
    frames = pa.table({"pts": [0.0, 0.04, 1.5]})
    out = media_time_to_utc(frames, "pts", T0)
    assert out.column("event_time").to_pylist() == [T0, T0 + timedelta(milliseconds=40),
                                                    T0 + timedelta(seconds=1.5)]
    with pytest.raises(ValueError, match="timezone"):
        media_time_to_utc(frames, "pts", datetime(2026, 1, 1))


def test_duplicates_go_and_rolling_captions_collapse() -> None:
    rows = pa.table({"source_id": ["b", "a", "b", "c"], "event_time": pa.array([2, 1, 2, 3], pa.int64())})
    assert drop_duplicates(rows, ["source_id", "event_time"]).to_pylist() == [
        {"source_id": "b", "event_time": 2}, {"source_id": "a", "event_time": 1}, {"source_id": "c", "event_time": 3}]
    cues = pa.table({"video": ["v", "v", "v", "v"], "start": [3, 1, 2, 5], "end": [4, 2, 3, 6],
                     "text": ["hello world again", "hello", "hello world", "new line"]})
    out = collapse_rolling_text(cues, by=["video"], time="start", text="text", end="end").to_pylist()
    assert out == [{"video": "v", "start": 1, "end": 4, "text": "hello world again"},
                   {"video": "v", "start": 5, "end": 6, "text": "new line"}]
