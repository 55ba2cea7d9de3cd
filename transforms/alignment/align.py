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
keys, fast because the queries ascend too), so the pairs come out already sorted.  ``order="left"``
needs no output order: the left table is searched a piece at a time, on several threads for big
tables, and when both tables are in time order (as event logs are) the right one is not sorted as
a whole either (see ``_left_order_partners``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Executor

    import numpy as np
    import pyarrow as pa

    # a left piece's number and its valid rows' sorted keys and groups -> (the partner's right row per key, -1 for
    # none; the offset, 0 for none), or None when none has a partner
    _Find = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]

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
    The same partners as :func:`_asof_in_left_order_reference`, found with less work and memory (see
    :func:`_left_order_join`), on several threads for big tables (numpy and Arrow release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = _workers(left.num_rows + right.num_rows)
    try:
        with _small_pages():
            if workers == 1:
                return _left_order_join(left, right, spec, None)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="align") as pool:
                return _left_order_join(left, right, spec, pool)
    except _TooWide:  # keys near the int64 limit: the reference decides (it numbers the groups its own way)
        return _asof_in_left_order_reference(left, right, spec)


_PAGES_LOCK = threading.Lock()
_PAGES_USERS = [0, True]  # joins running in _small_pages, numpy's hugepage setting before the first of them


@contextmanager
def _small_pages() -> Iterator[None]:
    """numpy's big arrays without ``madvise(MADV_HUGEPAGE)`` while a join runs (then numpy's setting as it was).

    The join's arrays are short-lived and written once; where transparent huge pages are made on request
    (``defrag=madvise``, a common default), each huge page numpy asks for can stall in direct compaction, and
    that cost varied from 0.1 s to 1 s per 10M-row join, more than the rest of the memory's cost.  Nested and
    concurrent joins share one switch (the setting is process-wide and only about speed)."""
    import numpy as np

    switch = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    with _PAGES_LOCK:
        if _PAGES_USERS[0] == 0:
            _PAGES_USERS[1] = bool(switch(False))
        _PAGES_USERS[0] += 1
    try:
        yield
    finally:
        with _PAGES_LOCK:
            _PAGES_USERS[0] -= 1
            if _PAGES_USERS[0] == 0:
                switch(_PAGES_USERS[1])


class _TooWide(Exception):
    """Some group's keys would not fit in an int64."""


def _asof_in_left_order_reference(left: pa.Table, right: pa.Table, spec: AlignSpec) -> pa.Table:
    """:func:`_asof_in_left_order` the plain way (one thread, both sides sorted whole as for ``order="rule"``):
    the reference the tests hold the fast path to."""
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


# -- the left-order as-of join, lean -------------------------------------------------------------------------
_PARALLEL_ROWS = 1 << 18  # left + right rows from which the left-order as-of join uses several threads
_MAX_WORKERS = 8


def _workers(rows: int) -> int:
    """Threads for a job of ``rows`` rows: one for small jobs, else the CPUs this process may use (at most 8), or
    ``ROSETTA_ALIGN_THREADS`` (set it to 1 where several tasks share a machine's cores)."""
    import os

    if rows < _PARALLEL_ROWS:
        return 1
    wanted = os.environ.get("ROSETTA_ALIGN_THREADS", "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise ConfigError(f"ROSETTA_ALIGN_THREADS={wanted!r} is not a whole number of threads",
                              setting="ROSETTA_ALIGN_THREADS") from None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_WORKERS))


def _together(pool: Executor | None, calls: Iterable[Callable[[], Any]]) -> list[Any]:
    """The results of ``calls``, run on ``pool``'s threads (in order on this one when there is no pool)."""
    if pool is None:
        return [call() for call in calls]
    futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


class _Scan(NamedTuple):
    """What one pass over a table's times tells: which rows take part, their time range, whether in time order."""

    valid: np.ndarray  # per row: a key, a time and an id
    low: int | None  # the smallest and largest time of a valid row (None: no valid row)
    high: int | None
    in_time_order: bool  # the valid rows' times never decrease
    null_times: int  # rows whose time is NULL_TIME (null, or that very value)
    bounds: list[tuple[int, int] | None]  # per piece: the first and last valid time (None: no valid row)


