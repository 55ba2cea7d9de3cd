"""Run metrics through Airflow's metrics backend (StatsD, or OpenTelemetry: ``[metrics]`` in airflow.cfg).

Every ingestion task emits, per source (``<source>`` below) and task:

- ``rosetta.<source>.<task>.duration``: a timer, milliseconds;
- ``rosetta.<source>.<task>.<count>``: counters of what the task did: items, new and unchanged records,
  objects and bytes written, quarantined records, vectors and feature rows written;
- ``rosetta.<source>.<task>.failures``: a counter, 1 per failed try.

They go out beside Airflow's own task metrics (``ti.finish``, ``dag.<dag>.<task>.duration``...) with the same
prefix, so one StatsD/Prometheus-exporter/OTel-collector set-up shows both; the run summary
(``runs/<source>/<run>.json``) holds the same counts per run.  A metrics backend that is down or missing never
fails a task.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
R = TypeVar("R")

COUNTS: dict[str, tuple[str, ...]] = {
    "plan": (),
    "store_batch": ("items", "new_records", "unchanged", "quarantined", "objects_written", "bytes_written"),
    "embed_batch": ("points", "quarantined"),
    "write_vectors": ("points_written", "points_added"),
    "commit": ("items", "new_records", "unchanged_records", "quarantined", "objects_written", "bytes_written",
               "manifest_rows"),
    "write_features": ("offline_rows", "online_points"),
}


def _counts(task: str, result: Any) -> dict[str, int]:
    if not isinstance(result, dict):
        return {"items": len(result)} if isinstance(result, list) and task == "plan" else {}
    if task == "write_features":
        views = result.get("views") or {}
        return {name: sum(int(v.get(name) or 0) for v in views.values()) for name in COUNTS[task]}
    return {name: int(result[name]) for name in COUNTS.get(task, ()) if isinstance(result.get(name), int)}


def emit(task: str, source: str, result: Any, seconds: float) -> None:
    """Send one finished task's duration and counts."""
    try:
        from airflow.sdk.observability.stats import Stats

        prefix = f"rosetta.{source}.{task}"
        Stats.timing(f"{prefix}.duration", seconds * 1000.0)
        for name, value in _counts(task, result).items():
            Stats.incr(f"{prefix}.{name}", value)
    except Exception as exc:  # metrics must never fail the work they describe
        log.warning("could not emit metrics for %s/%s: %s", source, task, exc)


def emit_failure(task: str, source: str) -> None:
    try:
        from airflow.sdk.observability.stats import Stats

        Stats.incr(f"rosetta.{source}.{task}.failures")
    except Exception as exc:
        log.warning("could not emit metrics for %s/%s: %s", source, task, exc)


def source_name(source: dict[str, str] | None, context: Any) -> str:
    """The source a task works for: the sources.yaml entry, or the ad-hoc image DAG's ``source_name`` param."""
    if source:
        return source["name"]
    from rosetta.core.config import env

    return str((context.get("params") or {}).get("source_name") or env("ROSETTA_SOURCE_NAME", "image_folder")
               or "image_folder")


def measured(task: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Emit ``task``'s duration and counts (or a failure) around a task callable ``fn(source, ..., context)``."""

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def wrapper(source: dict[str, str] | None, *args: Any) -> R:
            name = source_name(source, args[-1])
            start = time.perf_counter()
            try:
                result = fn(source, *args)
            except BaseException:
                emit_failure(task, name)
                raise
            emit(task, name, result, time.perf_counter() - start)
            return result

        return wrapper

    return decorate
