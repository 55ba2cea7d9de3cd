"""Ingest a folder of images with caption sidecars into Rosetta.

Wiring only: every step is a function in ``rosetta.orchestration.image_ingest``
(imported inside the task, so parsing this file stays fast).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

DOC = """
### Ingest images with captions

Reads a folder of images with `.txt`/`.json` caption sidecars and, for every
new or changed sample:

1. **check**: fails fast if the object store, Qdrant, the model paths or the
   folder are misconfigured (the message names the setting to fix);
2. **plan**: lists the folder and splits it into batches (one mapped task each);
3. **store_batch**: validates and stores image and caption as content-addressed
   raw objects; unchanged samples are skipped, bad ones quarantined with a reason;
4. **embed_batch**: encodes images (EfficientNet-Lite0 or a local HF model) and
   captions (MiniLM), vectors stamped with the encoder identity;
5. **write_vectors**: upserts into Qdrant with deterministic point IDs;
6. **commit**: writes the manifest and quarantine ledger, then the run summary.

Incremental: only files modified since the last committed run are listed (the
connector state is stored inside the manifest part, committed atomically with
it); an Airflow backfill run lists its data interval instead.  Re-running is
safe: nothing is stored or embedded twice.  Settings come from
`ROSETTA_*` environment variables (see README); params override the source.
"""


@dag(
    dag_id="rosetta_ingest_images",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["rosetta", "ingest", "images"],
    doc_md=DOC,
    default_args={
        "owner": "rosetta",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "source_dir": Param(None, type=["null", "string"],
                            description="Folder of images with caption sidecars (default: ROSETTA_SOURCE_DIR)."),
        "source_name": Param(None, type=["null", "string"],
                             description="Source name recorded in the manifest (default: ROSETTA_SOURCE_NAME)."),
        "batch_size": Param(64, type="integer", minimum=1, description="Items per mapped batch."),
        "concurrency": Param(8, type="integer", minimum=1, maximum=64,
                             description="Parallel object-store writes within a batch."),
        "timezone": Param("UTC", type="string", description="IANA zone of camera clocks without an offset."),
    },
)
def rosetta_ingest_images() -> None:
    @task
    def check() -> dict[str, str]:
        from rosetta.orchestration import image_ingest

        return image_ingest.check(get_current_context())

    @task
    def plan() -> list[dict]:
        from rosetta.orchestration import image_ingest

        return image_ingest.plan(get_current_context())

    @task(map_index_template="{{ batch_label }}")
    def store_batch(batch: dict) -> dict:
        from rosetta.orchestration import image_ingest

        return image_ingest.store_batch(batch, get_current_context())

    @task(map_index_template="{{ batch_label }}")
    def embed_batch(stored: dict) -> dict:
        from rosetta.orchestration import image_ingest

        return image_ingest.embed_batch(stored, get_current_context())

    # none_failed: when nothing is new the mapped tasks expand to zero and are skipped;
    # the run must still commit its (unchanged) state and summary.
    @task(trigger_rule="none_failed")
    def write_vectors(embedded: list[dict]) -> dict:
        from rosetta.orchestration import image_ingest

        return image_ingest.write_vectors(embedded, get_current_context())

    @task(trigger_rule="none_failed")
    def commit(plans: list[dict], stored: list[dict], vectors: dict) -> dict:
        from rosetta.orchestration import image_ingest

        return image_ingest.commit(plans, stored, vectors, get_current_context())

    batches = plan()
    check() >> batches
    stored = store_batch.expand(batch=batches)
    embedded = embed_batch.expand(stored=stored)
    commit(batches, stored, write_vectors(embedded))


rosetta_ingest_images()
