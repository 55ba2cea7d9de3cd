"""Time hygiene before joining: UTC everywhere, clock offsets applied and recorded, media time made absolute,
duplicates dropped and rolling captions collapsed.  Pure functions over Arrow tables; none mutates its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rosetta.core.errors import ConfigError
from rosetta.core.timeutil import ensure_utc

if TYPE_CHECKING:
    import pyarrow as pa

UTC_US = "timestamp[us, tz=UTC]"


def to_utc(table: pa.Table, column: str, *, assume_zone: str | None = None) -> pa.Table:
    """``column`` as UTC microsecond timestamps.  Naive times need ``assume_zone`` (the clock's IANA zone)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        if assume_zone is None:
            raise ConfigError(f"column {column!r} holds naive times; say which zone the clock was in "
                              "(assume_zone, e.g. 'Europe/Berlin')", setting="assume_zone")
        col = pc.assume_timezone(col, assume_zone, ambiguous="earliest", nonexistent="earliest")
    elif not pa.types.is_timestamp(col.type):
        raise ConfigError(f"column {column!r} is {col.type}, not a timestamp", setting=column)
    index = table.column_names.index(column)
    return table.set_column(index, column, pc.cast(col, pa.timestamp("us", tz="UTC")))


def apply_clock_offset(table: pa.Table, column: str, offset: timedelta, *,
                       record: str = "clock_offset_us") -> pa.Table:
    """Correct a clock that runs ``offset`` ahead of true time (subtract it) and record it in ``record``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    utc = to_utc(table, column)
    corrected = pc.subtract(utc.column(column), pa.scalar(offset, pa.duration("us")))
    utc = utc.set_column(utc.column_names.index(column), column, corrected)
    micros = int(offset // timedelta(microseconds=1))
    recorded = pa.array([micros] * utc.num_rows, pa.int64())
    if record in utc.column_names:
        return utc.set_column(utc.column_names.index(record), record,
                              pc.add(utc.column(record).fill_null(0), recorded))
    return utc.append_column(record, recorded)


@dataclass(frozen=True)
class ClockOffset:
    """An estimated clock offset: ``offset`` (the source runs that much ahead), from ``anchors`` matched
    events, with ``spread`` the median absolute deviation of the per-anchor differences."""

    offset: timedelta
    anchors: int
    spread: timedelta


def estimate_clock_offset(source: pa.Table, reference: pa.Table, *, on: str, time: str = "event_time",
                          reference_time: str = "event_time", min_anchors: int = 3) -> ClockOffset:
    """The median of ``source.time - reference.time`` over anchor events both clocks recorded (same ``on``).

    Median and median absolute deviation make one mis-matched anchor harmless.  ConfigError when
    fewer than ``min_anchors`` anchors match: the offset would be a guess.
    """
    import numpy as np
    import pyarrow as pa

    left = to_utc(source, time).select([on, time]).rename_columns([on, "__source"])
    right = to_utc(reference, reference_time).select([on, reference_time]).rename_columns([on, "__reference"])
    joined = left.join(right, keys=on, join_type="inner")
    if joined.num_rows < min_anchors:
        raise ConfigError(f"only {joined.num_rows} anchor events match on {on!r} (need {min_anchors}); record "
                          "shared events on both clocks or configure the offset", setting="clock_offset")
    a = joined.column("__source").cast(pa.int64()).to_numpy()
    b = joined.column("__reference").cast(pa.int64()).to_numpy()
    diffs = (a - b).astype(np.int64)
    median = int(np.median(diffs))
    spread = int(np.median(np.abs(diffs - median)))
    return ClockOffset(offset=timedelta(microseconds=median), anchors=int(joined.num_rows),
                       spread=timedelta(microseconds=spread))


def media_time_to_utc(table: pa.Table, pts_column: str, start: datetime, *, out: str = "event_time") -> pa.Table:
    """Relative media time (``pts_column``: seconds as float, or a duration) plus the media's UTC start."""
    import pyarrow as pa
    import pyarrow.compute as pc

    start_utc = ensure_utc(start, name="media start time")
    pts = table.column(pts_column)
    if pa.types.is_floating(pts.type) or pa.types.is_integer(pts.type):
        micros = pc.cast(pc.round(pc.multiply(pc.cast(pts, pa.float64()), 1_000_000)), pa.int64())
        pts = pc.cast(micros, pa.duration("us"))
    elif not pa.types.is_duration(pts.type):
        raise ConfigError(f"column {pts_column!r} is {pts.type}; give seconds or a duration", setting=pts_column)
    absolute = pc.add(pa.scalar(start_utc, pa.timestamp("us", tz="UTC")), pc.cast(pts, pa.duration("us")))
    if out in table.column_names:
        return table.set_column(table.column_names.index(out), out, absolute)
    return table.append_column(out, absolute)


def drop_duplicates(table: pa.Table, keys: list[str]) -> pa.Table:
    """One row per distinct ``keys`` (the first in (keys, row order)); out-of-order input is fine."""
    import numpy as np
    import pyarrow as pa

    if not table.num_rows:
        return table
    indexed = table.select(keys).append_column("__row", pa.array(np.arange(table.num_rows), pa.int64()))
    firsts = indexed.group_by(keys, use_threads=False).aggregate([("__row", "min")]).column("__row_min")
    return table.take(np.sort(np.asarray(firsts.to_numpy())))


def collapse_rolling_text(table: pa.Table, *, by: list[str], time: str, text: str, end: str | None = None) -> pa.Table:
    """Merge rolling captions: consecutive cues (per ``by``, in time order) where the next text repeats or
    extends the previous one become one cue with the longest text, the first start and the last end."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not table.num_rows:
        return table
    order = pc.sort_indices(table, sort_keys=[*[(c, "ascending") for c in by], (time, "ascending")])
    rows = table.take(order).to_pylist()
    merged: list[dict[str, Any]] = []
    for row in rows:
        previous = merged[-1] if merged else None
        same_group = previous is not None and all(previous[c] == row[c] for c in by)
        before, now = str(previous[text] or "").strip() if previous else "", str(row[text] or "").strip()
        if same_group and previous is not None and before and (now.startswith(before) or before.endswith(now)):
            previous[text] = now if len(now) >= len(before) else before
            if end is not None:
                ends: list[Any] = [e for e in (previous[end], row[end]) if e is not None]
                previous[end] = max(ends) if ends else None
            continue
        merged.append(dict(row))
    return pa.Table.from_pylist(merged, schema=table.schema)
