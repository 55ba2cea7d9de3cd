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
``(|offset|, left_time, left_id, right_time, right_id)``.  A row whose time, id or any ``by`` key is
null matches nothing.  The result never depends on the input order, and its rows come sorted by
``(by..., left_time, left_id, |offset|, right_time, right_id)``.  ``order="left"`` (as-of strategies,
many_to_one) gives the same pairs with one row per left row in the left table's order instead, as
pandas and polars do: the left columns are then the input's own, not gathered into a new order, which
is faster and smaller for big tables.

Ids are compared in their own type: integer ids by value (9 before 10), string ids by their bytes
(``"10"`` before ``"9"``).  Rows with equal ids are told apart by their input position, which only
matters when an id is not unique.

Times are tz-aware timestamps of any unit, compared as UTC microseconds: finer times (pandas'
default nanoseconds) are truncated to the microsecond below (floor), so two times within the same
microsecond are equal, and the output times are those truncated microseconds.

Output columns: the ``by`` keys, ``left_id``, ``right_id`` (both as strings, whatever the id type),
``left_time``, ``right_time`` (UTC timestamps, microseconds), ``offset`` (signed duration
``right_time - left_time``) and ``quality`` (1 at zero offset, falling linearly to 0 at the
tolerance; ``1 / (1 + |offset| in s)`` without a tolerance; 1 for interval containment).
``interval`` adds ``right_end``; ``window`` gives one row per left row with ``right_ids`` (list),
``text`` (joined by ``separator``) and ``right_count`` instead of ``right_id``.  ``how="left"`` keeps
unmatched left rows with null partners.

Engine: numpy over int64 microseconds.  Group numbers follow the sort order of the ``by`` values,
and each row gets one integer key, ``group * width + (time - origin)``, so sorting the keys sorts
by ``(by..., time)``; ids are compared only within runs of equal keys.  Each side is put in that
order once; the left rows are then searched in output order (binary searches over the sorted right
keys, fast because the queries ascend too), so the pairs come out already sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Strategy = Literal["backward", "forward", "nearest", "interval", "window"]
Cardinality = Literal["many_to_one", "one_to_many", "one_to_one"]
US = 1_000_000
NULL_TIME = -(2**63)  # a null time in the int64 microsecond arrays
POINT_STRATEGIES = ("backward", "forward", "nearest")


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
    order: Literal["rule", "left"] = "rule"

    def __post_init__(self) -> None:
        if self.strategy == "interval" and not self.right_end:
            raise ConfigError("strategy 'interval' needs right_end (the column ending each right interval)",
                              setting="right_end")
        if self.tolerance is not None and self.tolerance < timedelta(0):
            raise ConfigError("tolerance must not be negative", setting="tolerance")
        if self.order == "left" and (self.strategy not in POINT_STRATEGIES or self.cardinality != "many_to_one"):
            raise ConfigError("order 'left' (rows in the left table's order) is for the as-of strategies (backward, "
                              "forward, nearest) with cardinality many_to_one; leave order as 'rule'",
                              setting="order")
        if self.strategy == "window" and self.cardinality != "many_to_one":
            raise ConfigError("strategy 'window' gives one row per left row; leave cardinality as many_to_one",
                              setting="cardinality")


class _Span(NamedTuple):
    """A row's key is ``group * width + (time - origin)``: one int64 that sorts by (group, time).

    ``width`` leaves room on both sides of every group's times for the searches (tolerance, window),
    so a search never reaches into the next group, and ``key % width + origin`` is the time again.
    """

    origin: int
    width: int


@dataclass
class _Groups:
    """One int64 group per row of each table (-1 where a key is null), numbered in key-value order."""

    left: np.ndarray
    right: np.ndarray
    values: pa.Array | None  # one plain by column: the value of group i is values[i]; else None


@dataclass
class _Side:
    """One table's rows that take part, in output order: by (group, time), then id, then input position."""

    rows: np.ndarray  # int64 positions in the input table
    keys: np.ndarray  # their int64 keys (see _Span), ascending
    dropped: np.ndarray  # rows that cannot take part (a null key, time, id or interval end), ascending


@dataclass
class _Prepared:
    """Both sides in order, and what the output needs besides them."""

    left: _Side
    right: _Side
    span: _Span
    key_values: pa.Array | None  # see _Groups.values
    right_end: np.ndarray | None  # interval: the end of every right input row, microseconds
    left_time: np.ndarray | None = None  # every left input row's time (us; NULL_TIME for null)
    right_time: np.ndarray | None = None


