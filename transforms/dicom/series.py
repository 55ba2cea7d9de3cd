"""Series completeness: when has a DICOM series arrived in full?

DICOM has no "end of series" message.  A series counts as complete when

- its expected number of instances has arrived, where the data says how many to expect (a PACS
  answers NumberOfSeriesRelatedInstances to QIDO-RS/C-FIND; some modalities write
  ImagesInAcquisition for single-acquisition series), or else
- nothing new has arrived for it for ``quiet_period`` (what every DICOM router does for C-STORE
  traffic, which announces nothing).

Pure: given the instances seen so far (one row per instance, with when it was ingested) and the
series already declared complete, :func:`newly_complete_series` says which series complete now.
A series is declared complete once; an instance arriving after that is a late arrival, reported
by :func:`late_instances`, never a second completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

BY_COUNT, BY_QUIET = "expected-count", "quiet-period"


@dataclass(frozen=True)
class SeriesCompletion:
    """A series declared complete: how many instances, how many expected, why, and when (UTC)."""

    source: str
    study_uid: str
    series_uid: str
    instances: int
    expected: int | None
    reason: str  # BY_COUNT or BY_QUIET
    first_ingest: datetime
    last_ingest: datetime
    completed_at: datetime
    modality: str = ""

    def as_row(self) -> dict[str, Any]:
        return {"source": self.source, "study_uid": self.study_uid, "series_uid": self.series_uid,
                "instances": self.instances, "expected": self.expected, "reason": self.reason,
                "first_ingest": self.first_ingest, "last_ingest": self.last_ingest,
                "completed_at": self.completed_at, "modality": self.modality}


def newly_complete_series(instances: Iterable[Mapping[str, Any]], *, source: str, now: datetime,
                          quiet_period: timedelta, already_complete: set[str]) -> list[SeriesCompletion]:
    """Series that are complete at ``now`` (UTC) and not in ``already_complete``, by series UID.

    ``instances``: mappings with ``series_uid``, ``study_uid``, ``sop_uid``, ``ingest_time`` (UTC)
    and optionally ``expected`` (int) and ``modality``.  Rows without a series or instance UID are
    ignored; the same instance seen twice (a re-sent or changed instance) counts once.
    """
    groups: dict[str, dict[str, Any]] = {}
    for row in instances:
        series, sop = str(row.get("series_uid") or ""), str(row.get("sop_uid") or "")
        if not series or not sop or series in already_complete:
            continue
        group = groups.setdefault(series, {"study": str(row.get("study_uid") or ""), "sops": set(), "expected": None,
                                           "first": row["ingest_time"], "last": row["ingest_time"],
                                           "modality": str(row.get("modality") or "")})
        group["sops"].add(sop)
        group["first"] = min(group["first"], row["ingest_time"])
        group["last"] = max(group["last"], row["ingest_time"])
        expected = row.get("expected")
        if expected:
            group["expected"] = max(int(expected), group["expected"] or 0)
    done = []
    for series, group in sorted(groups.items()):
        count, expected = len(group["sops"]), group["expected"]
        if expected and count >= expected:
            reason = BY_COUNT
        elif now - group["last"] >= quiet_period:
            reason = BY_QUIET
        else:
            continue
        done.append(SeriesCompletion(source=source, study_uid=group["study"], series_uid=series, instances=count,
                                     expected=expected, reason=reason, first_ingest=group["first"],
                                     last_ingest=group["last"], completed_at=now, modality=group["modality"]))
    return done


def late_instances(instances: Iterable[Mapping[str, Any]], completed: Mapping[str, datetime]) -> list[dict[str, Any]]:
    """Instances ingested after their series was declared complete (``completed``: series UID -> when)."""
    return [dict(row) for row in instances
            if str(row.get("series_uid") or "") in completed
            and row["ingest_time"] > completed[str(row.get("series_uid"))]]