def _left_order_join(left: pa.Table, right: pa.Table, spec: AlignSpec, pool: Executor | None) -> pa.Table:
    """The output of :func:`_asof_in_left_order`, made a piece at a time with few whole-table temporaries
    (fresh memory costs time too): group codes from dictionaries in any order (only equality matters here),
    times read from the Arrow chunks in place, the partners found per piece of the left table
    (:func:`_left_order_partners`), their ids gathered from the stretch of right rows each piece points into,
    the left columns (times included, where they are microseconds already) the input's own."""
    import numpy as np
    import pyarrow as pa

    # right_time's memory (filled last) first holds the right times while the partners are found: fresh memory
    # costs time, so the join takes it once
    right_time = np.empty(left.num_rows, dtype=np.int64) if spec.how != "inner" else None
    scratch = right_time if right_time is not None and right.num_rows <= left.num_rows else None
    right_row, offset, null_times = _left_order_partners(left, right, spec, pool, scratch)
    mask = right_row < 0
    ts = pa.timestamp("us", tz="UTC")
    left_pieces, left_unit = _time_pieces(left, spec.left_time)
    keep: np.ndarray | None = None
    if spec.how == "inner":
        keep = np.flatnonzero(~mask)
        right_row, offset, mask = right_row[keep], offset[keep], mask[keep]
        taken = pa.array(keep, pa.int64())
        columns: dict[str, Any] = {c: left.column(c).take(taken) for c in spec.by}
        left_ids = left.column(spec.left_id).take(taken)
        left_times: Any = _micros(left, spec.left_time)[keep]
        left_times = pa.array(left_times, pa.int64(), mask=left_times == NULL_TIME).cast(ts)
    else:
        columns = {c: left.column(c) for c in spec.by}
        left_ids = left.column(spec.left_id)
        column = left.column(spec.left_time)
        if column.type.unit in ("us", "s", "ms") and null_times == column.null_count:
            left_times = column.cast(ts)  # the input's times (null exactly where they are NULL_TIME)
        else:
            left_times = _micros(left, spec.left_time)
            left_times = pa.array(left_times, pa.int64(), mask=left_times == NULL_TIME).cast(ts)
    mask_or_none = mask if mask.any() else None
    columns["left_id"] = left_ids if left_ids.type == pa.string() else left_ids.cast(pa.string())
    columns["right_id"] = _gather_ids(right.column(spec.right_id), right_row, pool)
    del right_row
    if right_time is None:  # the kept rows' times, then plus their offsets
        assert keep is not None
        right_time = offset.copy()
        right_time += _micros(left, spec.left_time)[keep]
    else:
        def add(start: int, piece: pa.Array) -> None:
            time = _piece_micros(piece, left_unit)
            np.add(time, offset[start:start + len(time)], out=right_time[start:start + len(time)])

        _together(pool, (partial(add, start, piece) for start, piece in left_pieces))
    columns["left_time"] = left_times
    columns["right_time"] = pa.array(right_time, pa.int64(), mask=mask_or_none).cast(ts)
    columns["offset"] = pa.array(offset, pa.int64(), mask=mask_or_none).cast(pa.duration("us"))
    quality = np.empty(len(offset), dtype=np.float64)

    def rate(start: int) -> None:
        quality[start:start + _SLICE] = _quality(offset[start:start + _SLICE], spec)

    _together(pool, (partial(rate, start) for start in range(0, len(offset), _SLICE)))
    columns["quality"] = pa.array(quality, pa.float64(), mask=mask_or_none)
    return pa.table(columns)


