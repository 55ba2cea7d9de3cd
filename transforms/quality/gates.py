"""Quality gates: Great Expectations suites over Arrow tables, with a policy for failures.

A gate validates one table against an expectation suite in an ephemeral GX context (no project
directory, no analytics, no progress bars) and returns a :class:`GateResult`: the suite's success,
each expectation's outcome and the JSON of the full validation result (for storing next to the run).
Policy ``block`` raises :class:`QualityGateError` on failure (downstream does not run); ``warn``
returns the failed result for the caller to record and goes on.

:func:`aligned_pairs_gate` is the alignment stage's suite: every pair has both source ids, the share
of pairs within the tolerance is at least ``min_share_within_tolerance``, and every offset is within
``max_abs_offset``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from rosetta.core.errors import FatalError

if TYPE_CHECKING:
    import pyarrow as pa

Policy = Literal["block", "warn"]


class QualityGateError(FatalError):
    """A gate with policy ``block`` failed: the data does not go downstream."""


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: dict[str, Any]


@dataclass(frozen=True)
class GateResult:
    """What a gate found: overall success, each expectation, and the full GX validation result as JSON."""

    suite: str
    success: bool
    policy: Policy
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    validation_json: str = "{}"

    def summary(self) -> dict[str, Any]:
        return {"suite": self.suite, "success": self.success, "policy": self.policy, "rows": self.rows,
                "failed": [f"{o.expectation}({o.column})" for o in self.outcomes if not o.success]}

    def html(self, title: str) -> str:
        """A small self-contained HTML report of the outcome (stored beside the full JSON result)."""
        from html import escape

        rows = "".join(
            f"<tr class={'ok' if o.success else 'bad'}><td>{'passed' if o.success else 'FAILED'}</td>"
            f"<td>{escape(o.expectation)}</td><td>{escape(o.column or '')}</td>"
            f"<td><code>{escape(json.dumps(o.observed, default=str))}</code></td></tr>" for o in self.outcomes)
        verdict = "passed" if self.success else f"FAILED (policy {self.policy})"
        return (f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
                "<style>body{font-family:sans-serif}td{padding:4px 8px;border-bottom:1px solid #ddd}"
                ".bad{background:#fde2e1}.ok{background:#e6f4ea}"
                f"</style><h1>{escape(title)}</h1><p>Suite <b>{escape(self.suite)}</b> on {self.rows:,} rows: "
                f"<b>{verdict}</b></p><table><tr><th>outcome</th><th>expectation</th><th>column</th>"
                f"<th>observed</th></tr>{rows}</table>")


def run_gate(table: pa.Table, suite_name: str, expectations: list[Any], *, policy: Policy = "block") -> GateResult:
    """Validate ``table`` against ``expectations`` (GX expectation objects); apply ``policy`` on failure."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):  # older/newer GX: progress bars only cost log noise
        pass
    asset = context.data_sources.add_pandas(f"rosetta_{suite_name}").add_dataframe_asset("table")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": table.to_pandas()})
    suite = gx.ExpectationSuite(name=suite_name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch.validate(suite)
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        outcomes.append(ExpectationOutcome(
            expectation=config.type if config is not None else "?",
            column=config.kwargs.get("column") if config is not None else None, success=bool(r.success),
            observed={k: v for k, v in (r.result or {}).items()
                      if k in ("observed_value", "unexpected_count", "unexpected_percent", "element_count")}))
    gate = GateResult(suite=suite_name, success=bool(result.success), policy=policy, rows=table.num_rows,
                      outcomes=outcomes, validation_json=json.dumps(result.to_json_dict(), default=str))
    if not gate.success and policy == "block":
        failed = ", ".join(f"{o.expectation}({o.column}): {o.observed}" for o in outcomes if not o.success)
        raise QualityGateError(f"quality gate {suite_name!r} failed on {table.num_rows} rows: {failed}; fix the "
                               "inputs (or the stage's settings), or set the gate's policy to 'warn'")
    return gate


def aligned_pairs_gate(table: pa.Table, *, tolerance: timedelta | None, min_share_within_tolerance: float = 0.95,
                       max_abs_offset: timedelta | None = None, policy: Policy = "block") -> GateResult:
    """The alignment stage's suite over :func:`transforms.alignment.align` output (pairs, not windows)."""
    import great_expectations as gx
    import pyarrow as pa
    import pyarrow.compute as pc

    seconds = pc.divide(pc.cast(pc.cast(table.column("offset"), pa.int64()), pa.float64()), 1e6)
    work = pa.table({"left_id": table.column("left_id"), "right_id": table.column("right_id"),
                     "offset_s": seconds, "abs_offset_s": pc.abs(seconds)})
    expectations: list[Any] = [gx.expectations.ExpectColumnValuesToNotBeNull(column="left_id"),
                               gx.expectations.ExpectColumnValuesToNotBeNull(column="right_id")]
    if tolerance is not None:
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(
            column="abs_offset_s", min_value=0, max_value=tolerance.total_seconds(),
            mostly=min_share_within_tolerance))
    if max_abs_offset is not None:
        bound = max_abs_offset.total_seconds()
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(column="offset_s", min_value=-bound,
                                                                          max_value=bound))
    return run_gate(work, "aligned_pairs", expectations, policy=policy)


