"""The model job as Airflow runs it: an ingestion DAG writes feature views, the training DAG (generated from the
sources file's ``models``) trains from them, writes the model with its lineage, and skips when nothing is new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dags.helpers import apply_cam_views

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_training_dag_trains_from_the_features_the_ingestion_dag_wrote(airflow_db: None, photo_dir: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  cams:\n    connector: image_folder\n    options: {root: '${TEST_PHOTO_DIR}'}\n"
                       "models:\n  cams_proj:\n    image_view: cam_images\n    text_view: cam_captions\n"
                       "    after: [cams]\n    holdout: 0.3\n    k: 2\n    epochs: 50\n")
    monkeypatch.setenv("ROSETTA_SOURCES_FILE", str(sources))
    monkeypatch.setenv("TEST_PHOTO_DIR", str(photo_dir))
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(tmp_path / "qdrant"))
    with FeatureStore(FeatureStoreConfig.from_env()) as fs:
        apply_cam_views(fs)
    bag = DagBag(dag_folder=str(REPO / "dags" / "sources.py"))
    assert bag.import_errors == {}
    training = bag.get_dag("rosetta_train_cams_proj")
    assert "training" in training.tags and training.doc_md and "InfoNCE" in training.doc_md
    assert type(training.timetable).__name__ == "AssetTriggeredTimetable"

    ingest = bag.get_dag("rosetta_source_cams").test()
    assert str(ingest.state) == "success", _states(ingest)

    first = training.test()
    assert _states(first) == {"train": "success"}
    summary = next(ti for ti in first.get_task_instances()).xcom_pull(task_ids="train")
    assert summary["mode"] == "full" and summary["pairs"] == 14
    assert summary["train_pairs"] >= 2 and summary["held_out_pairs"] >= 1
    with FeatureStore(FeatureStoreConfig.from_env()) as fs:
        assert fs.objects.exists(summary["model_key"])
        assert summary["feature_views"] == [fs.registry.view("cam_images").versioned_name,
                                            fs.registry.view("cam_captions").versioned_name]

    second = training.test()  # auto mode: a model exists and no pair is new
    assert str(second.state) == "success" and _states(second) == {"train": "skipped"}
