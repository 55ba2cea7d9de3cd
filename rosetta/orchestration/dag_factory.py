"""Build ingestion DAGs: the same six tasks for every source, configured per source.

Only ``airflow.sdk`` and the standard library are imported here; each task imports the
pipeline when it runs, so parsing stays fast.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context, task

TASKS_DOC = """
1. **check**: fails fast if the object store, Qdrant, a model path or the source is
   misconfigured (the message names the setting to fix; no retries);
2. **plan**: lists what is new since the committed state (an Airflow backfill run lists its data
   interval instead) and splits it into batches (one mapped task each);
3. **store_batch**: fetches and validates records and stores their objects content-addressed;
   unchanged records are skipped, bad ones quarantined with a reason;
4. **embed_batch**: encodes images and text, vectors stamped with the encoder identity;
5. **write_vectors**: upserts into Qdrant with deterministic point IDs;
6. **commit**: writes the manifest together with the new connector state, the record catalog,
   the quarantine ledger and the run summary.

Re-running any task or run is safe: nothing is stored or embedded twice.
"""


def build_ingest_dag(dag_id: str, *, source: dict[str, str] | None, description: str, schedule: Any = None,
                     start_date: datetime = datetime(2026, 1, 1), catchup: bool = False,
                     tags: list[str] | None = None, owner: str = "rosetta", retries: int = 2,
                     max_active_runs: int = 1, params: dict[str, Any] | None = None) -> DAG:
    """One ingestion DAG.  ``source`` names a ``sources.yaml`` entry (``{"name", "file"}``), or is
    None for a DAG whose params carry the options (the ad-hoc image folder DAG)."""
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=start_date,
        catchup=catchup,
        max_active_runs=max_active_runs,
        tags=sorted({"rosetta", "ingest", *(tags or [])}),
        doc_md=f"### {description}\n{TASKS_DOC}",
        params=params or {},
        default_args={
            "owner": owner,
            "retries": retries,
            "retry_delay": timedelta(seconds=10),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=10),
        },
    ) as dag:

        @task
        def check() -> dict[str, str]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.check(source, get_current_context())

        @task
        def plan() -> list[dict[str, Any]]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.plan(source, get_current_context())

        @task(map_index_template="{{ batch_label }}")
        def store_batch(batch: dict[str, Any]) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.store_batch(source, batch, get_current_context())

        @task(map_index_template="{{ batch_label }}")
        def embed_batch(stored: dict[str, Any]) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.embed_batch(source, stored, get_current_context())

        # none_failed: when nothing is new the mapped tasks expand to zero and are skipped;
        # the run must still commit its state and summary.
        @task(trigger_rule="none_failed")
        def write_vectors(embedded: Any) -> dict[str, Any]:  # Any: called with an XComArg at parse time
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.write_vectors(source, embedded, get_current_context())

        @task(trigger_rule="none_failed")
        def commit(plans: Any, stored: Any, vectors: Any) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.commit(source, plans, stored, vectors, get_current_context())

        batches = plan()
        check() >> batches
        stored = store_batch.expand(batch=batches)
        embedded = embed_batch.expand(stored=stored)
        commit(batches, stored, write_vectors(embedded))
    return dag


def build_source_dags(sources_file: Path) -> dict[str, DAG]:
    """One DAG per entry of ``sources_file``, keyed by dag id (``rosetta_source_<name>``)."""
    from rosetta.orchestration.sources import load_sources

    dags = {}
    for name, spec in load_sources(sources_file).items():
        dag_id = f"rosetta_source_{name}"
        dags[dag_id] = build_ingest_dag(
            dag_id, source={"name": name, "file": str(sources_file)},
            description=spec.description or f"Ingest source {name!r} ({spec.connector})",
            schedule=spec.schedule, start_date=spec.start_date, catchup=spec.catchup,
            tags=[spec.connector, *spec.tags], owner=spec.owner, retries=spec.retries,
            max_active_runs=spec.max_active_runs)
    return dags