def embeddings_gate(ids: list[str], vectors: Any, *, dimension: int, policy: Policy = "block",
                    norm_tolerance: float = 1e-3) -> GateResult:
    """The embedding stage's suite: every vector has ``dimension`` values, all finite (no NaN/inf), and unit
    length within ``norm_tolerance`` (the encoders L2-normalise; anything else is a broken model or input)."""
    import great_expectations as gx
    import numpy as np
    import pyarrow as pa

    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    finite = np.array([bool(np.isfinite(np.asarray(v, dtype=np.float64)).all()) for v in vectors], dtype=bool)
    norms = np.array([float(np.linalg.norm(np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=0.0,
                                                         neginf=0.0))) for v in vectors], dtype=np.float64)
    work = pa.table({"id": pa.array(ids, pa.string()), "dimension": lengths, "finite": finite, "norm": norms})
    expectations: list[Any] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="id"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="dimension", min_value=dimension, max_value=dimension),
        gx.expectations.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeBetween(column="norm", min_value=1 - norm_tolerance,
                                                      max_value=1 + norm_tolerance)]
    return run_gate(work, "embeddings", expectations, policy=policy)


def manifest_gate(table: pa.Table, *, policy: Policy = "block") -> GateResult:
    """The raw stage's suite over a run's manifest entries: every object has a source id, a URI, a 64-hex sha256,
    is stored under the content address of that sha256 (``objects/sha256/ab/cdef...``), and is not empty."""
    import great_expectations as gx
    import pyarrow as pa

    from feature_store.object_store.base import content_key

    shas = table.column("sha256")
    hex_sha = re.compile(r"^[0-9a-f]{64}$")
    addressed = [bool(sha and hex_sha.match(sha)) and key == content_key(sha)
                 for key, sha in zip(table.column("key").to_pylist(), shas.to_pylist(), strict=True)]
    work = pa.table({"source_id": table.column("source_id"), "uri": table.column("uri"), "sha256": shas,
                     "size_bytes": table.column("size_bytes"), "addressed": pa.array(addressed, pa.bool_())})
    expectations: list[Any] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="source_id"),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="uri"),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="sha256", regex="^[0-9a-f]{64}$"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="addressed", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=1)]
    return run_gate(work, "raw_manifest", expectations, policy=policy)


def dicom_metadata_gate(records: pa.Table, *, policy: Policy = "block") -> GateResult:
    """The DICOM suite over a run's records (``connectors/dicom_records.py``): every record has its study, series
    and instance UIDs (de-identified ones when de-identification is on), a modality, a well-formed SOP class UID,
    and at least one frame."""
    import great_expectations as gx
    import pyarrow as pa

    rows: dict[str, list[Any]] = {"source_id": [], "study_uid": [], "series_uid": [], "sop_uid": [], "modality": [],
                                  "sop_class_uid": [], "frames": []}
    for source_id, keys_json, metadata_json in zip(*(records.column(c).to_pylist()
                                                     for c in ("source_id", "keys", "metadata")), strict=True):
        keys, metadata = json.loads(keys_json), json.loads(metadata_json)
        rows["source_id"].append(source_id)
        for key in ("study_uid", "series_uid", "sop_uid"):
            rows[key].append(keys.get(key))
        rows["modality"].append(metadata.get("modality") or None)
        rows["sop_class_uid"].append(metadata.get("sop_class_uid") or None)
        rows["frames"].append(metadata.get("frames"))
    work = pa.table({"source_id": pa.array(rows["source_id"], pa.string()),
                     **{k: pa.array(rows[k], pa.string()) for k in ("study_uid", "series_uid", "sop_uid", "modality",
                                                                    "sop_class_uid")},
                     "frames": pa.array(rows["frames"], pa.int64())})
    expectations: list[Any] = [gx.expectations.ExpectColumnValuesToNotBeNull(column=c)
                               for c in ("study_uid", "series_uid", "sop_uid", "modality", "sop_class_uid")]
    expectations += [
        gx.expectations.ExpectColumnValuesToMatchRegex(column="sop_class_uid", regex=r"^[0-9]+(?:\.[0-9]+)*$"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="frames", min_value=1)]
    return run_gate(work, "dicom_metadata", expectations, policy=policy)
