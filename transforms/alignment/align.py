"""One alignment function over Arrow tables: which text row belongs to which image row, by time.

``align(left, right, spec)`` pairs each *left* row (an image: a frame, a DICOM image, a camera shot)
with *right* rows (text: a subtitle cue, a report, a log line) of the same ``by`` key:

- ``backward`` (as-of): the latest right row at or before the left time;
- ``forward``: the earliest right row at or after it;
- ``nearest``: the closest either way;
- ``interval``: right rows whose ``[right_time, right_end)`` contains the left time;
- ``window``: all right rows within ``[left - before, left + after]``, their text concatenated.

``tolerance`` bounds ``|offset|``; ``allow_exact=False`` excludes right rows at exactly the left time
(backward, forward, nearest).  ``cardinality`` says how many partners a row may have:
``many_to_one`` (each left row at most one right row; a right row may serve many left rows — the
as-of join), ``one_to_many`` (each left row every right row that qualifies), ``one_to_one`` (each
row of either side at most once).

**The one rule for choosing** (ties included), the same for every strategy: candidates are ranked
by ``(|offset|, right_time, right_id)`` ascending — the closest first; at equal distance the earlier
right row (so ``nearest`` prefers the row before); at equal time the smallest right id.  For
``interval`` the offset is measured from the interval's start (the latest-starting interval that
contains the time wins).  ``one_to_one`` assigns greedily over all qualifying pairs ranked by
``(|offset|, left_time, left_id, right_time, right_id)``.  A row whose time or any ``by`` key is
null matches nothing.  The result never depends on the input order, and its rows come sorted by
``(by..., left_time, left_id, |offset|, right_time, right_id)``.

Output columns: the ``by`` keys, ``left_id``, ``right_id``, ``left_time``, ``right_time`` (UTC
timestamps), ``offset`` (signed duration ``right_time - left_time``) and ``quality`` (1 at zero
offset, falling linearly to 0 at the tolerance; ``1 / (1 + |offset| in s)`` without a tolerance;
1 for interval containment).  ``interval`` adds ``right_end``; ``window`` gives one row per left
row with ``right_ids`` (list), ``text`` (joined by ``separator``) and ``right_count`` instead of
``right_id``.  ``how="left"`` keeps unmatched left rows with null partners.

Engine: numpy over int64 microseconds.  Keys become one integer per row (group index times the
time span plus the time), so every search is a vectorised binary search over one sorted array;
ties at one time are resolved by id explicitly, never by the sort's whim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Strategy = Literal["backward", "forward", "nearest", "interval", "window"]
Cardinality = Literal["many_to_one", "one_to_many", "one_to_one"]
US = 1_000_000


@dataclass(frozen=True)
class AlignSpec:
    """What to align and how; see the module docstring for the semantics."""

    strategy: Strategy = "backward"
    by: tuple[str, ...] = ()
    left_time: str = "event_time"
    right_time: str = "event_time"
    right_end: str | None = None  # interval: end of [right_time, right_end)
    left_id: str = "source_id"
    right_id: str = "source_id"
    tolerance: timedelta | None = None
    allow_exact: bool = True
    cardinality: Cardinality = "many_to_one"
    window: tuple[timedelta, timedelta] = field(default=(timedelta(0), timedelta(0)))  # (before, after)
    text: str = "text"  # window: the right column to concatenate
    separator: str = "\n"
    how: Literal["inner", "left"] = "inner"

    def __post_init__(self) -> None:
        if self.strategy == "interval" and not self.right_end:
            raise ConfigError("strategy 'interval' needs right_end (the column ending each right interval)",
                              setting="right_end")
        if self.tolerance is not None and self.tolerance < timedelta(0):
            raise ConfigError("tolerance must not be negative", setting="tolerance")
        if self.strategy == "window" and self.cardinality != "many_to_one":
            raise ConfigError("strategy 'window' gives one row per left row; leave cardinality as many_to_one",
                              setting="cardinality")


@dataclass
class _Side:
    """One table's valid rows as arrays: group index, time (us), id, and their row numbers."""

    rows: np.ndarray  # int64 positions in the input table
    group: np.ndarray  # int64 group index
    time: np.ndarray  # int64 microseconds since the epoch
    ids: pa.Array  # string ids of those rows