def _left_order_partners(left: pa.Table, right: pa.Table, spec: AlignSpec, pool: Executor | None,
                         scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per left row: the partner's right row (-1: none) and the offset (us; 0 without a partner); and how many
    left times are NULL_TIME.  ``scratch`` (int64, at least as long as the right table; free to overwrite) may
    hold the right times while they are needed.

    The left table is taken a piece at a time (on ``pool``): the piece's valid rows are ordered by key and
    searched among right keys (:func:`_asof_found`), either near ones of the whole right side sorted once
    (:func:`_whole_right`), or, when both tables are in time order, among the right rows of the piece's time
    range and the last (first) right row of each group before (after) it (:func:`_right_in_time_order`).
    """
    import numpy as np

    left_codes, right_codes = _shared_codes(left, right, spec.by, pool)
    left_pieces, left_unit = _time_pieces(left, spec.left_time)
    right_pieces, right_unit = _time_pieces(right, spec.right_time)
    left_scan = _scan(left_pieces, left_unit, left_codes, left.column(spec.left_id), pool)
    right_scan = _scan(right_pieces, right_unit, right_codes, right.column(spec.right_id), pool)
    lows = [s.low for s in (left_scan, right_scan) if s.low is not None]
    highs = [s.high for s in (left_scan, right_scan) if s.high is not None]
    span = _span_of(min(lows) if lows else None, max(highs) if highs else None, spec)
    groups = 1 + max(int(left_codes.max(initial=-1)), int(right_codes.max(initial=-1)))
    if groups > (np.iinfo(np.int64).max // span.width) - 1:
        raise _TooWide
    if left_scan.in_time_order and right_scan.in_time_order and groups <= 2**16 \
            and groups * len(left_pieces) <= 2**22:  # per piece, a row per group before (after) it
        find = _right_in_time_order(right, right_pieces, right_unit, right_codes, right_scan, left_scan.bounds,
                                    groups, span, spec, pool, scratch)
    else:
        find = _whole_right(right_pieces, right_unit, right_codes, right_scan, span, right.column(spec.right_id),
                            spec, pool)
    del right_codes, right_scan
    n = left.num_rows
    right_row = np.empty(n, dtype=np.int32 if right.num_rows < 2**31 - 1 else np.int64)
    offset = np.empty(n, dtype=np.int64)

    def search(number: int, start: int, piece: pa.Array) -> None:
        time = _piece_micros(piece, left_unit)
        stop = start + len(time)
        right_row[start:stop] = -1
        offset[start:stop] = 0
        rows, keys, group = _piece_in_key_order(left_codes[start:stop], time, left_scan.valid[start:stop], span)
        found = find(number, keys, group) if len(keys) else None
        if found is None:
            return
        partner, shift = found
        if rows is None:
            right_row[start:stop] = partner
            offset[start:stop] = shift
        else:
            right_row[start:stop][rows] = partner
            offset[start:stop][rows] = shift

    _together(pool, (partial(search, number, start, piece) for number, (start, piece) in enumerate(left_pieces)))
    return right_row, offset, left_scan.null_times


def _whole_right(pieces: list[tuple[int, pa.Array]], unit: str, codes: np.ndarray, scan: _Scan, span: _Span,
                 ids: pa.ChunkedArray, spec: AlignSpec, pool: Executor | None) -> _Find:
    """The partner finder over the whole right side sorted by key (:func:`_right_winners`), each piece's keys
    searched in the stretch near them (:func:`_near`)."""
    import numpy as np

    right_keys, winner = _right_winners(pieces, unit, codes, scan, span, ids, pool)

    def find(number: int, keys: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if not len(right_keys):
            return None
        near = _near(keys, group, right_keys)
        searched, partners = (right_keys, winner) if near is None else (right_keys[near], winner[near])
        index, ok = _asof_found(keys, searched, span.width, spec, np.multiply(group, span.width, dtype=np.int64))
        shift = searched[index]
        shift -= keys  # one group: key difference = time's
        shift[~ok] = 0
        return np.where(ok, partners[index], -1), shift

    return find


def _right_in_time_order(right: pa.Table, pieces: list[tuple[int, pa.Array]], unit: str, codes: np.ndarray,
                         scan: _Scan, left_bounds: list[tuple[int, int] | None], groups: int, span: _Span,
                         spec: AlignSpec, pool: Executor | None, scratch: np.ndarray | None) -> _Find:
    """The partner finder when both tables are in time order: no sort of the right side as a whole.

    Of every run of right rows at one time and group only the rule's row is kept (:func:`_time_ties`), so the
    kept rows have distinct keys.  A left piece with valid times ``[a, b]`` can only pair with the kept right
    rows timed ``[a, b]`` and, per group, the last one before ``a`` (backward, nearest) and the first one after
    ``b`` (forward, nearest); those few rows, ordered by key (a stable sort by group keeps each group's rows in
    time order), are what the piece's keys are searched in.
    """
    import numpy as np

    rows: np.ndarray | None = None if bool(scan.valid.all()) else np.flatnonzero(scan.valid)
    times = np.empty(right.num_rows, dtype=np.int64) if scratch is None else scratch[:right.num_rows]

    def fill(start: int, piece: pa.Array) -> None:  # what _micros gives, a piece at a time (on ``pool``)
        time = _piece_micros(piece, unit)
        times[start:start + len(time)] = time

    _together(pool, (partial(fill, start, piece) for start, piece in pieces))
    group = codes
    if rows is not None:
        times, group = times[rows], codes[rows]
    keep = _time_ties(times, group, rows, right.column(spec.right_id))
    numbers = [i for i, bound in enumerate(left_bounds) if bound is not None]
    bounds = np.array([bound for bound in left_bounds if bound is not None], dtype=np.int64).reshape(-1, 2)
    firsts = np.searchsorted(times, bounds[:, 0], side="left")
    lasts = np.searchsorted(times, bounds[:, 1], side="right")
    span_of = {number: (int(first), int(last)) for number, first, last in zip(numbers, firsts, lasts, strict=True)}
    before: dict[int, np.ndarray] = {}
    after: dict[int, np.ndarray] = {}
    if spec.strategy in ("backward", "nearest"):  # the last kept row of each group before each piece's range
        last = np.full(groups, -1, dtype=np.int64)
        done = 0
        for number, first in zip(numbers, firsts.tolist(), strict=True):
            _sweep(np.maximum, last, group, keep, done, first)
            done = max(done, first)
            before[number] = last.copy()
    if spec.strategy in ("forward", "nearest"):  # the first kept row of each group after each piece's range
        first_after = np.full(groups, len(times), dtype=np.int64)
        done = len(times)
        for number, last_end in zip(reversed(numbers), reversed(lasts.tolist()), strict=True):
            _sweep(np.minimum, first_after, group, keep, last_end, done)
            done = min(done, last_end)
            after[number] = first_after.copy()

    def find(number: int, keys: np.ndarray, left_group: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        present = left_group[np.flatnonzero(np.concatenate(([True], left_group[1:] != left_group[:-1])))]
        first, last = span_of[number]
        inside = np.arange(first, last, dtype=np.int64)
        if keep is not None:
            inside = inside[keep[first:last]]
        parts = [inside]
        if number in before:
            found = before[number][present]
            parts.insert(0, found[found >= 0])
        if number in after:
            found = after[number][present]
            parts.append(found[found < len(times)])
        at = np.concatenate(parts) if len(parts) > 1 else inside
        if not len(at):
            return None
        near = group[at]
        candidates = np.multiply(near, span.width, dtype=np.int64)
        candidates += times[at]
        candidates -= span.origin
        order = _group_order(near) if len(at) > 1 else None
        if order is not None:  # per group in time order already: a stable sort by group sorts the keys
            candidates, at = candidates[order], at[order]
        index, ok = _asof_found(keys, candidates, span.width, spec,
                                np.multiply(left_group, span.width, dtype=np.int64))
        shift = candidates[index]
        shift -= keys  # one group: key difference = time's
        shift[~ok] = 0
        partner = at[index] if rows is None else rows[at[index]]
        return np.where(ok, partner, -1), shift

    return find


def _sweep(combine: Any, table: np.ndarray, group: np.ndarray, keep: np.ndarray | None, start: int,
           stop: int) -> None:
    """Fold the positions ``start:stop`` of the kept rows into ``table`` per group (``combine``: np.maximum for
    the last one, np.minimum for the first one)."""
    import numpy as np

    if stop <= start:
        return
    positions = np.arange(start, stop, dtype=np.int64)
    here = group[start:stop]
    if keep is not None:
        positions, here = positions[keep[start:stop]], here[keep[start:stop]]
    combine.at(table, here, positions)


def _time_ties(times: np.ndarray, group: np.ndarray, rows: np.ndarray | None,
               ids: pa.ChunkedArray) -> np.ndarray | None:
    """For rows in time order: which to keep so that each (time, group) has one row, the rule's (the smallest
    id in its own type, then the smallest position); None: keep them all."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    same = times[1:] == times[:-1]
    if not same.any():
        return None
    in_run = np.zeros(len(times), dtype=bool)  # rows that share their time with a neighbour
    in_run[1:] = same
    in_run[:-1] |= same
    del same
    at = np.flatnonzero(in_run)
    del in_run
    tied = at if rows is None else rows[at]
    paired = _paired_ties(times[at], group[at], tied, ids)
    if paired is not None:  # runs of two rows only (as copied rows make them): one comparison each, no sort
        if not len(paired):
            return None
        keep = np.ones(len(times), dtype=bool)
        keep[at[paired]] = False
        return keep
    runs = pa.table({"time": times[at], "group": group[at], "id": _sortable(_take_ascending(ids, tied)),
                     "row": tied})
    order = np.asarray(pc.sort_indices(runs, sort_keys=[("time", "ascending"), ("group", "ascending"),
                                                        ("id", "ascending"), ("row", "ascending")]).to_numpy())
    at = at[order]
    tied_times, tied_groups = times[at], group[at]
    later = (tied_times[1:] == tied_times[:-1]) & (tied_groups[1:] == tied_groups[:-1])  # not the rule's row
    if not later.any():
        return None
    keep = np.ones(len(times), dtype=bool)
    keep[at[1:][later]] = False
    return keep


