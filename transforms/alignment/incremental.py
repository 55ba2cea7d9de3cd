"""Incremental alignment: a run aligns only what new rows can change, and ends where one full run would.

A new right row (a late subtitle cue, a report that arrives after its images) can change the
partner of any left row it could have been chosen for, so it re-opens that *window* of left rows;
a new left row opens itself.  :func:`realign` recomputes exactly the open windows against all rows
of their keys and replaces those left rows' pairs in the previous result:

- backward / forward / nearest with a ``tolerance`` (``many_to_one``, ``one_to_many``): the left
  rows within the tolerance of a new right row's time (on the side the strategy looks);
- ``interval``: the left rows inside a new interval;
- ``window``: the left rows whose window reaches a new right row;
- without a tolerance, or ``one_to_one`` (one new row can shift a whole chain of greedy choices):
  every left row of the touched keys.

The watermark is implicit and exact: nothing earlier than the earliest re-opened window is
recomputed, and nothing in it is kept from before.  ``tests/unit/test_alignment_incremental.py``
feeds the same data in shuffled batches and checks the result equals one full :func:`align`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transforms.alignment.align import AlignSpec, align

if TYPE_CHECKING:
    import pyarrow as pa


def realign(previous: pa.Table | None, left: pa.Table, right: pa.Table, new_left: pa.Table, new_right: pa.Table,
            spec: AlignSpec) -> pa.Table:
    """The aligned table after ``new_left``/``new_right`` joined ``left``/``right`` (which already contain them).

    ``previous`` is the aligned table before (None on the first run).  Pure: the same inputs give
    the same table as ``align(left, right, spec)``, computing only the re-opened windows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if previous is None:
        return align(left, right, spec)
    reopened = _reopened_left(left, new_left, new_right, spec)
    if not len(reopened):
        return previous
    ids = pa.array(sorted(set(reopened)), pa.string())
    left_part = left.filter(pc.is_in(left.column(spec.left_id).cast("string"), value_set=ids))
    keys = _key_filter(right, left_part, spec)
    fresh = align(left_part, right.filter(keys) if keys is not None else right, spec)
    kept = previous.filter(pc.invert(pc.fill_null(pc.is_in(previous.column("left_id"), value_set=ids), False)))
    merged = pa.concat_tables([kept, fresh.cast(kept.schema) if len(kept.schema) else fresh])
    from transforms.alignment.align import _rule_order

    if not merged.num_rows:
        return merged
    right_ids = _typed(merged.column("right_id"), right, spec.right_id) if "right_id" in merged.column_names \
        else None
    return merged.take(_rule_order(merged, _typed(merged.column("left_id"), left, spec.left_id), right_ids, spec))


def _typed(ids: pa.ChunkedArray, source: pa.Table, column: str) -> pa.ChunkedArray:
    """The output's string ids as the source table had them, so the rule compares them in their own type
    (ids 9 and 10 order as numbers, as :func:`align` orders them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    original = source.column(column)
    if pa.types.is_string(original.type) or pa.types.is_large_string(original.type):
        return ids
    return pc.take(original, pc.index_in(ids, value_set=original.cast(pa.string())))


def _reopened_left(left: pa.Table, new_left: pa.Table, new_right: pa.Table, spec: AlignSpec) -> list[str]:
    """Ids of the left rows whose pairs new rows can change."""
    import numpy as np
    import pyarrow as pa

    from transforms.alignment.align import _group_indices, _micros

    reopened = set(new_left.column(spec.left_id).cast("string").drop_null().to_pylist())
    # a new row of either side may shift a one_to_one key's whole chain of greedy choices
    changed = pa.concat_tables([new_right.select(list(spec.by)).cast(left.select(list(spec.by)).schema),
                                *([new_left.select(list(spec.by)).cast(left.select(list(spec.by)).schema)]
                                  if spec.cardinality == "one_to_one" else [])])
    if not changed.num_rows:
        return sorted(reopened)
    if spec.by:
        groups_all, _ = _group_indices(pa.concat_tables([left.select(list(spec.by)), changed]),
                                       changed.slice(0, 0), spec.by)
    else:
        groups_all = np.zeros(left.num_rows + changed.num_rows, np.int64)
    left_groups, right_groups = groups_all[:left.num_rows], groups_all[left.num_rows:]
    lt = _micros(left, spec.left_time)
    rt = _micros(new_right, spec.right_time)
    ids = left.column(spec.left_id).cast("string").to_pylist()
    null = np.iinfo(np.int64).min
    windows = _windows(new_right, np.where(rt == null, 0, rt), spec)
    whole_key = windows is None or spec.cardinality == "one_to_one"
    if not whole_key:
        right_groups = right_groups[:new_right.num_rows]
    for group in np.unique(right_groups[right_groups >= 0]):
        in_group = (left_groups == group) & (lt != null)
        if whole_key:
            chosen = np.flatnonzero(in_group)
        else:
            assert windows is not None
            starts, ends = windows
            mine = (right_groups == group) & (rt != null)
            if not mine.any():
                continue
            lo, hi = starts[mine], ends[mine]
            order = np.argsort(lo)
            lo, hi = lo[order], np.maximum.accumulate(hi[order])
            position = np.searchsorted(lo, lt, side="right") - 1
            hit = (position >= 0) & (lt <= hi[np.maximum(position, 0)])
            chosen = np.flatnonzero(in_group & hit)
        reopened.update(ids[i] for i in chosen if ids[i] is not None)
    return sorted(reopened)


def _windows(new_right: pa.Table, rt: Any, spec: AlignSpec) -> tuple[Any, Any] | None:
    """Per new right row, the [start, end] of left times it can affect (us); None: the whole key."""
    import numpy as np

    from transforms.alignment.align import _micros, _us

    if spec.cardinality == "one_to_one":
        return None
    if spec.strategy == "interval":
        ends = _micros(new_right, spec.right_end or "")
        return rt, ends
    if spec.strategy == "window":
        return rt - _us(spec.window[1]), rt + _us(spec.window[0])
    if spec.tolerance is None:
        return None
    tol = _us(spec.tolerance)
    if spec.strategy == "backward":  # a right row at t serves left rows in [t, t + tol]
        return rt, rt + tol
    if spec.strategy == "forward":
        return rt - tol, rt
    return rt - tol, rt + np.int64(tol)


def _key_filter(right: pa.Table, left_part: pa.Table, spec: AlignSpec) -> pa.Array | None:
    """Right rows of the keys the re-opened left rows have (None: no ``by``, all rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not spec.by:
        return None
    mask = None
    if len(spec.by) == 1:
        values = left_part.column(spec.by[0]).drop_null().unique()
        return pc.fill_null(pc.is_in(right.column(spec.by[0]), value_set=values.cast(right.column(spec.by[0]).type)),
                            False)
    joined = [pc.binary_join_element_wise(*[pc.cast(t.column(c), pa.string()) for c in spec.by], "\x1f")
              for t in (right, left_part)]
    mask = pc.fill_null(pc.is_in(joined[0], value_set=joined[1].unique()), False)
    return mask