@dataclass
class _Pairs:
    """The output rows of a pair strategy, in output order: everything the columns are made of."""

    left_rows: np.ndarray  # int64 positions in the left table
    left_keys: np.ndarray  # their keys: group and time
    right_rows: np.ndarray  # the partners' positions in the right table, -1 for none
    offset: np.ndarray  # right_time - left_time (us); a placeholder where there is no partner
    left_dropped: np.ndarray  # left rows that could not take part (a left join adds them)
    span: _Span
    key_values: pa.Array | None
    right_end: np.ndarray | None


def align(left: pa.Table, right: pa.Table, spec: AlignSpec) -> pa.Table:
    """Pair ``left`` rows with ``right`` rows by time within ``spec.by`` keys (pure; inputs untouched)."""
    _check_columns(left, right, spec)
    if spec.order == "left":
        return _asof_in_left_order(left, right, spec)
    prep = _prepare(left, right, spec)
    if spec.strategy == "window":
        return _window_table(left, right, prep, spec)
    pairs = _pairs(prep, left.column(spec.left_id), spec)
    del prep  # the sorted sides are no part of the output: free them before it is built
    return _pairs_table(left, right, pairs, spec)


def _asof_in_left_order(left: pa.Table, right: pa.Table, spec: AlignSpec) -> pa.Table:
    """many_to_one backward/forward/nearest with one row per left row in the left table's order.

    The partners are the rule's (the same pairs as ``order="rule"``); only the row order differs, so the
    left columns are the input's own (no gather), and only the partners' ids and times are gathered.
    """
    import numpy as np
    import pyarrow as pa

    prep = _prepare(left, right, spec, left_ties=False)
    partner = _asof_partners(prep, spec)  # per left position in key order
    right_row = np.full(left.num_rows, -1, dtype=np.int64)
    offset = np.zeros(left.num_rows, dtype=np.int64)
    for start in range(0, len(partner), _SLICE):  # scattered to input order a slice at a time (small temporaries)
        stop = min(start + _SLICE, len(partner))
        found = partner[start:stop]
        ok = found >= 0
        at, found = prep.left.rows[start:stop][ok], found[ok]
        right_row[at] = prep.right.rows[found]
        offset[at] = prep.right.keys[found] - prep.left.keys[start:stop][ok]  # one group: key difference = time's
    left_time = prep.left_time
    assert left_time is not None
    del prep, partner
    keep = None if spec.how == "left" else np.flatnonzero(right_row >= 0)
    if keep is not None:
        right_row, offset, left_time = right_row[keep], offset[keep], left_time[keep]
    mask = right_row < 0
    mask_or_none = mask if mask.any() else None
    ts = pa.timestamp("us", tz="UTC")
    rows = None if keep is None else pa.array(keep, pa.int64())

    def own(column: str) -> Any:
        values = left.column(column)
        return values if rows is None else values.take(rows)

    columns: dict[str, Any] = {c: own(c) for c in spec.by}
    left_ids = own(spec.left_id)
    columns["left_id"] = left_ids if left_ids.type == pa.string() else left_ids.cast(pa.string())
    columns["right_id"] = _id_strings(right.column(spec.right_id), pa.array(right_row, pa.int64(),
                                                                              mask=mask_or_none))
    columns["left_time"] = pa.array(left_time, pa.int64(), mask=left_time == NULL_TIME).cast(ts)
    right_time = left_time + offset
    columns["right_time"] = pa.array(right_time, pa.int64(), mask=mask_or_none).cast(ts)
    del right_time
    columns["offset"] = pa.array(offset, pa.int64(), mask=mask_or_none).cast(pa.duration("us"))
    columns["quality"] = pa.array(_quality(offset, spec), pa.float64(), mask=mask_or_none)
    return pa.table(columns)


def _pairs(prep: _Prepared, left_ids: pa.ChunkedArray, spec: AlignSpec) -> _Pairs:
    """Find the pairs of a point or interval strategy and gather what the output needs of them."""
    import numpy as np

    lpos, rpos = _pair_positions(prep, left_ids, spec)
    left_keys = prep.left.keys if lpos is None else prep.left.keys[lpos]
    if len(prep.right.keys):  # no partner (-1) clips to position 0: a placeholder under the output's null mask
        right_keys = np.take(prep.right.keys, rpos, mode="clip")
        right_rows = np.take(prep.right.rows, rpos, mode="clip")
        right_rows[rpos < 0] = -1
    else:  # nothing to pair with: every rpos is -1
        right_keys, right_rows = left_keys, rpos
    return _Pairs(left_rows=prep.left.rows if lpos is None else prep.left.rows[lpos], left_keys=left_keys,
                  right_rows=right_rows, offset=right_keys - left_keys,  # one group: key difference = time's
                  left_dropped=prep.left.dropped, span=prep.span, key_values=prep.key_values,
                  right_end=prep.right_end)