def _paired_ties(times: np.ndarray, group: np.ndarray, tied: np.ndarray, ids: pa.ChunkedArray) -> np.ndarray | None:
    """For :func:`_time_ties`' rows in a time run (ascending rows, their times and groups): the positions of the
    rows that are not the rule's row of their time and group, for ids that are strings or integers (compared as
    the sort does): runs of two rows (as copied rows make them) with one comparison each, longer runs sorted;
    None for other ids (then the caller sorts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = ids.type.value_type if pa.types.is_dictionary(ids.type) else ids.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or pa.types.is_integer(kind)):
        return None
    starts = np.flatnonzero(np.concatenate(([True], times[1:] != times[:-1])))
    lengths = np.diff(np.append(starts, len(times)))
    first = starts[lengths == 2]
    first = first[group[first] == group[first + 1]]  # two rows at one time and group: the rule's is one of them
    losers = []
    if len(first):
        first_ids = _sortable(_take_ascending(ids, tied[first]))
        second_ids = _sortable(_take_ascending(ids, tied[first + 1]))
        second_wins = np.asarray(pc.less(second_ids, first_ids).to_numpy(zero_copy_only=False), dtype=bool)
        losers.append(np.where(second_wins, first, first + 1))  # equal ids: the smaller row (the first) wins
    longer = lengths > 2
    if longer.any():  # the rows of longer time runs, sorted as the caller would
        at = np.repeat(starts[longer], lengths[longer]) + _ranges(lengths[longer])
        runs = pa.table({"time": times[at], "group": group[at], "id": _sortable(_take_ascending(ids, tied[at])),
                         "row": tied[at]})
        order = np.asarray(pc.sort_indices(runs, sort_keys=[("time", "ascending"), ("group", "ascending"),
                                                            ("id", "ascending"), ("row", "ascending")]).to_numpy())
        at = at[order]
        later = (times[at][1:] == times[at][:-1]) & (group[at][1:] == group[at][:-1])
        losers.append(at[1:][later])
    return np.concatenate(losers) if losers else np.empty(0, dtype=np.int64)


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n of ``lengths``, one after another."""
    import numpy as np

    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def _near(keys: np.ndarray, group: np.ndarray, right_keys: np.ndarray) -> np.ndarray | None:
    """For a piece's sorted keys (and their groups): the positions of the stretch of ``right_keys`` that its
    as-of searches can end in (ascending), so that they search that short stretch instead; None when it is not
    short.

    Per group, a search for ``k`` (or ``k + 1``) between the group's first and last key ends between
    ``searchsorted(first)`` and ``searchsorted(last + 1)``; with one more element either side, the stretch
    holds the neighbours every search reads, so a search in it finds the same elements as one in ``right_keys``.
    """
    import numpy as np

    starts = np.flatnonzero(group[1:] != group[:-1]) + 1
    ends = np.append(starts, len(keys)) - 1
    starts = np.insert(starts, 0, 0)
    low = np.maximum(np.searchsorted(right_keys, keys[starts], side="left") - 1, 0)
    high = np.minimum(np.searchsorted(right_keys, keys[ends] + 1, side="right") + 1, len(right_keys))
    low[1:] = np.maximum(low[1:], high[:-1])  # the stretches in order without overlap (high ascends with groups)
    counts = np.maximum(high - low, 0)
    total = int(counts.sum())
    if total > 2 * len(keys) + 1024:
        return None
    firsts = np.cumsum(counts) - counts
    return np.repeat(low - firsts, counts) + np.arange(total, dtype=np.int64)


