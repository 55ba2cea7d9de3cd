"""One ingestion DAG per source in ``sources.yaml`` (or the file named by ROSETTA_SOURCES_FILE).

Adding a source to that file adds its DAG to the Airflow UI at the next parse.
"""

from __future__ import annotations

from pathlib import Path

from rosetta.orchestration.dag_factory import build_source_dags
from rosetta.orchestration.sources import sources_file_path

globals().update(build_source_dags(sources_file_path(Path(__file__).resolve().parent.parent / "sources.yaml")))
