"""DAGs generated from sources.yaml: adding a source adds its DAG; a bad file is a clear import error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dags

REPO = Path(__file__).resolve().parents[2]
SOURCES_DAG = REPO / "dags" / "sources.py"


def _bag(monkeypatch: pytest.MonkeyPatch, sources: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("ROSETTA_SOURCES_FILE", str(sources))
    return DagBag(dag_folder=str(SOURCES_DAG))


def test_each_source_gets_a_dag_with_its_schedule(airflow_db: None, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("""
sources:
  cameras:
    connector: image_folder
    description: Line camera shots
    schedule: "@hourly"
    tags: [factory]
    options: {root: /data/cameras}
  scans:
    connector: image_folder
    options: {root: /data/scans}
""")
    bag = _bag(monkeypatch, sources)
    assert bag.import_errors == {}
    assert {"rosetta_source_cameras", "rosetta_source_scans"} <= set(bag.dag_ids)
    cameras = bag.get_dag("rosetta_source_cameras")
    assert cameras.description == "Line camera shots" and "factory" in cameras.tags
    assert "image_folder" in cameras.tags and "0 * * * *" in repr(cameras.timetable)
    assert type(bag.get_dag("rosetta_source_scans").timetable).__name__ == "NullTimetable"

    sources.write_text("sources:\n  scans:\n    connector: image_folder\n    options: {root: /data/scans}\n")
    assert "rosetta_source_cameras" not in _bag(monkeypatch, sources).dag_ids


def test_a_bad_sources_file_is_an_import_error_naming_it(airflow_db: None, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  cams:\n    connector: image_folder\n    shedule: '@daily'\n")
    bag = _bag(monkeypatch, sources)
    [message] = bag.import_errors.values()
    assert str(sources) in message and "shedule" in message


def test_env_references_expand_with_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rosetta.core.errors import ConfigError
    from rosetta.orchestration.sources import expand_env, load_sources, resolved_options

    monkeypatch.setenv("DATA_ROOT", "/mnt/data")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert expand_env({"a": ["${DATA_ROOT}/x", "${NOT_SET_ANYWHERE:-fallback}"]}) == {"a": ["/mnt/data/x", "fallback"]}
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        expand_env("${NOT_SET_ANYWHERE}")
    sources = tmp_path / "s.yaml"
    sources.write_text("sources:\n  cams:\n    connector: image_folder\n    options: {root: '${DATA_ROOT}/cams'}\n")
    spec = load_sources(sources)["cams"]
    assert resolved_options("cams", spec) == {"root": "/mnt/data/cams", "source": "cams"}
    assert load_sources(tmp_path / "missing.yaml") == {}
