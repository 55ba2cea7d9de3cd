"""Incremental alignment: the same data fed in shuffled batches ends as one full run."""

from __future__ import annotations

import random
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_alignment import SPECS, _table, tables
from transforms.alignment import AlignSpec, align
from transforms.alignment.incremental import realign

ALL_SPECS = st.one_of(
    SPECS,
    st.builds(AlignSpec, strategy=st.just("interval"), by=st.just(("key",)), right_end=st.just("end"),
              cardinality=st.sampled_from(["many_to_one", "one_to_many", "one_to_one"])),
    st.builds(AlignSpec, strategy=st.just("window"), by=st.just(("key",)),
              window=st.tuples(st.integers(0, 3), st.integers(0, 3)).map(
                  lambda w: (timedelta(seconds=w[0]), timedelta(seconds=w[1])))))


def _batches(rows: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    bounds = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    return [rows[a:b] for a, b in pairwise(bounds)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(end=True), spec=ALL_SPECS, seed=st.integers(0, 2**16),
       cuts=st.lists(st.integers(0, 20), max_size=4))
def test_shuffled_batches_end_as_one_full_run(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                             spec: AlignSpec, seed: int, cuts: list[int]) -> None:
    left, right = data
    rng = random.Random(seed)
    left, right = left[:], right[:]
    rng.shuffle(left)
    rng.shuffle(right)  # late arrivals: batches are not in time order
    left_batches, right_batches = _batches(left, cuts), _batches(right, cuts[::-1])
    steps = max(len(left_batches), len(right_batches))
    seen_left: list[dict[str, Any]] = []
    seen_right: list[dict[str, Any]] = []
    aligned: pa.Table | None = None
    for step in range(steps):
        new_left = left_batches[step] if step < len(left_batches) else []
        new_right = right_batches[step] if step < len(right_batches) else []
        seen_left += new_left
        seen_right += new_right
        aligned = realign(aligned, _table(seen_left), _table(seen_right, end=True), _table(new_left),
                          _table(new_right, end=True), spec)
    full = align(_table(left), _table(right, end=True), spec)
    if aligned is None:
        aligned = align(_table([]), _table([], end=True), spec)
    assert aligned.to_pylist() == full.to_pylist()


def test_a_late_right_row_reopens_only_its_window() -> None:
    from transforms.alignment.incremental import _reopened_left

    left = [{"key": "a", "t": t, "id": f"L{t}"} for t in range(0, 20, 2)]
    late = [{"key": "a", "t": 7, "id": "R"}]
    spec = AlignSpec(by=("key",), tolerance=timedelta(seconds=3))
    assert _reopened_left(_table(left), _table([]), _table(late), spec) == ["L10", "L8"]  # left in [7, 10]
    whole = AlignSpec(by=("key",))
    assert len(_reopened_left(_table(left), _table([]), _table(late), whole)) == len(left)


def test_integer_ids_keep_number_order_across_increments() -> None:
    from datetime import UTC, datetime

    ts = pa.timestamp("us", tz="UTC")
    at = pa.array([datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)] * 2, ts)
    left = pa.table({"key": ["a", "a"], "source_id": pa.array([10, 9], pa.int64()), "event_time": at})
    right = pa.table({"key": ["a"], "source_id": pa.array([1], pa.int64()), "event_time": at.slice(0, 1)})
    spec = AlignSpec(by=("key",))
    first = align(left.slice(0, 1), right, spec)
    later = realign(first, left, right, left.slice(1, 1), right.slice(0, 0), spec)
    assert later["left_id"].to_pylist() == ["9", "10"] and later.equals(align(left, right, spec))
