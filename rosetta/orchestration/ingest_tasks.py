"""Task callables of the ingestion DAGs: Airflow context (and the source's name) in, pipeline step out.

A DAG generated from ``sources.yaml`` passes ``source`` = ``{"name": ..., "file": ...}`` and the
task reads that entry when it runs (so options are expanded in the worker's environment and
never stored in the DAG); the ad-hoc image DAG passes ``None`` and takes its options from params.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from rosetta.orchestration.errors import airflow_errors
from rosetta.orchestration.metrics import measured

if TYPE_CHECKING:
    from rosetta.pipelines.ingest import IngestPipeline, RunContext
    from rosetta.pipelines.settings import IngestSettings


def run_context(context: Any) -> RunContext:
    """The pipeline's RunContext for this DAG run: run id and ingest time (data interval end, UTC)."""
    from connectors.sdk import Window
    from rosetta.pipelines.ingest import RunContext

    dag_run = context["dag_run"]
    ingest_time: datetime | None = context.get("data_interval_end") or getattr(dag_run, "run_after", None)
    if ingest_time is None:
        raise RuntimeError(f"DAG run {dag_run.run_id} has neither a data interval nor run_after")
    window = Window()
    if str(getattr(dag_run, "run_type", "")).lower().endswith("backfill"):
        window = Window(context.get("data_interval_start"), context.get("data_interval_end"))
    retry = bool((context.get("params") or {}).get("retry_failed"))
    return RunContext(run_id=dag_run.run_id, ingest_time=ingest_time, window=window, retry_failed=retry)


def settings_for(source: dict[str, str] | None, params: Any) -> IngestSettings:
    """Settings for a configured source, or (``source`` None) for the ad-hoc image folder DAG."""
    if source is None:
        return settings_from_params(params)
    from pathlib import Path

    from rosetta.core.errors import ConfigError
    from rosetta.orchestration.connections import deid_options, s3_options_from_env_connection
    from rosetta.orchestration.sources import load_sources, resolved_options
    from rosetta.pipelines.settings import ingest_settings

    specs = load_sources(Path(source["file"]))
    spec = specs.get(source["name"])
    if spec is None:
        raise ConfigError(f"source {source['name']!r} is no longer in {source['file']}; restore it or let the "
                          "DAG disappear at the next parse", setting="ROSETTA_SOURCES_FILE")
    return ingest_settings(connector=spec.connector, options=deid_options(spec.connector,
                                                                          resolved_options(source["name"], spec)),
                           batch_size=spec.batch_size, concurrency=spec.concurrency, gates=spec.gates,
                           s3_options=s3_options_from_env_connection())


def settings_from_params(params: Any) -> IngestSettings:
    from rosetta.core.config import env
    from rosetta.orchestration.connections import s3_options_from_env_connection
    from rosetta.pipelines.settings import image_folder_options, ingest_settings

    options = image_folder_options(
        source_dir=params.get("source_dir") or None,
        source_name=params.get("source_name") or env("ROSETTA_SOURCE_NAME", "image_folder") or "image_folder",
        timezone=params.get("timezone") or "UTC")
    return ingest_settings(connector="image_folder", options=options, batch_size=int(params.get("batch_size") or 64),
                           concurrency=int(params.get("concurrency") or 8),
                           s3_options=s3_options_from_env_connection())


def _pipeline(source: dict[str, str] | None, context: Any) -> IngestPipeline:
    from rosetta.pipelines.ingest import IngestPipeline

    return IngestPipeline(settings_for(source, context["params"]))


@airflow_errors
def check(source: dict[str, str] | None, context: Any) -> dict[str, str]:
    with _pipeline(source, context) as pipeline:
        return pipeline.check()


@measured("plan")
@airflow_errors
def plan(source: dict[str, str] | None, context: Any) -> list[dict[str, Any]]:
    with _pipeline(source, context) as pipeline:
        return pipeline.plan(run_context(context))


@measured("store_batch")
@airflow_errors
def store_batch(source: dict[str, str] | None, batch: dict[str, Any], context: Any) -> dict[str, Any]:
    context["batch_label"] = batch.get("label", f"batch {batch['batch']}")
    with _pipeline(source, context) as pipeline:
        return pipeline.store_batch(run_context(context), batch)


@measured("embed_batch")
@airflow_errors
def embed_batch(source: dict[str, str] | None, stored: dict[str, Any], context: Any) -> dict[str, Any]:
    context["batch_label"] = f"batch {stored['batch']}: {stored['new_records']} new"
    with _pipeline(source, context) as pipeline:
        return pipeline.embed_batch(run_context(context), stored)


