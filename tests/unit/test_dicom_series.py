"""Series completeness: by expected count, by quiet period, once per series, late arrivals reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from transforms.dicom.series import BY_COUNT, BY_QUIET, late_instances, newly_complete_series

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _rows(series: str, count: int, *, start: datetime = T0, expected: int | None = None) -> list[dict[str, object]]:
    return [{"series_uid": series, "study_uid": "st", "sop_uid": f"{series}.{i}", "ingest_time": start +
             timedelta(seconds=i), "expected": expected, "modality": "CT"} for i in range(count)]


def test_expected_count_completes_at_once_and_quiet_period_otherwise() -> None:
    rows = _rows("a", 3, expected=3) + _rows("b", 2, expected=5) + _rows("c", 4)
    quiet = timedelta(minutes=5)
    now = T0 + timedelta(seconds=10)
    done = newly_complete_series(rows, source="s", now=now, quiet_period=quiet, already_complete=set())
    assert [(d.series_uid, d.reason, d.instances, d.expected) for d in done] == [("a", BY_COUNT, 3, 3)]
    later = T0 + timedelta(minutes=6)
    done = newly_complete_series(rows, source="s", now=later, quiet_period=quiet, already_complete={"a"})
    assert [(d.series_uid, d.reason, d.instances) for d in done] == [("b", BY_QUIET, 2), ("c", BY_QUIET, 4)]
    assert done[1].first_ingest == T0 and done[1].last_ingest == T0 + timedelta(seconds=3)


def test_a_new_instance_restarts_the_quiet_period_and_duplicates_count_once() -> None:
    rows = _rows("a", 2) + _rows("a", 1, start=T0 + timedelta(minutes=4))  # a.0 again, four minutes later
    quiet = timedelta(minutes=5)
    assert newly_complete_series(rows, source="s", now=T0 + timedelta(minutes=6), quiet_period=quiet,
                                 already_complete=set()) == []
    [done] = newly_complete_series(rows, source="s", now=T0 + timedelta(minutes=9), quiet_period=quiet,
                                   already_complete=set())
    assert done.instances == 2


def test_rows_without_uids_are_ignored_and_late_arrivals_are_reported() -> None:
    rows = [*_rows("a", 2), {"series_uid": "", "sop_uid": "x", "ingest_time": T0},
            {"series_uid": "b", "sop_uid": None, "ingest_time": T0}]
    done = newly_complete_series(rows, source="s", now=T0 + timedelta(hours=1), quiet_period=timedelta(0),
                                 already_complete=set())
    assert [d.series_uid for d in done] == ["a"]
    late = _rows("a", 1, start=T0 + timedelta(hours=2))
    assert late_instances(late + _rows("z", 1), {"a": T0 + timedelta(hours=1)}) == late
