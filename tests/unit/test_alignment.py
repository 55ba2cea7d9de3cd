"""align() against a brute-force reference for every strategy and cardinality (hypothesis), and against
pandas merge_asof where their semantics coincide."""

from __future__ import annotations

import importlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosetta.core.errors import ConfigError
from transforms.alignment import AlignSpec, align

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def _t(seconds: int | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _table(rows: list[dict[str, Any]], *, end: bool = False) -> pa.Table:
    columns: dict[str, Any] = {
        "key": pa.array([r["key"] for r in rows], pa.string()),
        "source_id": pa.array([r["id"] for r in rows], pa.string()),
        "event_time": pa.array([_t(r["t"]) for r in rows], TS),
        "text": pa.array([f"text {r['id']}" for r in rows], pa.string())}
    if end:
        columns["end"] = pa.array([_t(r.get("end")) for r in rows], TS)
    return pa.table(columns)


# -- the reference: the documented rules, one left row at a time ------------------------------------------
def _candidates(left: dict[str, Any], right: list[dict[str, Any]], spec: AlignSpec) -> list[dict[str, Any]]:
    if left["key"] is None or left["t"] is None:
        return []
    tol = None if spec.tolerance is None else spec.tolerance.total_seconds()
    found = []
    for r in right:
        if r["key"] != left["key"] or r["t"] is None:
            continue
        offset = r["t"] - left["t"]
        if spec.strategy == "backward":
            ok = offset <= 0 and (spec.allow_exact or offset != 0) and (tol is None or -offset <= tol)
        elif spec.strategy == "forward":
            ok = offset >= 0 and (spec.allow_exact or offset != 0) and (tol is None or offset <= tol)
        elif spec.strategy == "nearest":
            ok = (spec.allow_exact or offset != 0) and (tol is None or abs(offset) <= tol)
        elif spec.strategy == "interval":
            ok = r.get("end") is not None and r["t"] <= left["t"] < r["end"]
        else:
            ok = -spec.window[0].total_seconds() <= offset <= spec.window[1].total_seconds()
        if ok:
            found.append(r)
    return sorted(found, key=lambda r: (abs(r["t"] - left["t"]), r["t"], r["id"]))


def _reference(left: list[dict[str, Any]], right: list[dict[str, Any]], spec: AlignSpec) -> list[tuple[Any, ...]]:
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for row in left:
        found = _candidates(row, right, spec)
        if spec.cardinality == "many_to_one" and found:
            pairs.append((row, found[0]))
        elif spec.cardinality != "many_to_one":
            pairs += [(row, r) for r in found]
    if spec.cardinality == "one_to_one":
        pairs.sort(key=lambda p: (abs(p[1]["t"] - p[0]["t"]), p[0]["t"], p[0]["id"], p[1]["t"], p[1]["id"]))
        used_left, used_right, chosen = set(), set(), []
        for lrow, rrow in pairs:
            if id(lrow) in used_left or id(rrow) in used_right:
                continue
            used_left.add(id(lrow))
            used_right.add(id(rrow))
            chosen.append((lrow, rrow))
        pairs = chosen
    out = [(lrow["key"], lrow["id"], rrow["id"], lrow["t"], rrow["t"], rrow["t"] - lrow["t"]) for lrow, rrow in pairs]
    return sorted(out, key=lambda o: (o[0], o[3], o[1], abs(o[5]), o[4], o[2]))


def _result(table: pa.Table) -> list[tuple[Any, ...]]:
    return [(r["key"], r["left_id"], r["right_id"], int((r["left_time"] - T0).total_seconds()),
             int((r["right_time"] - T0).total_seconds()), int(r["offset"].total_seconds()))
            for r in table.to_pylist()]


# -- generated inputs ------------------------------------------------------------------------------------------
KEYS = st.sampled_from(["a", "b", None])
TIMES = st.one_of(st.integers(0, 12), st.none())


@st.composite
def tables(draw: st.DrawFn, *, end: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Small left/right tables full of ties, nulls, empty groups and exact matches, in random order."""
    n_left, n_right = draw(st.integers(0, 8)), draw(st.integers(0, 10))
    ids = draw(st.permutations([f"id{i:02d}" for i in range(n_left + n_right)]))
    left = [{"key": draw(KEYS), "t": draw(TIMES), "id": ids[i]} for i in range(n_left)]
    right = [{"key": draw(KEYS), "t": draw(TIMES), "id": ids[n_left + i]} for i in range(n_right)]
    if end:
        for row in right:
            row["end"] = None if row["t"] is None else row["t"] + draw(st.integers(0, 6))
    return left, right


SPECS = st.builds(
    AlignSpec, strategy=st.sampled_from(["backward", "forward", "nearest"]), by=st.just(("key",)),
    tolerance=st.one_of(st.none(), st.integers(0, 5).map(lambda s: timedelta(seconds=s))),
    allow_exact=st.booleans(), cardinality=st.sampled_from(["many_to_one", "one_to_many", "one_to_one"]))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=tables(), spec=SPECS)
def test_point_strategies_match_the_reference(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                              spec: AlignSpec) -> None:
    left, right = data
    assert _result(align(_table(left), _table(right), spec)) == _reference(left, right, spec)


@FAST
@given(data=tables(end=True), cardinality=st.sampled_from(["many_to_one", "one_to_many", "one_to_one"]))
def test_interval_containment_matches_the_reference(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                                    cardinality: Any) -> None:
    left, right = data
    spec = AlignSpec(strategy="interval", by=("key",), right_end="end", cardinality=cardinality)
    assert _result(align(_table(left), _table(right, end=True), spec)) == _reference(left, right, spec)


@FAST
@given(data=tables(), before=st.integers(0, 4), after=st.integers(0, 4))
def test_window_collects_every_text_in_time_then_id_order(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                                         before: int, after: int) -> None:
    left, right = data
    spec = AlignSpec(strategy="window", by=("key",), window=(timedelta(seconds=before), timedelta(seconds=after)))
    out = align(_table(left), _table(right), spec).to_pylist()
    expected = []
    for row in left:
        found = sorted(_candidates(row, right, spec), key=lambda r: (r["t"], r["id"]))
        if found:
            expected.append((row["key"], row["t"], row["id"], [r["id"] for r in found],
                             "\n".join(f"text {r['id']}" for r in found)))
    expected.sort(key=lambda e: (e[0], e[1], e[2]))
    assert [(o["key"], int((o["left_time"] - T0).total_seconds()), o["left_id"], o["right_ids"], o["text"])
            for o in out] == expected


@FAST
@given(data=tables(), spec=SPECS, seed=st.integers(0, 2**16))
def test_the_result_does_not_depend_on_input_order(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                                  spec: AlignSpec, seed: int) -> None:
    left, right = data
    shuffled_left, shuffled_right = left[:], right[:]
    random.Random(seed).shuffle(shuffled_left)
    random.Random(seed + 1).shuffle(shuffled_right)
    first = align(_table(left), _table(right), spec)
    again = align(_table(shuffled_left), _table(shuffled_right), spec)
    assert first.equals(again)


@FAST
@given(data=tables(), strategy=st.sampled_from(["backward", "forward", "nearest"]),
       tolerance=st.one_of(st.none(), st.integers(0, 5).map(lambda s: timedelta(seconds=s))),
       allow_exact=st.booleans(), how=st.sampled_from(["inner", "left"]))
def test_left_order_gives_the_same_pairs_in_the_left_tables_order(
        data: tuple[list[dict[str, Any]], list[dict[str, Any]]], strategy: Any, tolerance: timedelta | None,
        allow_exact: bool, how: Any) -> None:
    left, right = data
    spec = AlignSpec(strategy=strategy, by=("key",), tolerance=tolerance, allow_exact=allow_exact, how=how)
    rule = align(_table(left), _table(right), spec)
    mine = align(_table(left), _table(right), AlignSpec(**{**spec.__dict__, "order": "left"}))
    position = {row["id"]: i for i, row in enumerate(left)}  # ids are unique in these tables
    expected = sorted(rule.to_pylist(), key=lambda r: position[r["left_id"]])
    assert mine.schema == rule.schema
    assert mine.to_pylist() == expected


def test_left_order_is_only_for_the_as_of_strategies() -> None:
    with pytest.raises(ConfigError, match="order 'left'"):
        AlignSpec(strategy="interval", right_end="end", order="left")
    with pytest.raises(ConfigError, match="order 'left'"):
        AlignSpec(cardinality="one_to_many", order="left")


def test_ties_pick_the_smallest_right_id_and_nearest_prefers_the_earlier_row() -> None:
    left = [{"key": "a", "t": 10, "id": "L"}]
    right = [{"key": "a", "t": 8, "id": "r9"}, {"key": "a", "t": 8, "id": "r1"}, {"key": "a", "t": 12, "id": "r0"}]
    backward = align(_table(left), _table(right), AlignSpec(by=("key",)))
    assert backward["right_id"].to_pylist() == ["r1"]
    nearest = align(_table(left), _table(right), AlignSpec(strategy="nearest", by=("key",)))
    assert nearest["right_id"].to_pylist() == ["r1"]  # 2 s before and 2 s after: the earlier wins
    quality = align(_table(left), _table(right), AlignSpec(by=("key",), tolerance=timedelta(seconds=4)))
    assert quality["quality"].to_pylist() == [0.5] and quality["offset"].to_pylist() == [timedelta(seconds=-2)]


def test_left_join_keeps_unmatched_and_null_rows_and_bad_input_is_a_clear_error() -> None:
    left = [{"key": "a", "t": 1, "id": "L1"}, {"key": None, "t": 5, "id": "L2"}, {"key": "a", "t": None, "id": "L3"}]
    right = [{"key": "a", "t": 3, "id": "R"}]
    out = align(_table(left), _table(right), AlignSpec(by=("key",), how="left"))
    assert sorted(zip(out["left_id"].to_pylist(), out["right_id"].to_pylist(), strict=True)) == \
           [("L1", None), ("L2", None), ("L3", None)]
    naive = pa.table({"key": ["a"], "source_id": ["x"], "event_time": pa.array([datetime(2026, 1, 1)],
                                                                               pa.timestamp("us"))})
    with pytest.raises(ConfigError, match="timezone-aware"):
        align(naive, _table(right), AlignSpec(by=("key",)))
    with pytest.raises(ConfigError, match="no column 'device'"):
        align(_table(left), _table(right), AlignSpec(by=("device",)))
    with pytest.raises(ConfigError, match="right_end"):
        AlignSpec(strategy="interval")


# -- integer ids and nanosecond times ---------------------------------------------------------------------------
def _int_ids(rows: list[dict[str, Any]]) -> pa.Table:
    """``_table`` for rows whose ids are ints: an int64 ``source_id`` column."""
    table = _table([{**r, "id": str(r["id"])} for r in rows])
    return table.set_column(table.schema.get_field_index("source_id"), "source_id",
                            pa.array([r["id"] for r in rows], pa.int64()))


def _left_join_reference(left: list[dict[str, Any]], right: list[dict[str, Any]],
                         spec: AlignSpec) -> list[tuple[Any, ...]]:
    """The reference's pairs plus every left row without one, sorted by the rule with nulls last."""
    pairs = _reference(left, right, spec)
    paired = {p[1] for p in pairs}
    alone = [(r["key"], r["id"], None, r["t"], None, None) for r in left if r["id"] not in paired]

    def last(value: Any) -> tuple[bool, Any]:
        return value is None, 0 if value is None else value
    return sorted(pairs + alone, key=lambda o: (last(o[0]), last(o[3]), o[1], last(None if o[5] is None else abs(o[5])),
                                                last(o[4]), last(o[2])))


def _nullable_result(table: pa.Table) -> list[tuple[Any, ...]]:
    def seconds(value: Any) -> int | None:
        return None if value is None else int(value.total_seconds())
    return [(r["key"], r["left_id"], r["right_id"], seconds(None if r["left_time"] is None else r["left_time"] - T0),
             seconds(None if r["right_time"] is None else r["right_time"] - T0), seconds(r["offset"]))
            for r in table.to_pylist()]


@FAST
@given(data=tables(), spec=SPECS, how=st.sampled_from(["inner", "left"]))
def test_integer_ids_are_ranked_as_numbers(data: tuple[list[dict[str, Any]], list[dict[str, Any]]], spec: AlignSpec,
                                           how: Any) -> None:
    """Ties, one_to_one's greedy order and the output order compare int ids by value; the output has them as
    strings."""
    left, right = data  # "idNN" becomes NN * 7: 7 < 14 < 70 as numbers, "14" < "7" < "70" as strings
    left = [{**r, "id": int(r["id"][2:]) * 7} for r in left]
    right = [{**r, "id": int(r["id"][2:]) * 7} for r in right]
    spec = AlignSpec(**{**spec.__dict__, "how": how})
    expected = [(o[0], str(o[1]), None if o[2] is None else str(o[2]), *o[3:])
                for o in (_left_join_reference(left, right, spec) if how == "left" else _reference(left, right, spec))]
    assert _nullable_result(align(_int_ids(left), _int_ids(right), spec)) == expected


def test_integer_id_ties_pick_the_smallest_number() -> None:
    left = [{"key": "a", "t": 10, "id": 10}, {"key": "a", "t": 10, "id": 9}]
    right = [{"key": "a", "t": 8, "id": 10}, {"key": "a", "t": 8, "id": 9}]
    backward = align(_int_ids(left), _int_ids(right), AlignSpec(by=("key",)))
    assert backward["left_id"].to_pylist() == ["9", "10"]  # as strings, "10" would come first
    assert backward["right_id"].to_pylist() == ["9", "9"]
    one_to_one = align(_int_ids(left), _int_ids(right[:1]), AlignSpec(by=("key",), cardinality="one_to_one"))
    assert one_to_one["left_id"].to_pylist() == ["9"]


def test_nanosecond_times_are_truncated_to_the_microsecond() -> None:
    ns = pa.timestamp("ns", tz="UTC")
    base = int(T0.timestamp()) * 10**9
    left = pa.table({"source_id": ["L1", "L2", "L3", "L4"],
                     "event_time": pa.array([base + 1_999, base + 5_000, -1_500, None], ns)})
    right = pa.table({"source_id": ["R1", "R2"], "event_time": pa.array([base + 1_000, -2_000], ns),
                      "end": pa.array([base + 2_500, -999], ns)})
    out = align(left, right, AlignSpec(how="left"))
    us = timedelta(microseconds=1)
    assert out.to_pylist() == [
        {"left_id": "L3", "right_id": "R2", "left_time": datetime(1970, 1, 1, tzinfo=UTC) - 2 * us,  # floor
         "right_time": datetime(1970, 1, 1, tzinfo=UTC) - 2 * us, "offset": timedelta(0), "quality": 1.0},
        {"left_id": "L1", "right_id": "R1", "left_time": T0 + us, "right_time": T0 + us, "offset": timedelta(0),
         "quality": 1.0},
        {"left_id": "L2", "right_id": "R1", "left_time": T0 + 5 * us, "right_time": T0 + us,
         "offset": -4 * us, "quality": 1 / (1 + 4e-6)},
        {"left_id": "L4", "right_id": None, "left_time": None, "right_time": None, "offset": None, "quality": None}]
    interval = align(left, right, AlignSpec(strategy="interval", right_end="end"))
    assert interval.select(["left_id", "right_id", "right_end"]).to_pylist() == [
        {"left_id": "L3", "right_id": "R2", "right_end": datetime(1970, 1, 1, tzinfo=UTC) - us},
        {"left_id": "L1", "right_id": "R1", "right_end": T0 + 2 * us}]
    assert str(interval.schema.field("left_time").type) == "timestamp[us, tz=UTC]"


# -- pandas merge_asof where the semantics coincide ------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(data=tables(), direction=st.sampled_from(["backward", "forward", "nearest"]),
       tolerance=st.one_of(st.none(), st.integers(0, 5)), allow_exact=st.booleans())
def test_equals_pandas_merge_asof_without_ties(data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
                                               direction: str, tolerance: int | None, allow_exact: bool) -> None:
    """Same matches as pandas where pandas' choice is defined the same way: no two right rows share a key and
    time (pandas picks among tied rows by position), no equal-distance tie for nearest, no null keys/times."""
    import pandas as pd

    left, right = data
    left = [r for r in left if r["key"] is not None and r["t"] is not None]
    seen: set[tuple[str, int]] = set()
    unique_right = []
    for row in right:
        if row["key"] is not None and row["t"] is not None and (row["key"], row["t"]) not in seen:
            seen.add((row["key"], row["t"]))
            unique_right.append(row)
    spec = AlignSpec(strategy=direction, by=("key",), allow_exact=allow_exact,  # type: ignore[arg-type]
                     tolerance=None if tolerance is None else timedelta(seconds=tolerance))
    ours = {r[1]: r[2] for r in _result(align(_table(left), _table(unique_right), spec))}
    frame_l = pd.DataFrame({"key": [r["key"] for r in left], "t": [r["t"] for r in left],
                            "lid": [r["id"] for r in left]}).sort_values("t", kind="stable")
    frame_r = pd.DataFrame({"key": [r["key"] for r in unique_right], "t": [r["t"] for r in unique_right],
                            "rid": [r["id"] for r in unique_right]}).sort_values("t", kind="stable")
    if frame_l.empty or frame_r.empty:
        assert ours == {}
        return
    merged = pd.merge_asof(frame_l.astype({"t": "int64"}), frame_r.astype({"t": "int64"}), on="t", by="key",
                           direction=direction, allow_exact_matches=allow_exact, tolerance=tolerance)
    theirs = {row.lid: row.rid for row in merged.itertuples() if isinstance(row.rid, str)}
    if direction == "nearest":  # equal distance both ways: pandas and the documented rule may differ
        tied = {r["id"] for r in left if len({abs(x["t"] - r["t"]) for x in unique_right if x["key"] == r["key"]
                                              and (allow_exact or x["t"] != r["t"])}) <
                len([x for x in unique_right if x["key"] == r["key"] and (allow_exact or x["t"] != r["t"])])}
        ours = {k: v for k, v in ours.items() if k not in tied}
        theirs = {k: v for k, v in theirs.items() if k not in tied}
    assert ours == theirs


def test_aligning_parquet_in_key_chunks_equals_one_pass(tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    from transforms.alignment.chunked import align_parquet

    rng = random.Random(7)
    left = [{"key": f"k{rng.randint(0, 9)}", "t": rng.randint(0, 50), "id": f"L{i:03d}"} for i in range(300)]
    right = [{"key": f"k{rng.randint(0, 9)}", "t": rng.randint(0, 50), "id": f"R{i:03d}"} for i in range(300)]
    right.append({"key": None, "t": 3, "id": "Rnull"})
    pq.write_table(_table(left), tmp_path / "left.parquet", row_group_size=64)
    pq.write_table(_table(right), tmp_path / "right.parquet", row_group_size=64)
    spec = AlignSpec(strategy="nearest", by=("key",), tolerance=timedelta(seconds=3))
    counts = align_parquet(tmp_path / "left.parquet", tmp_path / "right.parquet", spec, tmp_path / "out",
                           rows_per_chunk=150)
    assert counts["chunks"] > 2 and counts["rows"] == 601  # the null key is counted, never read into a chunk
    chunked = pq.read_table(tmp_path / "out").to_pylist()
    whole = align(_table(left), _table(right), spec).to_pylist()
    key = lambda r: (r["key"], r["left_time"], r["left_id"])  # noqa: E731
    assert sorted(chunked, key=key) == whole and counts["pairs"] == len(whole)
    again = align_parquet(tmp_path / "left.parquet", tmp_path / "right.parquet", spec, tmp_path / "out",
                          rows_per_chunk=150, batch_rows=50)  # a re-run, in smaller batches: the same parts
    assert again == counts and sorted(pq.read_table(tmp_path / "out").to_pylist(), key=key) == whole
    assert not (tmp_path / "out" / ".spill").exists()
    with pytest.raises(ConfigError, match="by keys"):
        align_parquet(tmp_path / "left.parquet", tmp_path / "right.parquet", AlignSpec(), tmp_path / "x")


# -- the lean left-order join against the reference ------------------------------------------------------------
@st.composite
def left_order_inputs(draw: st.DrawFn) -> tuple[pa.Table, pa.Table, AlignSpec]:
    """Tables with everything the left-order join must get right: ties (also of ids), nulls in keys, times and
    ids, rows in or out of time order, string/int/two-column keys, int ids, nanoseconds, several chunks."""
    key_kind = draw(st.sampled_from(["str", "int", "two", "none"]))
    id_kind = draw(st.sampled_from(["str", "int"]))
    unit = draw(st.sampled_from(["us", "ns", "ms"]))
    sort_by_time = draw(st.sampled_from([True, True, False]))  # both in time order: the path without a sort
    latest = draw(st.sampled_from([3, 15]))  # few distinct times: many ties

    def side(n: int, prefix: str) -> pa.Table:
        times = draw(st.lists(st.one_of(st.integers(0, latest), st.none()), min_size=n, max_size=n))
        if sort_by_time:
            times = sorted(t for t in times if t is not None) + [None] * times.count(None)
            if draw(st.booleans()):  # nulls among sorted times
                times = [None if i % 4 == 3 else t for i, t in enumerate(times)]
        keys = draw(st.lists(st.one_of(st.integers(0, 2), st.none()), min_size=n, max_size=n))
        ids = draw(st.lists(st.one_of(st.integers(0, 6), st.none()) if prefix == "r" else st.integers(0, 30),
                            min_size=n, max_size=n))
        scale = {"us": 1, "ns": 1000, "ms": 1}[unit]
        columns: dict[str, Any] = {
            "event_time": pa.array([None if t is None else 1_000_000 + t * scale + (t % 3 if unit == "ns" else 0)
                                    for t in times], pa.timestamp(unit, tz="UTC")),
            "source_id": pa.array(ids, pa.int64()) if id_kind == "int" else
            pa.array([None if i is None else f"{prefix}{i}" for i in ids], pa.string())}
        if key_kind == "str":
            columns["key"] = pa.array([None if k is None else f"k{k}" for k in keys], pa.string())
        elif key_kind == "int":
            columns["key"] = pa.array(keys, pa.int32())
        elif key_kind == "two":
            columns["key"] = pa.array([None if k is None else f"k{k % 2}" for k in keys], pa.string())
            columns["part"] = pa.array([None if k is None else k // 2 for k in keys], pa.int64())
        table = pa.table(columns)
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))  # up to four chunks, some maybe empty
        return pa.concat_tables([table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n], strict=True)])

    left = side(draw(st.integers(0, 20)), "l")
    right = side(draw(st.sampled_from([0, 1, 3, 10, 30])), "r")
    by = {"str": ("key",), "int": ("key",), "two": ("key", "part"), "none": ()}[key_kind]
    spec = AlignSpec(strategy=draw(st.sampled_from(["backward", "forward", "nearest"])), by=by,
                     tolerance=draw(st.one_of(st.none(), st.integers(0, 4).map(lambda s: timedelta(microseconds=s)))),
                     allow_exact=draw(st.booleans()), how=draw(st.sampled_from(["inner", "left"])), order="left")
    return left, right, spec


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=left_order_inputs(), threads=st.booleans(), piece=st.sampled_from([1, 2, 3, 5, 48, 1 << 20]))
def test_lean_left_order_join_equals_the_reference(inputs: tuple[pa.Table, pa.Table, AlignSpec], threads: bool,
                                                   piece: int) -> None:
    """The left-order join (in pieces, on threads, with shared codes and near stretches) gives exactly the
    reference's table."""
    module = importlib.import_module("transforms.alignment.align")
    left, right, spec = inputs
    expected = module._asof_in_left_order_reference(left, right, spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_SLICE", piece)
        patch.setattr(module, "_PARALLEL_ROWS", 0 if threads else 1 << 18)
        got = align(left, right, spec)
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()


def test_left_order_join_with_keys_near_the_int64_limit_does_as_the_reference() -> None:
    """So many groups over so long a time span that the keys would overflow: the same error as the reference."""
    module = importlib.import_module("transforms.alignment.align")
    times = [datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)]
    table = pa.table({"key": [f"k{i}" for i in range(40)], "source_id": [f"id{i}" for i in range(40)],
                      "event_time": pa.array([times[i % 2] for i in range(40)], TS)})
    spec = AlignSpec(by=("key",), order="left")
    with pytest.raises(ConfigError, match="too many by-keys"):
        module._asof_in_left_order_reference(table, table, spec)
    with pytest.raises(ConfigError, match="too many by-keys"):
        align(table, table, spec)
    few = table.slice(0, 6)  # few enough groups: both give the same table
    assert align(few, few, spec).equals(module._asof_in_left_order_reference(few, few, spec))