def _shared_codes(left: pa.Table, right: pa.Table, by: tuple[str, ...],
                  pool: Executor | None) -> tuple[np.ndarray, np.ndarray]:
    """One code per row of each table (-1 where a key is null), equal exactly where the ``by`` values are equal
    (as :func:`_encode_groups` compares them), numbered in no particular order.

    One plain string, binary or integer column is dictionary-encoded in as many parts as ``pool`` has threads,
    each part with its own dictionary, renumbered into their union; anything else as :func:`_encode_groups`.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = left.column(by[0]).type if len(by) == 1 else None
    if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                            or pa.types.is_large_binary(kind) or pa.types.is_integer(kind)):
        groups = _encode_groups(left, right, by)
        return groups.left, groups.right
    column = by[0]
    pieces = [(side, at, chunk.slice(at, _SLICE)) for side, values in enumerate((left.column(column),
                                                                                 right.column(column).cast(kind)))
              for chunk in values.chunks for at in range(0, len(chunk), _SLICE)]
    starts: list[int] = []  # each piece's first row in its table
    done = [0, 0]
    for side, _, piece in pieces:
        starts.append(done[side])
        done[side] += len(piece)
    parts = 1 if pool is None else min(len(pieces), _workers(left.num_rows + right.num_rows)) or 1
    bounds = [len(pieces) * i // parts for i in range(parts + 1)]
    encoded = _together(pool, (partial(_encode_part, [p for _, _, p in pieces[a:b]], kind)
                               for a, b in pairwise(bounds)))
    union = encoded[0].chunk(0).dictionary if parts == 1 and len(pieces) else \
        pc.unique(pa.concat_arrays([e.chunk(0).dictionary for e in encoded if e.num_chunks] or [pa.array([], kind)]))
    dtype = np.int16 if len(union) < 2**15 else np.int32 if len(union) < 2**31 else np.int64
    codes = (np.empty(left.num_rows, dtype=dtype), np.empty(right.num_rows, dtype=dtype))

    def renumber(part: int) -> None:
        if not encoded[part].num_chunks:
            return
        dictionary = encoded[part].chunk(0).dictionary
        table = np.empty(len(dictionary) + 1, dtype=dtype)
        table[:-1] = np.arange(len(dictionary)) if parts == 1 else \
            np.asarray(pc.index_in(dictionary, value_set=union).to_numpy(zero_copy_only=False))
        table[-1] = -1  # code -1 (null) stays -1
        for number, chunk in zip(range(bounds[part], bounds[part + 1]), encoded[part].chunks, strict=True):
            indices = chunk.indices.fill_null(-1) if chunk.null_count else chunk.indices
            side, start = pieces[number][0], starts[number]
            codes[side][start:start + len(chunk)] = table[np.asarray(indices.to_numpy())]

    _together(pool, (partial(renumber, part) for part in range(parts)))
    return codes


def _encode_part(pieces: list[pa.Array], kind: pa.DataType) -> pa.ChunkedArray:
    """The pieces dictionary-encoded together: one dictionary, shared by every chunk."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.dictionary_encode(pa.chunked_array(pieces, kind)).unify_dictionaries()


