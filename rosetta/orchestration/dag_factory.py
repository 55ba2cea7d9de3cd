"""Build the DAGs: the same ingestion tasks for every source, alignment and model jobs, all from configuration.

Only ``airflow.sdk`` and the standard library are imported here; each task imports the
pipeline when it runs, so parsing stays fast.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, Param, get_current_context, task

#: Airflow pools (``make airflow`` creates them): encoder tasks take a ``gpu`` slot, source and object-store I/O an
#: ``io`` slot, so a deployment never runs more model batches or downloads at once than its hardware takes.
GPU_POOL = os.environ.get("ROSETTA_GPU_POOL", "gpu")
IO_POOL = os.environ.get("ROSETTA_IO_POOL", "io")
#: The Celery queue of the tasks that run models (embedding, training): only workers on accelerator hosts listen to
#: it.  Every other task takes the default queue (``[operators] default_queue``, ``cpu`` in airflow.cfg).  The
#: LocalExecutor ignores queues.
GPU_QUEUE = os.environ.get("ROSETTA_GPU_QUEUE", "gpu")


def records_asset(source_name: str) -> Asset:
    """The Asset a source's ingestion DAG updates at every commit (its record catalog)."""
    return Asset(f"rosetta://records/{source_name}", group="records")


def aligned_asset(name: str) -> Asset:
    """The Asset an alignment DAG updates when it publishes a gated snapshot."""
    return Asset(f"rosetta://aligned/{name}", group="aligned")


def features_alias(source_name: str | None) -> AssetAlias:
    """The alias through which a source's ingestion publishes its feature-view versions' Asset events."""
    return AssetAlias(f"rosetta-features-{source_name}" if source_name else "rosetta-features")


def feature_view_asset(versioned_name: str) -> Asset:
    """The Asset of one feature-view version (``view@version``): updated when a run writes values of it."""
    view, _, version = versioned_name.partition("@")
    return Asset(f"rosetta://features/{view}/{version}", group="features")


def series_asset(source_name: str) -> Asset:
    """The Asset a DICOM source updates once per run in which series completed (extra: the series)."""
    return Asset(f"rosetta://dicom/{source_name}/series-complete", group="dicom-series")

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
   the quarantine ledger and the run summary;
7. **write_features**: writes the run's values of every feature view registered for the source
   (`rosetta features apply`) to the offline store, brings embedding views' entities online in the
   view version's Qdrant collection, and updates each version's Asset
   `rosetta://features/<view>/<version>` (through the alias `rosetta-features-<source>`).