def test_left_order_time_ties_in_runs_of_two_and_more_and_numpy_pages_restored() -> None:
    """Time-ordered tables whose text rows tie in runs of two and three (and across groups): the reference's
    table; numpy's hugepage setting is as before the join."""
    import numpy as np

    module = importlib.import_module("transforms.alignment.align")
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = sorted((rng.randrange(12), rng.choice("ab")) for _ in range(60))
    right = pa.table({"key": [k for _, k in rows], "source_id": [f"t{rng.randrange(9)}" for _ in rows],
                      "event_time": pa.array([start + timedelta(microseconds=t) for t, _ in rows], TS)})
    left = pa.table({"key": [rng.choice("ab") for _ in range(40)], "source_id": [f"i{i}" for i in range(40)],
                     "event_time": pa.array(sorted(start + timedelta(microseconds=rng.randrange(14))
                                                   for _ in range(40)), TS)})
    switch = np._core.multiarray._set_madvise_hugepage
    before = switch(True)
    try:
        for how in ("left", "inner"):
            spec = AlignSpec(by=("key",), how=how, order="left")  # type: ignore[arg-type]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(module, "_PARALLEL_ROWS", 0)
                got = align(left, right, spec)
            assert got.to_pylist() == module._asof_in_left_order_reference(left, right, spec).to_pylist()
        assert switch(True) is True
    finally:
        switch(before)