def _time_pieces(table: pa.Table, column: str) -> tuple[list[tuple[int, pa.Array]], str]:
    """:func:`_time_column` in pieces of at most ``_SLICE`` rows, (first row, piece) each, and their unit: the
    chunks, cut where longer, small neighbours joined (so that tiny chunks do not make tiny pieces)."""
    import pyarrow as pa

    values, unit = _time_column(table, column)
    least = max(1, _SLICE // 16)
    pieces: list[tuple[int, pa.Array]] = []
    waiting: list[pa.Array] = []  # small pieces not yet joined, from row ``first``
    first = start = 0
    for chunk in values.chunks:
        for at in range(0, len(chunk), _SLICE):
            piece = chunk.slice(at, _SLICE)
            if not waiting:
                first = start + at
            waiting.append(piece)
            if sum(len(p) for p in waiting) >= least:
                pieces.append((first, waiting[0] if len(waiting) == 1 else pa.concat_arrays(waiting)))
                waiting = []
        start += len(chunk)
    if waiting:
        pieces.append((first, waiting[0] if len(waiting) == 1 else pa.concat_arrays(waiting)))
    return pieces, unit


def _scan(pieces: list[tuple[int, pa.Array]], unit: str, codes: np.ndarray, ids: pa.ChunkedArray,
          pool: Executor | None) -> _Scan:
    """One pass over a table's times (a piece at a time, on ``pool``): see :class:`_Scan`."""
    import numpy as np

    with_ids = bool(ids.null_count)  # else ``valid`` is made a piece at a time, on ``pool``
    valid = codes >= 0 if with_ids else np.empty(len(codes), dtype=bool)
    if with_ids:
        valid &= np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)

    def one(start: int, piece: pa.Array) -> tuple[int | None, int | None, bool, int]:
        time = _piece_micros(piece, unit)
        here = valid[start:start + len(time)]
        if not with_ids:
            np.greater_equal(codes[start:start + len(time)], 0, out=here)
        absent = time == NULL_TIME
        null_times = int(absent.sum())
        if null_times:
            here &= ~absent
        times = time if bool(here.all()) else time[here]
        if not len(times):
            return None, None, True, null_times
        return int(times[0]), int(times[-1]), bool((times[1:] >= times[:-1]).all()), null_times

    found = _together(pool, (partial(one, start, piece) for start, piece in pieces))
    ends = [(first, last, ordered) for first, last, ordered, _ in found if first is not None]
    in_order = all(ordered for _, _, ordered in ends) and all(a[1] <= b[0] for a, b in pairwise(ends))
    low = high = None
    if ends and in_order:
        low, high = ends[0][0], ends[-1][1]
    elif ends:  # out of time order: the extremes need a look at every valid time
        lows, highs = [], []
        for start, piece in pieces:
            time = _piece_micros(piece, unit)
            here = valid[start:start + len(time)]
            if here.any():
                lows.append(int(time.min(where=here, initial=2**63 - 1)))
                highs.append(int(time.max(where=here, initial=NULL_TIME)))
        low, high = min(lows), max(highs)
    return _Scan(valid=valid, low=low, high=high, in_time_order=in_order,
                 null_times=sum(nulls for *_, nulls in found),
                 bounds=[None if first is None or last is None else (first, last) for first, last, _, _ in found])


def _span_of(low: int | None, high: int | None, spec: AlignSpec) -> _Span:
    """:func:`_span` from the smallest and largest valid time of both tables (None: no valid row)."""
    if low is None or high is None:
        return _Span(0, 1)
    reach = max(_us(spec.tolerance), _us(spec.window[0]), _us(spec.window[1]))
    origin = low - reach - 1
    return _Span(origin, high - origin + reach + 2)