def align(left: pa.Table, right: pa.Table, spec: AlignSpec) -> pa.Table:
    """Pair ``left`` rows with ``right`` rows by time within ``spec.by`` keys (pure; inputs untouched)."""
    import numpy as np

    _check_columns(left, right, spec)
    groups_left, groups_right = _group_indices(left, right, spec.by)
    lt = _micros(left, spec.left_time)
    rt = _micros(right, spec.right_time)
    lside = _side(left, groups_left, lt, spec.left_id)
    rside = _side(right, groups_right, rt, spec.right_id, extra_valid=_valid_end(right, spec))
    span = _span(lside.time, rside.time, spec)
    if spec.strategy == "window":
        pairs = _window_pairs(lside, rside, span, spec)
        return _window_table(left, right, lside, rside, pairs, spec)
    if spec.strategy == "interval":
        ends = _micros(right, spec.right_end or "")[rside.rows]
        pairs = _interval_pairs(lside, rside, ends, span)
    elif spec.cardinality == "many_to_one":
        pairs = _asof_pairs(lside, rside, span, spec)
    else:
        pairs = _range_pairs(lside, rside, span, spec)
    li, ri = pairs
    offset = rside.time[ri] - lside.time[li]
    distance = np.abs(offset if spec.strategy != "interval" else lside.time[li] - rside.time[ri])
    if spec.strategy == "interval" and spec.cardinality == "many_to_one":
        li, ri, offset, distance = _best_per_left(li, ri, offset, distance, lside, rside)
    if spec.cardinality == "one_to_one":
        li, ri, offset, distance = _greedy_one_to_one(li, ri, offset, distance, lside, rside)
    return _pairs_table(left, right, lside, rside, li, ri, offset, distance, spec)


# -- inputs -------------------------------------------------------------------------------------------
def _check_columns(left: pa.Table, right: pa.Table, spec: AlignSpec) -> None:
    needed = [(left, "left", [*spec.by, spec.left_time, spec.left_id]),
              (right, "right", [*spec.by, spec.right_time, spec.right_id,
                                *([spec.right_end] if spec.right_end else []),
                                *([spec.text] if spec.strategy == "window" else [])])]
    for table, side, columns in needed:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConfigError(f"the {side} table has no column {', '.join(map(repr, missing))}; it has "
                              f"{', '.join(table.column_names)}", setting=f"{side}_columns")


