"""The alignment stage: records of two sources paired by time, incrementally, behind a quality gate.

Reads both sources' record catalogs (the latest version of each record), aligns with
:func:`transforms.alignment.incremental.realign` against the last published snapshot (only windows
that new records re-open are recomputed; "new" means committed by a run the snapshot has not seen,
so backfills of old data intervals count too), validates with the aligned-pairs Great Expectations
suite and publishes:

    aligned/<name>/part-<run>.parquet     the full aligned table after this run (Parquet metadata: the
                                          ingest runs it covers, the gate summary)
    aligned/<name>/gates/<run>.json       the full GX validation result

Re-running a run rebuilds the same files (the run's own earlier output is ignored).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from feature_store.config import FeatureStoreConfig
from feature_store.manifest import RecordCatalog, read_table, write_table
from feature_store.object_store import open_object_store
from rosetta.core.hashing import safe_name
from rosetta.core.timeutil import isoformat_z

if TYPE_CHECKING:
    import pyarrow as pa

    from rosetta.orchestration.sources import AlignmentSpec, AlignSide
    from rosetta.pipelines.ingest import RunContext

log = logging.getLogger(__name__)
ALIGNED_PREFIX = "aligned/"


class AlignmentPipeline:
    """One configured alignment (``name``, ``spec``) over the feature store's record catalog."""

    def __init__(self, name: str, spec: AlignmentSpec, feature_store: FeatureStoreConfig) -> None:
        self.name, self.spec = name, spec
        self.store = open_object_store(feature_store.object_store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> AlignmentPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the spec as the engine takes it ---------------------------------------------------------------
    def align_spec(self) -> Any:
        from transforms.alignment import AlignSpec

        spec = self.spec
        return AlignSpec(strategy=spec.strategy, by=tuple(spec.by), right_end="end" if spec.right_end_key else None,
                         tolerance=None if spec.tolerance_s is None else timedelta(seconds=spec.tolerance_s),
                         allow_exact=spec.allow_exact, cardinality=spec.cardinality,
                         window=(timedelta(seconds=spec.window_s[0]), timedelta(seconds=spec.window_s[1])))

    # -- inputs ------------------------------------------------------------------------------------------
    def side_table(self, side: AlignSide, *, right: bool) -> pa.Table:
        """The latest version of each record of ``side.source``: id, UTC time, the ``by`` keys, text, run."""
        import pyarrow as pa
        import pyarrow.compute as pc

        catalog = RecordCatalog(self.store).read(source=side.source)
        rows: dict[str, dict[str, Any]] = {}
        for row in catalog.to_pylist():  # sorted by (sample_id, ingest_time): the last version wins
            objects = json.loads(row["objects"])
            if side.role and side.role not in objects:
                rows.pop(row["source_id"], None)
                continue
            keys, metadata = json.loads(row["keys"]), json.loads(row["metadata"])
            entry = {"source_id": row["source_id"], "event_time": row["event_time"], "run_id": row["run_id"],
                     "text": row["text"]}
            for name in self.spec.by:
                value = keys.get(side.keys.get(name, name))
                entry[name] = None if value is None else str(value)
            if right and self.spec.right_end_key:
                entry["end"] = metadata.get(self.spec.right_end_key)
            rows[row["source_id"]] = entry
        ts = pa.timestamp("us", tz="UTC")
        columns: dict[str, Any] = {
            "source_id": pa.array([r["source_id"] for r in rows.values()], pa.string()),
            "event_time": pa.array([r["event_time"] for r in rows.values()], ts),
            "run_id": pa.array([r["run_id"] for r in rows.values()], pa.string()),
            "text": pa.array([r["text"] for r in rows.values()], pa.string())}
        for name in self.spec.by:
            columns[name] = pa.array([r[name] for r in rows.values()], pa.string())
        if right and self.spec.right_end_key:
            columns["end"] = pc.cast(pa.array([r.get("end") for r in rows.values()], pa.string()), ts) \
                if rows else pa.array([], ts)
        return pa.table(columns)

    def latest(self, *, exclude_run_id: str | None = None) -> tuple[pa.Table | None, set[str]]:
        """The last published snapshot and the ingest runs it covers (None, empty set before the first)."""
        best: tuple[str, str, pa.Table] | None = None
        for key in self.store.list(f"{ALIGNED_PREFIX}{safe_name(self.name)}/part-"):
            table = read_table(self.store, key)  # each part read once; the best one is kept
            meta = table.schema.metadata or {}
            run_id = meta.get(b"rosetta.run_id", b"").decode()
            if run_id == exclude_run_id:
                continue
            rank = (meta.get(b"rosetta.published", b"").decode(), run_id)
            if best is None or rank > best[:2]:
                best = (*rank, table)
        if best is None:
            return None, set()
        table = best[2]
        covered = set(json.loads((table.schema.metadata or {}).get(b"rosetta.covered_runs", b"[]")))
        return table.replace_schema_metadata(None), covered

    # -- the two steps -------------------------------------------------------------------------------------
    def stage(self, run: RunContext) -> dict[str, Any]:
        """Align what is new since the last snapshot; stage the full result for the gate."""
        import pyarrow.compute as pc

        from transforms.alignment.incremental import realign

        spec = self.align_spec()
        left = self.side_table(self.spec.left, right=False)
        right = self.side_table(self.spec.right, right=True)
        previous, covered = self.latest(exclude_run_id=run.run_id)
        runs = set(left.column("run_id").to_pylist()) | set(right.column("run_id").to_pylist())
        fresh = list(runs - covered)
        new_left = left.filter(pc.is_in(left.column("run_id"), value_set=_strings(fresh)))
        new_right = right.filter(pc.is_in(right.column("run_id"), value_set=_strings(fresh)))
        aligned = realign(previous, left, right, new_left, new_right, spec)
        covered_after = sorted(covered | runs)
        key = run.staging("align", f"{safe_name(self.name)}.parquet")
        staged = aligned.replace_schema_metadata({"rosetta.covered_runs": json.dumps(covered_after),
                                                  "rosetta.run_id": run.run_id})
        uri = write_table(self.store, key, staged)
        log.info("alignment %s: %d pairs (%d new left, %d new right records)", self.name, aligned.num_rows,
                 new_left.num_rows, new_right.num_rows)
        return {"name": self.name, "staged_uri": uri, "pairs": aligned.num_rows, "new_left": new_left.num_rows,
                "new_right": new_right.num_rows, "left_records": left.num_rows, "right_records": right.num_rows}

    def publish(self, run: RunContext, staged: dict[str, Any]) -> dict[str, Any]:
        """Gate the staged table (policy block raises QualityGateError) and publish it with the gate result."""
        from transforms.quality.gates import QualityGateError, aligned_pairs_gate

        table = read_table(self.store, self.store.key_for(staged["staged_uri"]))
        meta = dict(table.schema.metadata or {})
        gate_spec, spec = self.spec.gate, self.spec
        bound = gate_spec.max_abs_offset_s
        gate = aligned_pairs_gate(  # evaluated as "warn" so the result is stored whatever the policy says
            table.replace_schema_metadata(None), policy="warn",
            tolerance=None if spec.tolerance_s is None else timedelta(seconds=spec.tolerance_s),
            min_share_within_tolerance=gate_spec.min_share_within_tolerance,
            max_abs_offset=None if bound is None else timedelta(seconds=bound))
        base = f"{ALIGNED_PREFIX}{safe_name(self.name)}"
        gate_key = f"{base}/gates/{run.key}.json"
        self.store.write_bytes(gate_key, gate.validation_json.encode(), media_type="application/json")
        if not gate.success and gate_spec.policy == "block":
            raise QualityGateError(f"alignment {self.name!r}: the aligned-pairs gate failed "
                                   f"({', '.join(gate.summary()['failed'])}); nothing was published; the validation "
                                   f"result is at {self.store.uri_for(gate_key)}; fix the inputs or set the gate "
                                   "policy to warn")
        meta.update({b"rosetta.gate": json.dumps({**gate.summary(), "policy": gate_spec.policy}).encode(),
                     b"rosetta.published": isoformat_z(run.ingest_time).encode()})
        uri = write_table(self.store, f"{base}/part-{run.key}.parquet", table.replace_schema_metadata(meta))
        summary = {**staged, "aligned_uri": uri, "gate": {**gate.summary(), "policy": gate_spec.policy},
                   "gate_uri": self.store.uri_for(gate_key)}
        if not gate.success:
            log.warning("alignment %s published with a failed gate (policy warn): %s", self.name, gate.summary())
        return summary

    def read(self) -> pa.Table | None:
        """The latest published aligned table (None before the first publication)."""
        return self.latest()[0]


def _strings(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())