def _pair_positions(prep: _Prepared, left_ids: pa.ChunkedArray,
                    spec: AlignSpec) -> tuple[np.ndarray | None, np.ndarray]:
    """(left positions, right positions) of the pairs in output order; right -1: none (left join); left None:
    every left position once, in order."""
    import numpy as np

    if spec.strategy in POINT_STRATEGIES and spec.cardinality == "many_to_one":
        partner = _asof_partners(prep, spec)
        if spec.how == "left":
            return None, partner
        matched = np.flatnonzero(partner >= 0)
        return matched, partner[matched]
    if spec.strategy == "interval":
        lpos, rpos = _interval_pairs(prep)
    else:
        lpos, rpos = _range_pairs(prep, spec)
    distance = np.abs(prep.right.keys[rpos] - prep.left.keys[lpos])
    order = np.lexsort((rpos, distance, lpos))  # the rule, within each left row
    lpos, rpos, distance = lpos[order], rpos[order], distance[order]
    if spec.cardinality == "many_to_one":  # interval: the best interval per left row
        first = np.ones(len(lpos), dtype=bool)
        first[1:] = lpos[1:] != lpos[:-1]
        lpos, rpos = lpos[first], rpos[first]
    elif spec.cardinality == "one_to_one":
        chosen = _greedy_one_to_one(lpos, rpos, distance)
        lpos, rpos = lpos[chosen], rpos[chosen]
    if spec.how == "left":
        lpos, rpos = _with_unmatched_positions(lpos, rpos, len(prep.left.rows))
    if spec.cardinality == "one_to_many":
        lpos, rpos = _merge_duplicate_left(prep, left_ids, lpos, rpos)
    return lpos, rpos


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
    """A timestamp column as int64 microseconds since the epoch (UTC); nulls become ``NULL_TIME``.

    Nanoseconds are truncated to the microsecond below (floor, also before 1970), never rejected.
    """
    import numpy as np
    import pyarrow as pa

    col = table.column(column)
    if not pa.types.is_timestamp(col.type) or col.type.tz is None:
        raise ConfigError(f"column {column!r} is {col.type}, not a timezone-aware timestamp; convert it to UTC "
                          "first (naive times are ambiguous)", setting=column)
    unit = col.type.unit
    if unit in ("s", "ms"):
        col = col.cast(pa.timestamp("us", tz="UTC"))  # exact: a multiplication
    parts = [np.asarray((chunk.fill_null(NULL_TIME) if chunk.null_count else chunk).to_numpy())
             for chunk in col.cast(pa.int64()).chunks]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, np.int64)
    if unit == "ns":
        micros = values // 1000
        micros[values == NULL_TIME] = NULL_TIME
        return micros
    return values


