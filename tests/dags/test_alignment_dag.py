"""An alignment DAG from sources.yaml, run for real: DICOM images paired with the patient's reports by time
(both de-identified the same way), gated by Great Expectations, published as an Asset; a late report
re-aligns incrementally; a failing gate with policy block stops the publication."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from tests.dags.helpers import asset_events
from tests.dags.test_ingest_dag_run import REPO, _task_states, _xcom
from tests.fixtures_clinical import oru

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

SOURCES = """
sources:
  ct:
    connector: dicom_files
    options: {{root: '{scans}', render: false}}
  reports:
    connector: clinical_reports
    options: {{root: '{reports}', pseudonymize_keys: true, timezone: America/New_York}}
alignments:
  ct_reports:
    description: CT images with the report written after them
    left: {{source: ct}}
    right: {{source: reports}}
    by: [patient_id]
    strategy: forward
    tolerance_s: {tolerance}
    gate: {{policy: {policy}, min_share_within_tolerance: 1.0, max_abs_offset_s: {bound}}}
"""


def _bag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, bound: float = 10 * 86400,
         policy: str = "block") -> Any:
    from airflow.dag_processing.dagbag import DagBag

    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES.format(scans=tmp_path / "scans", reports=tmp_path / "reports", tolerance=3 * 86400,
                                      bound=bound, policy=policy))
    monkeypatch.setenv("ROSETTA_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(tmp_path / "qdrant"))
    return DagBag(dag_folder=str(REPO / "dags" / "sources.py"))


def test_dicom_images_pair_with_reports_incrementally_behind_the_gate(airflow_db: None, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "reports").mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm", download=False) or "", tmp_path / "scans" / "ct.dcm")
    # CT_small: patient 1CT1, acquired 1997-04-30 11:29:36 at -0500; the report two days later, New York time
    (tmp_path / "reports" / "ris.hl7").write_bytes(oru("R1", patient="1CT1", accession="A1",
                                                       observed="19970502090000"))
    bag = _bag(tmp_path, monkeypatch)
    align_dag = bag.get_dag("rosetta_align_ct_reports")
    assert {a.uri for a in align_dag.schedule.objects} == {"rosetta://records/ct", "rosetta://records/reports"}
    for dag_id in ("rosetta_source_ct", "rosetta_source_reports"):
        run = bag.get_dag(dag_id).test()
        assert str(run.state) == "success", _task_states(run)

    first = align_dag.test()
    assert str(first.state) == "success", _task_states(first)
    published = _xcom(first, "publish")
    assert (published["pairs"], published["new_left"], published["new_right"]) == (1, 1, 1)
    assert published["gate"]["success"] and Path(published["gate_uri"].removeprefix("file://")).is_file()
    [event] = asset_events("rosetta://aligned/ct_reports")
    assert event.extra["pairs"] == 1

    # a later report of the same patient: incremental, and the earlier pair stays the nearest-after one
    (tmp_path / "reports" / "late.hl7").write_bytes(oru("R2", patient="1CT1", accession="A2",
                                                        observed="19970503090000"))
    assert str(bag.get_dag("rosetta_source_reports").test().state) == "success"
    second = align_dag.test()
    again = _xcom(second, "publish")
    assert (again["pairs"], again["new_left"], again["new_right"]) == (1, 0, 1)

    from feature_store.config import FeatureStoreConfig
    from rosetta.orchestration.sources import load_alignments
    from rosetta.pipelines.alignment import AlignmentPipeline

    spec = load_alignments(tmp_path / "sources.yaml")["ct_reports"]
    with AlignmentPipeline("ct_reports", spec, FeatureStoreConfig.from_env()) as pipeline:
        table = pipeline.read()
    assert table is not None
    [pair] = table.to_pylist()
    assert pair["left_id"] == "ct.dcm" and pair["right_id"] == "hl7/R1"
    assert 1 < pair["offset"].total_seconds() / 86400 < 2  # acquisition to report, both shifted alike
    assert pair["patient_id"] != "1CT1"  # the pseudonym both sides share


def test_a_failing_gate_blocks_publication_or_warns(airflow_db: None, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "reports").mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm", download=False) or "", tmp_path / "scans" / "ct.dcm")
    (tmp_path / "reports" / "ris.hl7").write_bytes(oru("R1", patient="1CT1", accession="A1",
                                                       observed="19970502090000"))
    bag = _bag(tmp_path, monkeypatch, bound=3600)  # the pair is ~1.9 days apart: out of the gate's bounds
    for dag_id in ("rosetta_source_ct", "rosetta_source_reports"):
        assert str(bag.get_dag(dag_id).test().state) == "success"
    blocked = bag.get_dag("rosetta_align_ct_reports").test()
    states = _task_states(blocked)
    assert states["align"] == ["success"] and states["publish"] == ["failed"]
    assert not list((tmp_path / "store" / "aligned").rglob("part-*.parquet"))  # nothing published...
    assert len(list((tmp_path / "store" / "aligned").rglob("gates/*.json"))) == 1  # ...but the result is kept
    warned = _bag(tmp_path, monkeypatch, bound=3600, policy="warn").get_dag("rosetta_align_ct_reports").test()
    assert _task_states(warned)["publish"] == ["success"]
    summary = _xcom(warned, "publish")
    assert not summary["gate"]["success"] and summary["gate"]["failed"] == [
        "expect_column_values_to_be_between(offset_s)"]