@measured("write_vectors")
@airflow_errors
def write_vectors(source: dict[str, str] | None, embedded: Any, context: Any) -> dict[str, Any]:
    with _pipeline(source, context) as pipeline:
        return pipeline.write_vectors(run_context(context), list(embedded))


@measured("commit")
@airflow_errors
def commit(source: dict[str, str] | None, plans: Any, stored: Any, vectors: dict[str, Any],
           context: Any) -> dict[str, Any]:
    with _pipeline(source, context) as pipeline:
        return pipeline.commit(run_context(context), list(stored), vectors, plans=list(plans),
                               run_after=getattr(context["dag_run"], "run_after", None))


@measured("write_features")
@airflow_errors
def write_features(source: dict[str, str] | None, stored: Any, embedded: Any, context: Any) -> dict[str, Any]:
    with _pipeline(source, context) as pipeline:
        return pipeline.write_features(run_context(context), list(stored), list(embedded))


@airflow_errors
def complete_series(source: dict[str, str] | None, context: Any) -> dict[str, Any]:
    """Declare complete DICOM series; their list becomes the extra of the source's series Asset event."""
    with _pipeline(source, context) as pipeline:
        return pipeline.complete_series(run_context(context))


def completed_series(context: Any) -> list[dict[str, Any]]:
    """The series announced by the Asset events that triggered this run (deduplicated by series UID)."""
    seen: dict[str, dict[str, Any]] = {}
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            for series in (getattr(event, "extra", None) or {}).get("series", []):
                seen.setdefault(series["series_uid"], series)
    return [seen[uid] for uid in sorted(seen)]


@airflow_errors
def summarize_series(source_name: str, series: dict[str, Any]) -> dict[str, Any]:
    """Write one completed series' summary to ``series/summaries/<source>/<series uid>.json``; returns its URI."""
    from feature_store.config import FeatureStoreConfig
    from rosetta.orchestration.connections import s3_options_from_env_connection
    from rosetta.pipelines.series import summarize_series as summarize

    return summarize(FeatureStoreConfig.from_env(s3_options=s3_options_from_env_connection()), source_name, series)


def _alignment(name: str, sources_file: str) -> Any:
    from pathlib import Path

    from feature_store.config import FeatureStoreConfig
    from rosetta.core.errors import ConfigError
    from rosetta.orchestration.connections import s3_options_from_env_connection
    from rosetta.orchestration.sources import load_alignments
    from rosetta.pipelines.alignment import AlignmentPipeline

    spec = load_alignments(Path(sources_file)).get(name)
    if spec is None:
        raise ConfigError(f"alignment {name!r} is no longer in {sources_file}", setting="ROSETTA_SOURCES_FILE")
    return AlignmentPipeline(name, spec, FeatureStoreConfig.from_env(s3_options=s3_options_from_env_connection()))


@airflow_errors
def align_stage(name: str, sources_file: str, context: Any) -> dict[str, Any]:
    """Align what the sources committed since the last published snapshot; stage it for the gate."""
    with _alignment(name, sources_file) as pipeline:
        return dict(pipeline.stage(run_context(context)))


@airflow_errors
def align_publish(name: str, sources_file: str, staged: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the aligned-pairs gate (its policy decides) and publish the snapshot."""
    with _alignment(name, sources_file) as pipeline:
        return dict(pipeline.publish(run_context(context), staged))


@airflow_errors
def train_model(name: str, sources_file: str, context: Any) -> dict[str, Any]:
    """The training DAG's task: train or fine-tune model ``name`` on the features known at the logical date."""
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowSkipException

    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig
    from rosetta.orchestration.connections import s3_options_from_env_connection
    from rosetta.orchestration.sources import load_sources_file
    from rosetta.pipelines.training import NotEnoughNewData, train_projection

    spec = load_sources_file(Path(sources_file)).models[name]
    mode = (context.get("params") or {}).get("mode") or spec.mode
    run = run_context(context)
    with FeatureStore(FeatureStoreConfig.from_env(s3_options=s3_options_from_env_connection())) as fs:
        try:
            return train_projection(fs, name, spec.model_copy(update={"mode": mode}), run_id=run.run_id,
                                    as_of=run.ingest_time)
        except NotEnoughNewData as exc:
            raise AirflowSkipException(str(exc)) from None