def _encode_groups(left: pa.Table, right: pa.Table, by: tuple[str, ...]) -> _Groups:
    """Group numbers shared by both tables, ascending with the ``by`` values (compared as in the left table)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n_left, n_all = left.num_rows, left.num_rows + right.num_rows
    if not by:
        zeros = np.zeros(n_all, dtype=np.int64)
        return _Groups(left=zeros[:n_left], right=zeros[n_left:], values=None)
    combined: np.ndarray | None = None
    groups = 1
    values: pa.Array | None = None
    for column in by:
        kind = left.column(column).type
        both = pa.chunked_array([*left.column(column).chunks, *right.column(column).cast(kind).chunks], type=kind)
        ranks, sorted_values = _ranked_codes(pc.dictionary_encode(both), n_all)
        cardinality = max(len(sorted_values), 1)
        if combined is None:
            combined = ranks
        else:
            combined = np.where((combined < 0) | (ranks < 0), -1, combined * cardinality + ranks)
        groups *= cardinality
        if groups > n_all:  # more combinations than rows: renumber those present (keeps the numbers small)
            combined, groups = _dense(combined)
        if len(by) == 1 and not pa.types.is_dictionary(kind):
            values = sorted_values
    assert combined is not None
    return _Groups(left=combined[:n_left], right=combined[n_left:], values=values)


def _ranked_codes(encoded: pa.ChunkedArray, n: int) -> tuple[np.ndarray, pa.Array]:
    """Each row's rank in the sorted dictionary (-1: null), and that sorted dictionary."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = encoded.unify_dictionaries()  # free when the chunks already share one (dictionary_encode's)
    if not encoded.num_chunks:
        return np.full(n, -1, dtype=np.int64), pa.array([], encoded.type.value_type)
    dictionary = encoded.chunk(0).dictionary
    order = np.asarray(pc.sort_indices(dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(dictionary) + 1, dtype=np.int64)
    rank[order] = np.arange(len(dictionary), dtype=np.int64)
    rank[-1] = -1  # code -1 (null) ranks -1
    ranks = np.empty(n, dtype=np.int64)
    start = 0
    for chunk in encoded.chunks:  # codes read in place, chunk by chunk: no combined copy
        codes = chunk.indices.fill_null(-1) if chunk.null_count else chunk.indices
        ranks[start:start + len(chunk)] = rank[np.asarray(codes.to_numpy())]
        start += len(chunk)
    return ranks, dictionary.take(order)


def _dense(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Groups renumbered 0..k-1 in the same order (-1 stays -1), and k."""
    import numpy as np

    present = groups >= 0
    unique, inverse = np.unique(groups[present], return_inverse=True)
    dense = np.full(len(groups), -1, dtype=np.int64)
    dense[present] = inverse
    return dense, max(len(unique), 1)


def _group_indices(left: pa.Table, right: pa.Table, by: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 group index per row of each table (-1 where a key is null), shared between the tables."""
    groups = _encode_groups(left, right, by)
    return groups.left, groups.right


def _takes_part(group: np.ndarray, time: np.ndarray, ids: pa.ChunkedArray,
                end: np.ndarray | None = None) -> np.ndarray:
    """Rows with a key, a time, an id (and an interval end): only they can match."""
    import numpy as np

    valid = (group >= 0) & (time != NULL_TIME)
    if ids.null_count:
        valid &= np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if end is not None:
        valid &= end != NULL_TIME
    return valid


def _prepare(left: pa.Table, right: pa.Table, spec: AlignSpec, *, left_ties: bool = True) -> _Prepared:
    """Both sides in key order.  ``left_ties=False`` leaves equal left keys in any order (a search per left
    row does not need them ordered; only the rule's output order does)."""
    groups = _encode_groups(left, right, spec.by)
    left_time, right_time = _micros(left, spec.left_time), _micros(right, spec.right_time)
    ends = _micros(right, spec.right_end) if spec.strategy == "interval" and spec.right_end else None
    left_ids, right_ids = left.column(spec.left_id), right.column(spec.right_id)
    left_valid = _takes_part(groups.left, left_time, left_ids)
    right_valid = _takes_part(groups.right, right_time, right_ids, ends)
    span = _span([(left_time, left_valid), (right_time, right_valid)], spec)
    return _Prepared(left=_side(groups.left, left_time, left_valid, left_ids if left_ties else None, span),
                     right=_side(groups.right, right_time, right_valid, right_ids, span),
                     span=span, key_values=groups.values, right_end=ends, left_time=left_time,
                     right_time=right_time)


def _span(times: list[tuple[np.ndarray, np.ndarray]], spec: AlignSpec) -> _Span:
    """The origin and width of the keys for these (time, valid) arrays, with room for the searches."""
    lows = [int(t.min(where=v, initial=2**63 - 1)) for t, v in times if v.any()]
    highs = [int(t.max(where=v, initial=NULL_TIME)) for t, v in times if v.any()]
    if not lows:
        return _Span(0, 1)
    reach = max(_us(spec.tolerance), _us(spec.window[0]), _us(spec.window[1]))
    origin = min(lows) - reach - 1
    return _Span(origin, max(highs) - origin + reach + 2)


def _us(delta: timedelta | None) -> int:
    return 0 if delta is None else int(delta // timedelta(microseconds=1))


def _side(group: np.ndarray, time: np.ndarray, valid: np.ndarray, ids: pa.ChunkedArray | None,
          span: _Span) -> _Side:
    """The valid rows sorted by key, equal keys by (id, position); ``ids`` None: equal keys in any order."""
    import numpy as np

    everything = bool(valid.all())
    rows = None if everything else np.flatnonzero(valid)
    if rows is not None:
        group, time = group[rows], time[rows]
    keys = _keys(group, time, span)
    order = _key_order(keys, group, time)
    if order is None:
        rows = np.arange(len(keys), dtype=np.int64) if rows is None else rows
    else:
        keys = keys[order]
        rows = order if rows is None else rows[order]
    if ids is not None:
        _order_ties_by_id(keys, rows, ids)
    dropped = np.empty(0, dtype=np.int64) if everything else np.flatnonzero(~valid)
    return _Side(rows=rows, keys=keys, dropped=dropped)


def _keys(group: np.ndarray, time: np.ndarray, span: _Span) -> np.ndarray:
    import numpy as np

    if len(group) and int(group.max()) > (np.iinfo(np.int64).max // span.width) - 1:
        raise ConfigError("too many by-keys over too long a time span for one pass; align per key chunk",
                          setting="by")
    keys = group * span.width
    keys += time
    keys -= span.origin
    return keys


def _key_order(keys: np.ndarray, group: np.ndarray, time: np.ndarray) -> np.ndarray | None:
    """Positions that sort ``keys`` (ties in any order); None when they are sorted already."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(keys) < 2 or bool((keys[1:] >= keys[:-1]).all()):
        return None
    if bool((time[1:] >= time[:-1]).all()):
        # in time order already (event logs usually are): a stable sort by group alone completes the key order,
        # in linear time for few groups: Arrow counts up to a few thousand, numpy sorts 16 bits by radix
        groups = int(group.max()) + 1
        if groups <= 4096:
            return np.asarray(pc.sort_indices(pa.array(group)).to_numpy()).astype(np.int64)
        if groups <= 2**16:
            return np.argsort(group.astype(np.uint16), kind="stable")
    return np.argsort(keys)


def _order_ties_by_id(keys: np.ndarray, rows: np.ndarray, ids: pa.ChunkedArray) -> None:
    """Within each run of equal keys, reorder ``rows`` (in place) by (id in its own type, position)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    same = keys[1:] == keys[:-1]
    if not same.any():
        return
    in_run = np.zeros(len(keys), dtype=bool)
    in_run[1:] = same
    in_run[:-1] |= same
    at = np.flatnonzero(in_run)
    tied = rows[at]
    runs = pa.table({"key": keys[at], "id": _sortable(pc.take(ids, tied)), "row": tied})
    order = pc.sort_indices(runs, sort_keys=[("key", "ascending"), ("id", "ascending"), ("row", "ascending")])
    rows[at] = tied[np.asarray(order.to_numpy())]


# -- pair finding: positions in the sides' order --------------------------------------------------------
def _asof_partners(prep: _Prepared, spec: AlignSpec) -> np.ndarray:
    """many_to_one backward/forward/nearest: each left position's right position, -1 for none.

    One binary search per left row over the distinct right keys; the first right row of a run of
    equal keys is the one with the smallest id.  The left rows are searched a slice at a time, so the
    temporaries stay small whatever the size.
    """
    import numpy as np

    lk, rk = prep.left.keys, prep.right.keys
    partner = np.full(len(lk), -1, dtype=np.int64)
    if not len(lk) or not len(rk):
        return partner
    run_start = np.flatnonzero(np.concatenate(([True], rk[1:] != rk[:-1])))
    distinct = rk[run_start]
    for start in range(0, len(lk), _SLICE):
        stop = min(start + _SLICE, len(lk))
        partner[start:stop] = _asof_slice(lk[start:stop], distinct, run_start, prep.span.width, spec)
    return partner


_SLICE = 1 << 20  # left rows searched at once


def _asof_slice(lk: np.ndarray, distinct: np.ndarray, run_start: np.ndarray, width: int,
                spec: AlignSpec) -> np.ndarray:
    import numpy as np

    group_start = lk // width * width
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (index in distinct, found, distance)
    if spec.strategy in ("backward", "nearest"):
        index = np.searchsorted(distinct, lk, side="right" if spec.allow_exact else "left") - 1
        key = distinct[np.maximum(index, 0)]
        found.append((index, (index >= 0) & (key >= group_start), lk - key))
    if spec.strategy in ("forward", "nearest"):
        index = np.searchsorted(distinct, lk if spec.allow_exact else lk + 1, side="left")
        key = distinct[np.minimum(index, len(distinct) - 1)]
        found.append((index, (index < len(distinct)) & (key < group_start + width), key - lk))
    del group_start
    index, ok, distance = found[0]
    if len(found) == 2:  # nearest: the forward row only when strictly closer (equal distance: the earlier)
        forward_index, forward_ok, forward_distance = found[1]
        forward = forward_ok & (~ok | (forward_distance < distance))
        index = np.where(forward, forward_index, index)
        distance = np.where(forward, forward_distance, distance)
        ok |= forward_ok
    if spec.tolerance is not None:
        ok &= distance <= _us(spec.tolerance)
    return np.where(ok, run_start[np.clip(index, 0, len(distinct) - 1)], -1)


def _range_pairs(prep: _Prepared, spec: AlignSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every qualifying right row per left row (one_to_many, and one_to_one's candidates)."""
    import numpy as np

    lk, rk, width = prep.left.keys, prep.right.keys, prep.span.width
    tol = _us(spec.tolerance)
    group_start = lk // width * width
    group_lo = np.searchsorted(rk, group_start, side="left")
    group_hi = np.searchsorted(rk, group_start + width, side="left")
    if spec.strategy == "backward":
        lo = group_lo if spec.tolerance is None else np.searchsorted(rk, lk - tol, side="left")
        hi = np.searchsorted(rk, lk, side="right" if spec.allow_exact else "left")
    elif spec.strategy == "forward":
        lo = np.searchsorted(rk, lk if spec.allow_exact else lk + 1, side="left")
        hi = group_hi if spec.tolerance is None else np.searchsorted(rk, lk + tol, side="right")
    else:  # nearest: both sides
        lo = group_lo if spec.tolerance is None else np.searchsorted(rk, lk - tol, side="left")
        hi = group_hi if spec.tolerance is None else np.searchsorted(rk, lk + tol, side="right")
    lpos, rpos = _expand(np.maximum(lo, group_lo), np.minimum(hi, group_hi))
    if spec.strategy == "nearest" and not spec.allow_exact:
        keep = rk[rpos] != lk[lpos]
        lpos, rpos = lpos[keep], rpos[keep]
    return lpos, rpos


def _interval_pairs(prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Right intervals ``[start, end)`` containing each left time (all of them; overlaps included)."""
    import numpy as np

    assert prep.right_end is not None
    lk, rk, (origin, width) = prep.left.keys, prep.right.keys, prep.span
    ends = prep.right_end[prep.right.rows]
    longest = int((ends - (rk % width + origin)).max()) if len(rk) else 0
    lo = np.maximum(np.searchsorted(rk, lk // width * width, side="left"),
                    np.searchsorted(rk, lk - max(longest, 0), side="left"))
    hi = np.searchsorted(rk, lk, side="right")
    lpos, rpos = _expand(lo, hi)
    keep = ends[rpos] > lk[lpos] % width + origin
    return lpos[keep], rpos[keep]


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[lo[i], hi[i])`` (empty where ``hi <= lo``): (i repeated per element, the elements), in order."""
    import numpy as np

    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    li = np.repeat(np.arange(len(lo), dtype=np.int64), counts)
    if not total:
        return li, np.empty(0, dtype=np.int64)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    return li, starts + np.arange(total, dtype=np.int64)


def _greedy_one_to_one(lpos: np.ndarray, rpos: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Indices of the pairs kept, ascending: best first by (|offset|, left (time, id), right (time, id)).

    Positions order each group's rows by (time, id), and groups never share a row, so ranking by
    (distance, left position, right position) chooses exactly as the rule across all groups.
    """
    import numpy as np

    order = np.lexsort((rpos, lpos, distance))
    used_left: set[int] = set()
    used_right: set[int] = set()
    keep = []
    for position, left_row, right_row in zip(order.tolist(), lpos[order].tolist(), rpos[order].tolist(),
                                             strict=True):
        if left_row in used_left or right_row in used_right:
            continue
        used_left.add(left_row)
        used_right.add(right_row)
        keep.append(position)
    return np.sort(np.asarray(keep, dtype=np.int64))


def _with_unmatched_positions(lpos: np.ndarray, rpos: np.ndarray, n_left: int) -> tuple[np.ndarray, np.ndarray]:
    """Add every left position without a pair (partner -1), keeping the order."""
    import numpy as np

    paired = np.zeros(n_left, dtype=bool)
    paired[lpos] = True
    alone = np.flatnonzero(~paired)
    if not len(alone):
        return lpos, rpos
    lpos = np.concatenate([lpos, alone])
    rpos = np.concatenate([rpos, np.full(len(alone), -1, dtype=np.int64)])
    order = np.argsort(lpos, kind="stable")
    return lpos[order], rpos[order]


def _merge_duplicate_left(prep: _Prepared, ids: pa.ChunkedArray, lpos: np.ndarray,
                          rpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left rows equal in (key, time, id) are one place in the output order: their pairs, grouped per row so
    far, are interleaved by (|offset|, right position) as the rule says (unmatched last)."""
    import numpy as np
    import pyarrow.compute as pc

    keys, rows = prep.left.keys, prep.left.rows
    duplicate = keys[1:] == keys[:-1]
    at = np.flatnonzero(duplicate)
    if not len(at) or bool((rpos < 0).all()):
        return lpos, rpos
    equal = pc.equal(_sortable(ids.take(rows[at])), _sortable(ids.take(rows[at + 1])))
    duplicate[at] = np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
    if not duplicate.any():
        return lpos, rpos
    rank = np.concatenate(([0], np.cumsum(~duplicate)))
    last = np.iinfo(np.int64).max
    paired = rpos >= 0
    at_right = np.where(paired, rpos, 0)
    distance = np.where(paired, np.abs(prep.right.keys[at_right] - keys[lpos]), last)
    order = np.lexsort((np.where(paired, rpos, last), distance, rank[lpos]))
    return lpos[order], rpos[order]


# -- output ---------------------------------------------------------------------------------------------
def _quality(offset: np.ndarray, spec: AlignSpec) -> np.ndarray:
    """The quality of each offset (us); see the module docstring."""
    import numpy as np

    if spec.strategy == "interval":
        return np.ones(len(offset))
    tol = _us(spec.tolerance)
    if spec.tolerance is not None and tol == 0:
        return np.ones(len(offset))
    quality = np.absolute(offset, dtype=np.float64)  # in place from here: one array, not one per operation
    if spec.tolerance is None:  # 1 / (1 + distance in s)
        quality /= US
        quality += 1.0
        return np.reciprocal(quality, out=quality)
    quality /= -tol  # 1 - distance / tolerance, within [0, 1]
    quality += 1.0
    return np.clip(quality, 0.0, 1.0, out=quality)


def _group_and_time(keys: np.ndarray, span: _Span) -> tuple[np.ndarray, np.ndarray]:
    """The group and the time (us) of each key."""
    import numpy as np

    group = keys // span.width
    time = group * span.width
    np.subtract(keys, time, out=time)
    time += span.origin
    return group, time


def _id_strings(ids: pa.ChunkedArray, rows: pa.Array | np.ndarray) -> pa.ChunkedArray:
    """The ids at ``rows`` (null where a row is null), as strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    taken = pc.take(ids, rows)
    return taken if taken.type == pa.string() else taken.cast(pa.string())


def _left_columns(left: pa.Table, key_values: pa.Array | None, group: np.ndarray, rows: np.ndarray,
                  spec: AlignSpec) -> dict[str, Any]:
    """The by columns and ``left_id`` of left rows given by their groups and input positions."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if key_values is not None:  # from the small sorted dictionary, not a gather of the big column
        columns: dict[str, Any] = {spec.by[0]: key_values.take(pa.array(group))}
    else:
        columns = {c: pc.take(left.column(c), rows) for c in spec.by}
    columns["left_id"] = _id_strings(left.column(spec.left_id), rows)
    return columns


def _pairs_table(left: pa.Table, right: pa.Table, pairs: _Pairs, spec: AlignSpec) -> pa.Table:
    """The output of a point or interval strategy (its columns in the documented order)."""
    import numpy as np
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    alone = pairs.right_rows < 0
    mask = alone if alone.any() else None
    right_at = pa.array(pairs.right_rows, pa.int64(), mask=mask)
    group, left_time = _group_and_time(pairs.left_keys, pairs.span)
    columns = _left_columns(left, pairs.key_values, group, pairs.left_rows, spec)
    del group
    columns["right_id"] = _id_strings(right.column(spec.right_id), right_at)
    columns["left_time"] = pa.array(left_time, pa.int64()).cast(ts)
    columns["right_time"] = pa.array(left_time + pairs.offset, pa.int64(), mask=mask).cast(ts)
    if spec.strategy == "interval":
        assert pairs.right_end is not None
        ends = pairs.right_end[np.maximum(pairs.right_rows, 0)] if len(pairs.right_end) else left_time
        columns["right_end"] = pa.array(ends, pa.int64(), mask=mask).cast(ts)  # (placeholders under the mask)
    columns["offset"] = pa.array(pairs.offset, pa.int64(), mask=mask).cast(pa.duration("us"))
    columns["quality"] = pa.array(_quality(pairs.offset, spec), pa.float64(), mask=mask)
    table = pa.table(columns)
    if spec.how == "left" and len(pairs.left_dropped):
        right_ids = right.column(spec.right_id).take(right_at)
        table = _with_dropped(table, left, pairs.left_dropped, pairs.left_rows, right_ids, spec)
    return table


def _with_dropped(table: pa.Table, left: pa.Table, dropped: np.ndarray, left_rows: np.ndarray,
                  right_ids: pa.ChunkedArray | None, spec: AlignSpec) -> pa.Table:
    """Append the ``dropped`` left rows (they could not take part: null key, time or id), partnerless, then sort
    all by the rule (``left_rows``, ``right_ids``: the left row and right id of each row of ``table``, so that
    the ids are compared in their own type)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    times = _micros(left, spec.left_time)[dropped]
    extra: dict[str, Any] = {c: pc.take(left.column(c), dropped) for c in spec.by}
    extra["left_id"] = _id_strings(left.column(spec.left_id), dropped)
    extra["left_time"] = pa.array(times, pa.int64(), mask=times == NULL_TIME).cast(pa.timestamp("us", tz="UTC"))
    tail = pa.table({name: extra.get(name, pa.nulls(len(dropped), table.schema.field(name).type))
                     for name in table.column_names}).cast(table.schema)
    whole = pa.concat_tables([table, tail])
    left_ids = left.column(spec.left_id).take(np.concatenate([left_rows, dropped]))
    if right_ids is not None:
        right_ids = pa.chunked_array([*right_ids.chunks, pa.nulls(len(dropped), right_ids.type)],
                                     type=right_ids.type)
    return whole.take(_rule_order(whole, left_ids, right_ids, spec))


def _rule_order(table: pa.Table, left_ids: pa.ChunkedArray, right_ids: pa.ChunkedArray | None,
                spec: AlignSpec) -> pa.Array:
    """Positions sorting ``table`` by (by..., left_time, left_id, |offset|, right_time, right_id), nulls last;
    the ids are given apart so that they are compared in their own type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys: list[Any] = [table.column(c) for c in spec.by]
    keys += [table.column("left_time"), left_ids]
    if "offset" in table.column_names:
        keys.append(pc.abs(table.column("offset").cast(pa.int64())))
    if "right_time" in table.column_names:
        keys.append(table.column("right_time"))
    if right_ids is not None:
        keys.append(right_ids)
    names = [f"k{i}" for i in range(len(keys))]
    work = pa.Table.from_arrays([_sortable(key) for key in keys], names=names)
    return pc.sort_indices(work, sort_keys=[(name, "ascending", "at_end") for name in names])


def _sortable(column: Any) -> Any:
    """A column pyarrow can sort rows by: dictionary-encoded values decoded (they compare as values)."""
    import pyarrow as pa

    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _window_table(left: pa.Table, right: pa.Table, prep: _Prepared, spec: AlignSpec) -> pa.Table:
    """One row per left row: the right ids and text within the window, in (time, id) order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lk, rk, width = prep.left.keys, prep.right.keys, prep.span.width
    group_start = lk // width * width
    lo = np.maximum(np.searchsorted(rk, group_start, side="left"),
                    np.searchsorted(rk, lk - _us(spec.window[0]), side="left"))
    hi = np.minimum(np.searchsorted(rk, group_start + width, side="left"),
                    np.searchsorted(rk, lk + _us(spec.window[1]), side="right"))
    lpos, rpos = _expand(lo, hi)  # right positions in key order, ties by id: the concatenation order
    counts = np.maximum(hi - lo, 0)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    right_rows = prep.right.rows[rpos]
    texts = pc.take(right.column(spec.text), right_rows).cast(pa.string())
    present = texts.is_valid()
    present_np = np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)
    text_offsets = np.concatenate(([0], np.cumsum(np.bincount(lpos[present_np], minlength=len(lk))))).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(text_offsets, pa.int32()),
                                                     texts.filter(present).combine_chunks()), spec.separator)
    has = counts > 0
    first_offset = np.zeros(len(lk), dtype=np.int64)  # to the first right row in the window (null if none)
    first_offset[has] = rk[lo[has]] - lk[has]
    ts = pa.timestamp("us", tz="UTC")
    group, left_time = _group_and_time(lk, prep.span)
    columns = _left_columns(left, prep.key_values, group, prep.left.rows, spec)
    columns.update({
        "left_time": pa.array(left_time, pa.int64()).cast(ts),
        "right_ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                              _id_strings(right.column(spec.right_id), right_rows).combine_chunks()),
        "right_count": pa.array(counts, pa.int64()),
        "text": joined,
        "offset": pa.array(first_offset, pa.int64(), mask=~has).cast(pa.duration("us")),
        "quality": pa.array(np.where(has, 1.0, 0.0), pa.float64())})
    table = pa.table(columns)
    if spec.how == "inner":
        return table.filter(pa.array(has))
    if len(prep.left.dropped):  # rows without text stay (count 0); rows that could not take part are added
        return _with_dropped(table, left, prep.left.dropped, prep.left.rows, None, spec)
    return table
