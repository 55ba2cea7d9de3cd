"""Real DAG runs (``dag.test()``): Airflow's task runner, XCom, dynamic mapping, against
SeaweedFS S3, Qdrant local mode and the real encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dags.helpers import asset_events

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "ingest_images.py"))
    assert bag.import_errors == {}
    return bag.get_dag("rosetta_ingest_images")


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, seaweedfs: Any, bucket_name: str, tmp_path: Path) -> str:
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", f"s3://{bucket_name}/rosetta")
    monkeypatch.setenv("ROSETTA_S3_ENDPOINT_URL", seaweedfs.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(tmp_path / "qdrant"))
    return bucket_name


def _task_states(run: Any) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def _xcom(run: Any, task_id: str) -> Any:
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def test_dag_run_ingests_then_second_run_stores_nothing(dag: Any, s3_env: str, small_photo_dir: Path,
                                                        seaweedfs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and endpoint come from an Airflow connection here (the env-var path is tested below)."""
    import json

    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("ROSETTA_S3_ENDPOINT_URL")
    monkeypatch.setenv("AIRFLOW_CONN_ROSETTA_TEST_S3", json.dumps({
        "conn_type": "aws", "login": seaweedfs.access_key, "password": seaweedfs.secret_key,
        "extra": {"endpoint_url": seaweedfs.endpoint_url, "region_name": "us-east-1"}}))
    monkeypatch.setenv("ROSETTA_AWS_CONN_ID", "rosetta_test_s3")

    conf = {"source_dir": str(small_photo_dir), "source_name": "dagtest", "batch_size": 2}
    first = dag.test(run_conf=conf)
    assert str(first.state) == "success", _task_states(first)
    states = _task_states(first)
    assert len(states["store_batch"]) == 2 and len(states["embed_batch"]) == 2  # mapped over 2 batches
    summary = _xcom(first, "commit")
    assert (summary["new_records"], summary["objects_written"], summary["points_added"]) == (4, 8, 8)
    assert summary["object_store"] == f"s3://{s3_env}/rosetta"
    gate = summary["gates"]["raw_manifest"]
    assert gate["success"] and gate["rows"] == 8 and gate["result_uri"].startswith(f"s3://{s3_env}/rosetta/quality/")
    assert gate["report_uri"] == gate["result_uri"].removesuffix(".json") + ".html"
    plan = _xcom(first, "plan")
    assert all(set(b) == {"batch", "plan_uri", "items", "label"} for b in plan)  # URIs and counts only

    second = dag.test(run_conf=conf)
    assert str(second.state) == "success", _task_states(second)
    summary = _xcom(second, "commit")
    assert (summary["items"], summary["new_records"]) == (0, 0)
    assert (summary["objects_written"], summary["points_written"], summary["points_total"]) == (0, 0, 8)

    from rosetta.orchestration.connections import s3_options_from_env_connection

    with FeatureStore(FeatureStoreConfig.from_env(s3_options=s3_options_from_env_connection())) as fs:
        assert fs.manifest.read().num_rows == 8
        assert len(list(fs.objects.list("objects/"))) == 8
        features = fs.get_online_features(["dagtest/rocket"])["dagtest/rocket"]
        assert features is not None and set(features.vectors) == {"image", "text"}


def test_missing_airflow_connection_is_a_config_error(monkeypatch: pytest.MonkeyPatch, airflow_db: None) -> None:
    from rosetta.core.errors import ConfigError
    from rosetta.orchestration.connections import s3_options_from_env_connection

    monkeypatch.setenv("ROSETTA_AWS_CONN_ID", "no_such_connection")
    with pytest.raises(ConfigError, match="ROSETTA_AWS_CONN_ID"):
        s3_options_from_env_connection()


def test_wrong_credentials_fail_the_check_task_without_retries(dag: Any, s3_env: str, small_photo_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    run = dag.test(run_conf={"source_dir": str(small_photo_dir), "source_name": "dagtest"})
    assert str(run.state) == "failed"
    check = next(ti for ti in run.get_task_instances() if ti.task_id == "check")
    assert str(check.state) == "failed" and check.try_number == 1
    assert all(str(ti.state) != "success" for ti in run.get_task_instances() if ti.task_id != "check")


def test_a_dag_generated_from_sources_yaml_runs(airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                small_photo_dir: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  line_cams:\n    connector: image_folder\n"
                       "    options: {root: '${TEST_PHOTO_DIR}', timezone: Europe/Berlin}\n")
    monkeypatch.setenv("ROSETTA_SOURCES_FILE", str(sources))
    monkeypatch.setenv("TEST_PHOTO_DIR", str(small_photo_dir))
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(tmp_path / "qdrant"))
    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig
    from schemas.features import FeatureDefinitions

    with FeatureStore(FeatureStoreConfig.from_env()) as fs:  # the source's feature views, as 'features apply' does
        fs.registry.apply(FeatureDefinitions.model_validate({
            "entities": [{"name": "sample", "join_keys": ["sample_id"]}],
            "feature_views": [
                {"name": "cam_captions", "entities": ["sample"], "kind": "embedding", "source": "line_cams",
                 "modality": "text", "dimension": 384,
                 "encoder": {"kind": "hf-mean-pool", "name": "all-MiniLM-L6-v2"}},
                {"name": "cam_meta", "entities": ["sample"], "kind": "metadata", "source": "line_cams",
                 "features": [{"name": "image_media_type", "dtype": "string"}]}]}))
    dag = DagBag(dag_folder=str(REPO / "dags" / "sources.py")).get_dag("rosetta_source_line_cams")
    run = dag.test()
    assert str(run.state) == "success", _task_states(run)
    summary = _xcom(run, "commit")
    assert (summary["source"], summary["connector"], summary["new_records"]) == ("line_cams", "image_folder", 4)
    assert summary["state"]["cursor"] > 0

    written = _xcom(run, "write_features")["views"]
    with FeatureStore(FeatureStoreConfig.from_env()) as fs:
        captions, meta = fs.registry.view("cam_captions"), fs.registry.view("cam_meta")
        assert written[captions.versioned_name]["offline_rows"] == 4
        assert written[captions.versioned_name]["online_points"] == 4
        assert written[meta.versioned_name]["offline_rows"] == 4
        hits = fs.search_view("cam_captions", "a rocket on the launch pad", limit=1)
        assert hits[0].payload["sample_id"] == "line_cams/rocket"
        assert fs.offline.read(meta, ["sample_id"]).num_rows == 4
    events = asset_events(f"rosetta://features/cam_captions/{captions.version}")
    assert [e.extra["offline_rows"] for e in events] == [4]


