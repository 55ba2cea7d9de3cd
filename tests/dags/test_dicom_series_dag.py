"""A DICOM source's DAG run declares complete series once and publishes them as an Asset event;
the series DAG, fed those events, does its work once per series."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from tests.dags.helpers import asset_events
from tests.dags.test_ingest_dag_run import REPO, _task_states, _xcom

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]




def test_series_complete_once_and_the_series_dag_runs_per_series(airflow_db: None, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from rosetta.orchestration import ingest_tasks

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):  # three studies, one series each
        shutil.copyfile(get_testdata_file(name, download=False) or "", scans / name)
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  ward_scans:\n    connector: dicom_files\n"
                       "    options: {root: '${TEST_SCANS}', series_quiet_period_s: 0, render: false}\n")
    monkeypatch.setenv("ROSETTA_SOURCES_FILE", str(sources))
    monkeypatch.setenv("TEST_SCANS", str(scans))
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(tmp_path / "qdrant"))
    bag = DagBag(dag_folder=str(REPO / "dags" / "sources.py"))
    dag, series_dag = bag.get_dag("rosetta_source_ward_scans"), bag.get_dag("rosetta_series_ward_scans")
    assert series_dag is not None and "complete_series" in dag.task_ids
    uri = "rosetta://dicom/ward_scans/series-complete"

    first = dag.test()
    assert str(first.state) == "success", _task_states(first)
    completed = _xcom(first, "complete_series")["series"]
    assert len(completed) == 3 and {s["reason"] for s in completed} == {"quiet-period"}
    [event] = asset_events(uri)
    assert [s["series_uid"] for s in event.extra["series"]] == [s["series_uid"] for s in completed]

    second = dag.test()  # nothing new: no completion, the task is skipped, no second event
    assert _task_states(second)["complete_series"] == ["skipped"]
    assert len(asset_events(uri)) == 1

    # The series DAG as the scheduler runs it: the triggering events in, one mapped task per series.
    class Context(dict[str, Any]):
        pass

    series = ingest_tasks.completed_series(Context(triggering_asset_events={uri: [event, event]}))
    assert [s["series_uid"] for s in series] == sorted(s["series_uid"] for s in completed)  # de-duplicated
    results = [ingest_tasks.summarize_series("ward_scans", s) for s in series]
    assert [r["instances"] for r in results] == [1, 1, 1]
    summary = json.loads(Path(results[0]["summary_uri"].removeprefix("file://")).read_text())
    assert summary["series_uid"] == series[0]["series_uid"] and summary["dicom_uris"]
    mapped = series_dag.get_task("summarize_series")
    assert mapped.map_index_template and series_dag.schedule is not None