def _right_winners(pieces: list[tuple[int, pa.Array]], unit: str, codes: np.ndarray, scan: _Scan, span: _Span,
                   ids: pa.ChunkedArray, pool: Executor | None) -> tuple[np.ndarray, np.ndarray]:
    """The right table's keys, ascending, and per key the row the rule picks among the rows of that key
    (:func:`_run_winners`): a search that ends on any of them finds the rule's partner."""
    import numpy as np

    keys = _table_keys(pieces, unit, codes, span, pool)
    rows: np.ndarray | None = None
    group = codes
    if not bool(scan.valid.all()):
        rows = np.flatnonzero(scan.valid)
        keys, group = keys[rows], codes[rows]
    order = _group_order(group) if scan.in_time_order and len(group) > 1 else None
    if order is None and not bool((keys[1:] >= keys[:-1]).all()):
        order = np.argsort(keys)
    if order is not None:
        keys = keys[order]
        rows = order if rows is None else rows[order]
    if rows is None:
        rows = np.arange(len(keys), dtype=np.int64)
    del group, order
    return keys, _run_winners(keys, rows, ids)


def _table_keys(pieces: list[tuple[int, pa.Array]], unit: str, codes: np.ndarray, span: _Span,
                pool: Executor | None) -> np.ndarray:
    """Every row's key (see :class:`_Span`), made a piece at a time (on ``pool``)."""
    import numpy as np

    _check_width(codes, span)
    keys = np.empty(len(codes), dtype=np.int64)

    def fill(start: int, piece: pa.Array) -> None:
        time = _piece_micros(piece, unit)
        stop = start + len(time)
        np.multiply(codes[start:stop], span.width, out=keys[start:stop], dtype=np.int64)
        keys[start:stop] += time
        keys[start:stop] -= span.origin

    _together(pool, (partial(fill, start, piece) for start, piece in pieces))
    return keys


def _piece_in_key_order(group: np.ndarray, time: np.ndarray, valid: np.ndarray,
                        span: _Span) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """A piece's valid rows sorted by key (equal keys in any order): (their positions in the piece, None when that
    is every row in order; their keys; their groups)."""
    import numpy as np

    keys = np.multiply(group, span.width, dtype=np.int64)
    keys += time
    keys -= span.origin
    rows: np.ndarray | None = None
    if not bool(valid.all()):
        rows = np.flatnonzero(valid)
        keys, group, time = keys[rows], group[rows], time[rows]
    order = None
    if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
        order = _group_order(group) if bool((time[1:] >= time[:-1]).all()) else None
        if order is None:
            order = np.argsort(keys)
    if order is not None:
        keys, group = keys[order], group[order]
        rows = order if rows is None else rows[order]
    return rows, keys, group


def _take_ascending(values: pa.ChunkedArray, positions: np.ndarray) -> pa.ChunkedArray:
    """``values.take(positions)`` for ascending positions, a chunk at a time (Arrow's take from several chunks
    first joins them all)."""
    import numpy as np
    import pyarrow as pa

    ends = np.cumsum([len(chunk) for chunk in values.chunks], dtype=np.int64)
    cuts = np.searchsorted(positions, ends, side="left")
    parts = []
    start = 0
    for chunk, end, low, high in zip(values.chunks, ends.tolist(), [0, *cuts[:-1].tolist()], cuts.tolist(),
                                     strict=True):
        if high > low:
            parts.append(chunk.take(pa.array(positions[low:high] - start)))
        start = end
    return pa.chunked_array(parts, values.type)


def _gather_ids(ids: pa.ChunkedArray, right_row: np.ndarray, pool: Executor | None) -> pa.ChunkedArray:
    """``_id_strings(ids, right_row)`` (-1: null), a piece at a time (on ``pool``), each piece gathering from the
    stretch of ``ids`` its rows fall in (Arrow joins the chunks it gathers from; time-ordered tables point each
    piece into a short stretch), or from all of them joined once when the stretches are long."""
    import pyarrow as pa

    bounds = []
    for start in range(0, len(right_row), _SLICE):
        rows = right_row[start:start + _SLICE]
        found = rows[rows >= 0]
        bounds.append((start, int(found.min()), int(found.max()) + 1) if len(found) else (start, 0, 0))
    whole = ids
    if sum(hi - lo for _, lo, hi in bounds) > 2 * len(right_row) + _SLICE and ids.num_chunks > 1:
        if ids.nbytes >= 2**30:  # too big to join up front: one gather, as the reference does
            return _id_strings(ids, pa.array(right_row, mask=right_row < 0))
        whole = ids.combine_chunks()

    def gather(start: int, lo: int, hi: int) -> pa.ChunkedArray:
        rows = right_row[start:start + _SLICE]
        absent = rows < 0
        if whole is not ids:
            return _id_strings(whole, pa.array(rows, mask=absent))
        return _id_strings(ids.slice(lo, hi - lo), pa.array(rows - lo, mask=absent))

    parts = _together(pool, (partial(gather, *bound) for bound in bounds))
    return pa.chunked_array([chunk for part in parts for chunk in _chunks(part)], pa.string())


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    import pyarrow as pa

    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]


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

    values, unit = _time_column(table, column)
    parts = [_piece_micros(chunk, unit) for chunk in values.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, np.int64)


