"""Ingest any folder of images with caption sidecars, chosen per run through params.

Wiring only: the tasks come from ``rosetta.orchestration.dag_factory`` and import the
pipeline when they run, so parsing this file stays fast.
"""

from __future__ import annotations

from airflow.sdk import Param

from rosetta.orchestration.dag_factory import build_ingest_dag

dag = build_ingest_dag(
    "rosetta_ingest_images",
    source=None,
    description="Ingest a folder of images with .txt/.json caption sidecars (folder chosen per run)",
    tags=["images", "image_folder"],
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