def _micros(table: pa.Table, column: str) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (UTC); nulls become INT64 min."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    if not pa.types.is_timestamp(col.type) or col.type.tz is None:
        raise ConfigError(f"column {column!r} is {col.type}, not a timezone-aware timestamp; convert it to UTC "
                          "first (naive times are ambiguous)", setting=column)
    as_us = pc.cast(col, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(as_us.fill_null(np.iinfo(np.int64).min).to_numpy(), dtype=np.int64)


def _valid_end(table: pa.Table, spec: AlignSpec) -> np.ndarray | None:
    if spec.strategy != "interval" or not spec.right_end:
        return None
    import numpy as np

    return np.asarray(table.column(spec.right_end).is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _group_indices(left: pa.Table, right: pa.Table, by: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 group index per row of each table (-1 where a key is null), shared between the tables."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n_left = left.num_rows
    combined = np.zeros(n_left + right.num_rows, dtype=np.int64)
    for column in by:
        values = pa.chunked_array([*left.column(column).chunks, *right.column(column).cast(
            left.column(column).type).chunks], type=left.column(column).type)
        encoded = pc.dictionary_encode(values).combine_chunks()
        indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
        cardinality = len(encoded.dictionary) + 1
        combined = np.where((combined < 0) | (indices < 0), -1, combined * cardinality + indices)
    return combined[:n_left], combined[n_left:]


def _side(table: pa.Table, group: np.ndarray, time: np.ndarray, id_column: str,
          extra_valid: np.ndarray | None = None) -> _Side:
    import numpy as np
    import pyarrow.compute as pc

    ids = table.column(id_column)
    valid = (group >= 0) & (time != np.iinfo(np.int64).min)
    valid &= np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if extra_valid is not None:
        valid &= extra_valid
    rows = np.flatnonzero(valid).astype(np.int64)
    return _Side(rows=rows, group=group[rows], time=time[rows],
                 ids=pc.take(ids.cast("string"), rows).combine_chunks() if len(rows) else ids.cast("string")
                 .combine_chunks().slice(0, 0))


def _span(lt: np.ndarray, rt: np.ndarray, spec: AlignSpec) -> tuple[int, int]:
    """(origin, width): a row's key is ``group * width + (time - origin)``; width leaves room for searches."""
    times = [t for t in (lt, rt) if len(t)]
    if not times:
        return 0, 1
    low = min(int(t.min()) for t in times)
    high = max(int(t.max()) for t in times)
    reach = max(_us(spec.tolerance) or 0, _us(spec.window[0]), _us(spec.window[1]))
    origin = low - reach - 1
    width = high - origin + reach + 2
    return origin, width


def _us(delta: timedelta | None) -> int:
    return 0 if delta is None else int(delta // timedelta(microseconds=1))


def _keys(side: _Side, span: tuple[int, int], time: np.ndarray | None = None) -> np.ndarray:
    import numpy as np

    origin, width = span
    groups = side.group
    if len(groups) and int(groups.max()) > (np.iinfo(np.int64).max // width) - 1:
        raise ConfigError("too many by-keys over too long a time span for one pass; align per key chunk",
                          setting="by")
    return groups * width + ((side.time if time is None else time) - origin)


# -- the sorted right side ----------------------------------------------------------------------------
@dataclass
class _Sorted:
    keys: np.ndarray  # every valid right row's key, ascending
    order: np.ndarray  # right side positions in key order, ties by id
    first_of_run: np.ndarray  # unique keys ascending
    rep: np.ndarray  # for each unique key, the right position with the smallest id


def _sorted_right(rside: _Side, keys: np.ndarray) -> _Sorted:
    """Sort right rows by key, then id within equal keys (ids are ranked once; equal ids keep input order)."""
    import numpy as np
    import pyarrow.compute as pc

    id_rank = np.empty(len(keys), dtype=np.int64)
    if len(keys):
        id_rank[np.asarray(pc.sort_indices(rside.ids).to_numpy())] = np.arange(len(keys))
    order = np.lexsort((id_rank, keys))
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    if len(order):
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return _Sorted(keys=sorted_keys, order=order, first_of_run=sorted_keys[starts], rep=order[starts])


# -- pair finding ---------------------------------------------------------------------------------------
def _asof_pairs(lside: _Side, rside: _Side, span: tuple[int, int], spec: AlignSpec) -> tuple[np.ndarray, np.ndarray]:
    """many_to_one backward/forward/nearest: one binary search per left row over the unique right keys."""
    import numpy as np

    _, width = span
    srt = _sorted_right(rside, _keys(rside, span))
    lk = _keys(lside, span)
    low_bound, high_bound = lside.group * width, (lside.group + 1) * width
    n = len(srt.first_of_run)
    li_all = np.arange(len(lk))
    candidates: list[tuple[np.ndarray, np.ndarray]] = []
    if spec.strategy in ("backward", "nearest"):
        idx = np.searchsorted(srt.first_of_run, lk, side="right" if spec.allow_exact else "left") - 1
        ok = idx >= 0
        ok[ok] &= srt.first_of_run[idx[ok]] >= low_bound[ok]
        candidates.append((li_all[ok], srt.rep[idx[ok]]))
    if spec.strategy in ("forward", "nearest"):
        idx = np.searchsorted(srt.first_of_run, lk if spec.allow_exact else lk + 1, side="left")
        ok = idx < n
        ok[ok] &= srt.first_of_run[idx[ok]] < high_bound[ok]
        candidates.append((li_all[ok], srt.rep[idx[ok]]))
    li = np.concatenate([c[0] for c in candidates]) if candidates else np.empty(0, np.int64)
    ri = np.concatenate([c[1] for c in candidates]) if candidates else np.empty(0, np.int64)
    li, ri = _within_tolerance(li, ri, lside, rside, spec)
    if spec.strategy == "nearest":  # keep the better of the two per left row: (|offset|, right_time, id)
        li, ri = _first_per_left(li, ri, lside, rside)
    return li, ri


def _range_pairs(lside: _Side, rside: _Side, span: tuple[int, int], spec: AlignSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every qualifying right row per left row (one_to_many, and one_to_one's candidates)."""
    import numpy as np

    _, width = span
    srt = _sorted_right(rside, _keys(rside, span))
    lk = _keys(lside, span)
    tol = _us(spec.tolerance)
    group_lo = np.searchsorted(srt.keys, lside.group * width, side="left")
    group_hi = np.searchsorted(srt.keys, (lside.group + 1) * width, side="left")
    if spec.strategy == "backward":
        lo = group_lo if spec.tolerance is None else np.searchsorted(srt.keys, lk - tol, side="left")
        hi = np.searchsorted(srt.keys, lk, side="right" if spec.allow_exact else "left")
    elif spec.strategy == "forward":
        lo = np.searchsorted(srt.keys, lk if spec.allow_exact else lk + 1, side="left")
        hi = group_hi if spec.tolerance is None else np.searchsorted(srt.keys, lk + tol, side="right")
    else:  # nearest: both sides
        lo = group_lo if spec.tolerance is None else np.searchsorted(srt.keys, lk - tol, side="left")
        hi = group_hi if spec.tolerance is None else np.searchsorted(srt.keys, lk + tol, side="right")
    lo, hi = np.maximum(lo, group_lo), np.minimum(hi, group_hi)
    li, positions = _expand(lo, hi)
    ri = srt.order[positions]
    if spec.strategy == "nearest" and not spec.allow_exact:
        keep = rside.time[ri] != lside.time[li]
        li, ri = li[keep], ri[keep]
    return li, ri


def _interval_pairs(lside: _Side, rside: _Side, ends: np.ndarray, span: tuple[int, int]) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Right intervals ``[start, end)`` containing each left time (all of them; overlaps included)."""
    import numpy as np

    _, width = span
    srt = _sorted_right(rside, _keys(rside, span))
    lk = _keys(lside, span)
    longest = int((ends - rside.time).max()) if len(ends) else 0
    group_lo = np.searchsorted(srt.keys, lside.group * width, side="left")
    lo = np.maximum(group_lo, np.searchsorted(srt.keys, lk - max(longest, 0), side="left"))
    hi = np.searchsorted(srt.keys, lk, side="right")
    li, positions = _expand(lo, np.maximum(hi, lo))
    ri = srt.order[positions]
    keep = ends[ri] > lside.time[li]
    return li[keep], ri[keep]


def _window_pairs(lside: _Side, rside: _Side, span: tuple[int, int], spec: AlignSpec) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    import numpy as np

    _, width = span
    srt = _sorted_right(rside, _keys(rside, span))
    lk = _keys(lside, span)
    before, after = _us(spec.window[0]), _us(spec.window[1])
    group_lo = np.searchsorted(srt.keys, lside.group * width, side="left")
    group_hi = np.searchsorted(srt.keys, (lside.group + 1) * width, side="left")
    lo = np.maximum(group_lo, np.searchsorted(srt.keys, lk - before, side="left"))
    hi = np.minimum(group_hi, np.searchsorted(srt.keys, lk + after, side="right"))
    li, positions = _expand(lo, np.maximum(hi, lo))
    return li, srt.order[positions]  # key order, ties by id: the concatenation order


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[lo[i], hi[i])``: (i repeated per element, the elements), in order."""
    import numpy as np

    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    li = np.repeat(np.arange(len(lo), dtype=np.int64), counts)
    if not total:
        return li, np.empty(0, dtype=np.int64)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return li, starts + np.arange(total, dtype=np.int64)


def _within_tolerance(li: np.ndarray, ri: np.ndarray, lside: _Side, rside: _Side,
                      spec: AlignSpec) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    if spec.tolerance is None:
        return li, ri
    keep = np.abs(rside.time[ri] - lside.time[li]) <= _us(spec.tolerance)
    return li[keep], ri[keep]


def _rank(li: np.ndarray, ri: np.ndarray, distance: np.ndarray, lside: _Side, rside: _Side) -> np.ndarray:
    """Order of candidate pairs by (left, |offset|, right_time, right_id)."""
    import numpy as np
    import pyarrow.compute as pc

    id_rank = np.empty(len(rside.time), dtype=np.int64)
    if len(rside.time):
        id_rank[np.asarray(pc.sort_indices(rside.ids).to_numpy())] = np.arange(len(rside.time))
    return np.lexsort((id_rank[ri], rside.time[ri], distance, li))


def _first_per_left(li: np.ndarray, ri: np.ndarray, lside: _Side, rside: _Side) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    distance = np.abs(rside.time[ri] - lside.time[li])
    order = _rank(li, ri, distance, lside, rside)
    li, ri = li[order], ri[order]
    first = np.ones(len(li), dtype=bool)
    first[1:] = li[1:] != li[:-1]
    return li[first], ri[first]


def _best_per_left(li: np.ndarray, ri: np.ndarray, offset: np.ndarray, distance: np.ndarray, lside: _Side,
                   rside: _Side) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    order = _rank(li, ri, distance, lside, rside)
    li, ri, offset, distance = li[order], ri[order], offset[order], distance[order]
    first = np.ones(len(li), dtype=bool)
    first[1:] = li[1:] != li[:-1]
    return li[first], ri[first], offset[first], distance[first]


def _greedy_one_to_one(li: np.ndarray, ri: np.ndarray, offset: np.ndarray, distance: np.ndarray, lside: _Side,
                       rside: _Side) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row of either side at most once: best pairs first by (|offset|, left time, left id, right time, id)."""
    import numpy as np
    import pyarrow.compute as pc

    def ranks(ids: pa.Array) -> np.ndarray:
        rank = np.empty(len(ids), dtype=np.int64)
        if len(ids):
            rank[np.asarray(pc.sort_indices(ids).to_numpy())] = np.arange(len(ids))
        return rank

    left_rank, right_rank = ranks(lside.ids), ranks(rside.ids)
    order = np.lexsort((right_rank[ri], rside.time[ri], left_rank[li], lside.time[li], distance))
    used_left: set[int] = set()
    used_right: set[int] = set()
    keep = []
    for position in order.tolist():
        left_row, right_row = int(li[position]), int(ri[position])
        if left_row in used_left or right_row in used_right:
            continue
        used_left.add(left_row)
        used_right.add(right_row)
        keep.append(position)
    chosen = np.asarray(keep, dtype=np.int64)
    return li[chosen], ri[chosen], offset[chosen], distance[chosen]


# -- output ---------------------------------------------------------------------------------------------
def _quality(distance: np.ndarray, spec: AlignSpec) -> np.ndarray:
    import numpy as np

    if spec.strategy == "interval":
        return np.ones(len(distance))
    if spec.tolerance is None:
        return 1.0 / (1.0 + distance / US)
    tol = _us(spec.tolerance)
    if tol == 0:
        return np.ones(len(distance))
    return np.clip(1.0 - distance / tol, 0.0, 1.0)


def _pairs_table(left: pa.Table, right: pa.Table, lside: _Side, rside: _Side, li: np.ndarray, ri: np.ndarray,
                 offset: np.ndarray, distance: np.ndarray, spec: AlignSpec) -> pa.Table:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    left_rows, right_rows = lside.rows[li], rside.rows[ri]
    ts = pa.timestamp("us", tz="UTC")
    columns: dict[str, Any] = {c: pc.take(left.column(c), left_rows) for c in spec.by}
    columns.update({
        "left_id": pc.take(lside.ids, li), "right_id": pc.take(rside.ids, ri),
        "left_time": pa.array(lside.time[li], pa.int64()).cast(ts),
        "right_time": pa.array(rside.time[ri], pa.int64()).cast(ts)})
    if spec.strategy == "interval":
        columns["right_end"] = pc.take(pc.cast(right.column(spec.right_end or ""), ts), right_rows)
    columns["offset"] = pa.array(offset.astype(np.int64), pa.int64()).cast(pa.duration("us"))
    columns["quality"] = pa.array(_quality(distance.astype(np.float64), spec), pa.float64())
    table = pa.table(columns)
    if spec.how == "left":
        table = _with_unmatched(left, lside, li, table, spec)
    return _sorted_output(table, spec)


def _with_unmatched(left: pa.Table, lside: _Side, li: np.ndarray, table: pa.Table, spec: AlignSpec) -> pa.Table:
    """Append the left rows that found no partner (or could not take part: null key or time)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    matched = np.zeros(left.num_rows, dtype=bool)
    matched[lside.rows[li]] = True
    rest = np.flatnonzero(~matched)
    ts = pa.timestamp("us", tz="UTC")
    extra: dict[str, Any] = {c: pc.take(left.column(c), rest) for c in spec.by}
    extra["left_id"] = pc.take(left.column(spec.left_id).cast("string"), rest)
    extra["left_time"] = pc.take(pc.cast(left.column(spec.left_time), ts), rest)
    unmatched = pa.table(extra)
    for name in table.column_names:
        if name not in unmatched.column_names:
            unmatched = unmatched.append_column(name, pa.nulls(len(rest), table.schema.field(name).type))
    return pa.concat_tables([table, unmatched.select(table.column_names).cast(table.schema)])


def _sorted_output(table: pa.Table, spec: AlignSpec) -> pa.Table:
    import pyarrow.compute as pc

    if not table.num_rows:
        return table
    distance = pc.abs(table.column("offset").cast("int64")) if "offset" in table.column_names else None
    work = table.append_column("__distance", distance) if distance is not None else table
    names = [*spec.by, "left_time", "left_id", *(["__distance"] if distance is not None else []),
             *[c for c in ("right_time", "right_id") if c in table.column_names]]
    order = pc.sort_indices(work, sort_keys=[(name, "ascending", "at_end") for name in names])
    return table.take(order)


def _window_table(left: pa.Table, right: pa.Table, lside: _Side, rside: _Side, pairs: tuple[np.ndarray,
                  np.ndarray], spec: AlignSpec) -> pa.Table:
    """One row per left row: the right ids and text within the window, in (time, id) order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    li, ri = pairs
    ts = pa.timestamp("us", tz="UTC")
    counts = np.bincount(li, minlength=len(lside.time)) if len(lside.time) else np.zeros(0, np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    texts = pc.take(right.column(spec.text).cast("string"), rside.rows[ri]).to_pylist()
    ids = pc.take(rside.ids, ri)
    joined = [spec.separator.join(t for t in texts[offsets[i]:offsets[i + 1]] if t is not None)
              for i in range(len(lside.time))]
    first_time = np.full(len(lside.time), np.iinfo(np.int64).min, dtype=np.int64)
    has = counts > 0
    first_time[has] = rside.time[ri[offsets[:-1][has]]]
    columns: dict[str, Any] = {c: pc.take(left.column(c), lside.rows) for c in spec.by}
    columns.update({
        "left_id": lside.ids, "left_time": pa.array(lside.time, pa.int64()).cast(ts),
        "right_ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), ids),
        "right_count": pa.array(counts.astype(np.int64), pa.int64()),
        "text": pa.array(joined, pa.string()),
        "offset": pa.array(np.where(has, first_time - lside.time, 0), pa.int64(),
                           mask=~has).cast(pa.duration("us")),
        "quality": pa.array(np.where(has, 1.0, 0.0), pa.float64())})
    table = pa.table(columns)
    if spec.how == "inner":
        table = table.filter(pa.array(has))
    else:  # rows without text stay (count 0); rows that could not take part (null key or time) are added
        table = _with_unmatched(left, lside, np.arange(len(lside.time)), table, spec)
    return _sorted_output(table, spec)