def _time_column(table: pa.Table, column: str) -> tuple[pa.ChunkedArray, str]:
    """A timezone-aware timestamp column in microseconds or nanoseconds (seconds and milliseconds are made
    microseconds), and that unit."""
    import pyarrow as pa

    values = table.column(column)
    if not pa.types.is_timestamp(values.type) or values.type.tz is None:
        raise ConfigError(f"column {column!r} is {values.type}, not a timezone-aware timestamp; convert it to UTC "
                          "first (naive times are ambiguous)", setting=column)
    if values.type.unit in ("s", "ms"):
        return values.cast(pa.timestamp("us", tz="UTC")), "us"  # exact: a multiplication
    return values, values.type.unit


def _piece_micros(piece: pa.Array, unit: str) -> np.ndarray:
    """A chunk (or piece of one) of :func:`_time_column` as int64 microseconds (see :func:`_micros`), in place
    where it can be."""
    import numpy as np
    import pyarrow as pa

    values = piece.cast(pa.int64())
    raw = np.asarray((values.fill_null(NULL_TIME) if values.null_count else values).to_numpy())
    if unit != "ns":
        return raw
    micros = raw // 1000
    micros[raw == NULL_TIME] = NULL_TIME
    return micros


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


def _check_width(group: np.ndarray, span: _Span) -> None:
    """Fail clearly when some ``group * span.width`` would not fit in an int64."""
    import numpy as np

    if len(group) and int(group.max()) > (np.iinfo(np.int64).max // span.width) - 1:
        raise ConfigError("too many by-keys over too long a time span for one pass; align per key chunk",
                          setting="by")


def _keys(group: np.ndarray, time: np.ndarray, span: _Span) -> np.ndarray:
    _check_width(group, span)
    keys = group * span.width
    keys += time
    keys -= span.origin
    return keys


def _key_order(keys: np.ndarray, group: np.ndarray, time: np.ndarray) -> np.ndarray | None:
    """Positions that sort ``keys`` (ties in any order); None when they are sorted already."""
    import numpy as np

    if len(keys) < 2 or bool((keys[1:] >= keys[:-1]).all()):
        return None
    if bool((time[1:] >= time[:-1]).all()):
        # in time order already (event logs usually are): a stable sort by group alone completes the key order
        order = _group_order(group)
        if order is not None:
            return order if order.flags.writeable else order.copy()  # the caller may reorder ties in place
    return np.argsort(keys)


def _group_order(group: np.ndarray) -> np.ndarray | None:
    """A stable sort by group (non-negative), in linear time for few groups: Arrow counts up to a few thousand,
    numpy sorts 16 bits by radix; None for more groups."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    groups = int(group.max()) + 1
    if groups <= 4096:  # uint64 positions, read as int64 in place
        return np.asarray(pc.sort_indices(pa.array(group)).to_numpy()).view(np.int64)
    if groups <= 2**16:
        return np.argsort(group.astype(np.uint16), kind="stable")
    return None


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


def _run_winners(keys: np.ndarray, rows: np.ndarray, ids: pa.ChunkedArray) -> np.ndarray:
    """For rows sorted by ``keys`` (equal keys in any order): per position, the row the rule picks among the rows
    of its key (the smallest id in its own type, then the smallest position), int32 where the rows fit."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    winner = rows.astype(np.int32 if len(rows) and int(rows.max()) < 2**31 - 1 else np.int64)
    same = keys[1:] == keys[:-1]
    if not same.any():
        return winner
    in_run = np.zeros(len(keys), dtype=bool)  # rows in a run of two or more equal keys
    in_run[1:] = same
    in_run[:-1] |= same
    del same
    at = np.flatnonzero(in_run)
    del in_run
    tied, tied_keys = rows[at], keys[at]
    runs = pa.table({"key": tied_keys, "id": _sortable(pc.take(ids, tied)), "row": tied})
    order = np.asarray(pc.sort_indices(runs, sort_keys=[("key", "ascending"), ("id", "ascending"),
                                                        ("row", "ascending")]).to_numpy())
    start = np.empty(len(at), dtype=bool)  # the runs hold the same places before and after the sort
    start[:1] = True
    np.not_equal(tied_keys[1:], tied_keys[:-1], out=start[1:])
    winner[at] = tied[order][start][np.cumsum(start) - 1]
    return winner


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

    index, ok = _asof_found(lk, distinct, width, spec)
    return np.where(ok, run_start[index], -1)


def _asof_found(lk: np.ndarray, distinct: np.ndarray, width: int, spec: AlignSpec,
                group_start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For sorted left keys ``lk`` (and the first key of each one's group, if known): (index into the ascending
    ``distinct`` right keys, clipped to a valid position; whether that is the rule's partner (False: none))."""
    import numpy as np

    if group_start is None:
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
    return np.clip(index, 0, len(distinct) - 1), ok


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