Re-running any task or run is safe: nothing is stored or embedded twice.  Trigger with the param
`retry_failed` to redo only the items that failed last time (see the quarantine ledger:
`rosetta manifest --quarantine`).
"""

SERIES_DOC = """
8. **complete_series** (DICOM sources): declares the series that are complete (expected count
   reached, or quiet for the source's `series_quiet_period_s`) in the series ledger, once each,
   and publishes them as an event of the Asset `rosetta://dicom/<source>/series-complete`;
   skipped when no series completed, so downstream DAGs run once per completion, not per instance.
"""


def build_ingest_dag(dag_id: str, *, source: dict[str, str] | None, description: str, schedule: Any = None,
                     start_date: datetime = datetime(2026, 1, 1), catchup: bool = False,
                     tags: list[str] | None = None, owner: str = "rosetta", retries: int = 2,
                     max_active_runs: int = 1, params: dict[str, Any] | None = None,
                     series: Asset | None = None) -> DAG:
    """One ingestion DAG.  ``source`` names a ``sources.yaml`` entry (``{"name", "file"}``), or is
    None for a DAG whose params carry the options (the ad-hoc image folder DAG).  ``series``: the
    Asset to publish DICOM series completions on (adds the ``complete_series`` task)."""
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=start_date,
        catchup=catchup,
        max_active_runs=max_active_runs,
        tags=sorted({"rosetta", "ingest", *(tags or [])}),
        doc_md=f"### {description}\n{TASKS_DOC}{SERIES_DOC if series is not None else ''}",
        params={**(params or {}), "retry_failed": Param(
            False, type="boolean", description="Redo only the items that failed last time (quarantined and not "
            "stored since), after fixing them at the source or in Rosetta; the incremental state does not move.")},
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

        @task(map_index_template="{{ batch_label }}", pool=IO_POOL)
        def store_batch(batch: dict[str, Any]) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.store_batch(source, batch, get_current_context())

        @task(map_index_template="{{ batch_label }}", pool=GPU_POOL, queue=GPU_QUEUE)
        def embed_batch(stored: dict[str, Any]) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.embed_batch(source, stored, get_current_context())

        # none_failed: when nothing is new the mapped tasks expand to zero and are skipped;
        # the run must still commit its state and summary.
        @task(trigger_rule="none_failed")
        def write_vectors(embedded: Any) -> dict[str, Any]:  # Any: called with an XComArg at parse time
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.write_vectors(source, embedded, get_current_context())

        @task(trigger_rule="none_failed", outlets=[records_asset(source["name"])] if source else [])
        def commit(plans: Any, stored: Any, vectors: Any) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.commit(source, plans, stored, vectors, get_current_context())

        alias = features_alias(source["name"] if source else None)

        @task(trigger_rule="none_failed", outlets=[alias])
        def write_features(stored: Any, embedded: Any) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            context = get_current_context()
            result = ingest_tasks.write_features(source, stored, embedded, context)
            for versioned_name, done in result["views"].items():
                if done.get("offline_rows"):
                    context["outlet_events"][alias].add(feature_view_asset(versioned_name), extra=done)
            return result

        batches = plan()
        check() >> batches
        stored = store_batch.expand(batch=batches)
        embedded = embed_batch.expand(stored=stored)
        committed = commit(batches, stored, write_vectors(embedded))
        committed >> write_features(stored, embedded)
        if series is not None:
            completion_asset = series

            @task(outlets=[completion_asset])
            def complete_series() -> dict[str, Any]:
                from airflow.sdk.exceptions import AirflowSkipException

                from rosetta.orchestration import ingest_tasks

                context = get_current_context()
                result = ingest_tasks.complete_series(source, context)
                if not result["series"]:  # a skipped task publishes no Asset event
                    raise AirflowSkipException("no series completed in this run")
                context["outlet_events"][completion_asset].extra = {"series": result["series"]}
                return result

            committed >> complete_series()
    return dag


def build_series_dag(source_name: str, asset: Asset, *, owner: str = "rosetta", tags: list[str] | None = None) -> DAG:
    """The downstream DAG of a DICOM source: scheduled on its series Asset, one mapped task per series."""
    with DAG(
        dag_id=f"rosetta_series_{source_name}",
        description=f"Per-series work for DICOM source {source_name!r}, once per completed series",
        schedule=[asset],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=sorted({"rosetta", "dicom", "series", *(tags or [])}),
        doc_md=(f"### Completed series of `{source_name}`\nRuns when `{asset.uri}` gets an event: "
                "**completed_series** collects the series of the triggering events, **summarize_series** "
                "runs once per series (a mapped task) and writes its summary (instances, frames, modality, "
                "time range, object URIs) to `series/summaries/` in the object store."),
        default_args={"owner": owner, "retries": 2, "retry_delay": timedelta(seconds=10),
                      "retry_exponential_backoff": True},
    ) as dag:

        @task
        def completed_series() -> list[dict[str, Any]]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.completed_series(get_current_context())

        @task(map_index_template="{{ series_label }}")
        def summarize_series(series: dict[str, Any]) -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            context = get_current_context()
            context["series_label"] = f"{series['series_uid'][:24]} ({series['instances']} instances)"  # type: ignore[typeddict-unknown-key]
            return ingest_tasks.summarize_series(source_name, series)

        summarize_series.expand(series=completed_series())
    return dag


ALIGN_DOC = """
Runs when either source commits records (Assets `rosetta://records/<source>`):

1. **align**: pairs the new records with the rest by time ({strategy}, by {by}, tolerance {tolerance});
   late records re-open only the windows they touch, so the result equals one full alignment;
2. **publish**: runs the aligned-pairs Great Expectations suite (both ids present, share within
   tolerance, offsets within bounds; policy **{policy}**), stores the validation result next to
   `aligned/{name}/part-<run>.parquet` and updates the Asset `rosetta://aligned/{name}`.
"""


def build_alignment_dag(name: str, spec: Any, sources_file: Path) -> DAG:
    """``rosetta_align_<name>``: scheduled on both sources' record Assets; align, gate, publish."""
    from airflow.sdk import AssetAny

    left, right = records_asset(spec.left.source), records_asset(spec.right.source)
    published = aligned_asset(name)
    with DAG(
        dag_id=f"rosetta_align_{name}",
        description=spec.description or f"Align {spec.left.source} with {spec.right.source}",
        schedule=AssetAny(left, right),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=sorted({"rosetta", "alignment", *spec.tags}),
        doc_md=f"### {spec.description or name}\n" + ALIGN_DOC.format(
            strategy=spec.strategy, by=", ".join(spec.by) or "(no key)", name=name, policy=spec.gate.policy,
            tolerance=f"{spec.tolerance_s} s" if spec.tolerance_s is not None else "none"),
        default_args={"owner": spec.owner, "retries": 2, "retry_delay": timedelta(seconds=10),
                      "retry_exponential_backoff": True},
    ) as dag:

        @task
        def align() -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            return ingest_tasks.align_stage(name, str(sources_file), get_current_context())

        @task(outlets=[published])
        def publish(staged: Any) -> dict[str, Any]:  # Any: called with an XComArg at parse time
            from rosetta.orchestration import ingest_tasks

            context = get_current_context()
            summary = ingest_tasks.align_publish(name, str(sources_file), staged, context)
            context["outlet_events"][published].extra = {"pairs": summary["pairs"], "gate": summary["gate"],
                                                         "aligned_uri": summary["aligned_uri"]}
            return summary

        publish(align())
    return dag


TRAIN_DOC = """
Runs when feature values are written (the Assets of the feature views, through the aliases
`rosetta-features-<source>` of {after} and of the ad-hoc image DAG), or when triggered.

1. **train**: point-in-time retrieval of `{image_view}` and `{text_view}` from the feature store (every
   sample with both embeddings known at the run's logical date), a stable held-out split, a projection
   head trained with a contrastive (InfoNCE) loss, recall@{k} on the held-out pairs before and after, and
   the model with its lineage (feature-view versions, encoders, data interval, dataset sha256) written to
   `models/{name}/<run>/`.  In `incremental` mode (param; `auto` once a model exists) it fine-tunes the
   latest model on the new pairs plus a replay sample of older ones, and is skipped when fewer than
   {min_new} pairs are new.  Updates the Asset `rosetta://models/{name}`.

To run an external trainer instead, schedule its DAG on the same Assets, or add a task after `train`
that calls it: `TriggerDagRunOperator` (another Airflow DAG), `HttpOperator` (a training service), or
`KubernetesPodOperator` (a pod with a GPU), passing `model_uri` and `feature_views` from this task's XCom.
"""


def model_asset(name: str) -> Asset:
    """The Asset a training DAG updates when it writes a model."""
    return Asset(f"rosetta://models/{name}", group="models")


def build_training_dag(name: str, spec: Any, sources_file: Path) -> DAG:
    """``rosetta_train_<name>``: scheduled on the feature Assets of ``spec.after`` (and the ad-hoc image DAG)."""
    from airflow.sdk import AssetAny

    aliases = [features_alias(None), *(features_alias(s) for s in spec.after)]
    published = model_asset(name)
    with DAG(
        dag_id=f"rosetta_train_{name}",
        description=spec.description or f"Train the {name} projection head on {spec.image_view} x {spec.text_view}",
        schedule=AssetAny(*aliases),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["rosetta", "training"],
        doc_md=f"### Model job {name}\n" + TRAIN_DOC.format(
            name=name, image_view=spec.image_view, text_view=spec.text_view, k=spec.k, min_new=spec.min_new_pairs,
            after=", ".join(spec.after) or "no configured source"),
        params={"mode": Param(spec.mode, enum=["auto", "full", "incremental"],
                              description="full: train from scratch; incremental: fine-tune the latest model on new "
                                          "pairs plus a replay sample; auto: incremental once a model exists")},
        default_args={"owner": spec.owner, "retries": 1, "retry_delay": timedelta(seconds=30),
                      "retry_exponential_backoff": True},
    ) as dag:

        @task(outlets=[published], queue=GPU_QUEUE)
        def train() -> dict[str, Any]:
            from rosetta.orchestration import ingest_tasks

            context = get_current_context()
            summary = ingest_tasks.train_model(name, str(sources_file), context)
            context["outlet_events"][published].extra = {
                "model_uri": summary["model_uri"], "mode": summary["mode"], "pairs": summary["pairs"],
                "feature_views": summary["feature_views"], "dataset_sha256": summary["dataset_sha256"]}
            return summary

        train()
    return dag


def build_source_dags(sources_file: Path) -> dict[str, DAG]:
    """One DAG per entry of ``sources_file``, keyed by dag id (``rosetta_source_<name>``), plus one per
    alignment (``rosetta_align_<name>``)."""
    from rosetta.orchestration.sources import load_sources_file
    from rosetta.pipelines.settings import DICOM_CONNECTORS

    dags = {}
    parsed = load_sources_file(sources_file)
    for name, alignment in parsed.alignments.items():
        dag = build_alignment_dag(name, alignment, sources_file)
        dags[dag.dag_id] = dag
    for name, model in parsed.models.items():
        dag = build_training_dag(name, model, sources_file)
        dags[dag.dag_id] = dag
    for name, spec in parsed.sources.items():
        dag_id = f"rosetta_source_{name}"
        asset = series_asset(name) if spec.connector in DICOM_CONNECTORS else None
        dags[dag_id] = build_ingest_dag(
            dag_id, source={"name": name, "file": str(sources_file)},
            description=spec.description or f"Ingest source {name!r} ({spec.connector})",
            schedule=spec.schedule, start_date=spec.start_date, catchup=spec.catchup,
            tags=[spec.connector, *spec.tags], owner=spec.owner, retries=spec.retries,
            max_active_runs=spec.max_active_runs, series=asset)
        if asset is not None:
            series_dag = build_series_dag(name, asset, owner=spec.owner, tags=[spec.connector, *spec.tags])
            dags[series_dag.dag_id] = series_dag
    return dags
