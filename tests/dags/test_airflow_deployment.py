"""The real deployment: Airflow's api-server, scheduler, dag-processor and triggerer (LocalExecutor) on the
PostgreSQL of this machine, driven through the REST API as a user's tooling would: the DAGs are listed, an
ingestion run triggered over REST succeeds, and the training DAG runs by itself because the ingestion run
updated the feature Assets it is scheduled on."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dags.helpers import apply_cam_views

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it receives (what a StatsD server would get)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.5)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while self.running:
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines += data.decode(errors="replace").splitlines()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def statsd() -> Any:
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture
def deployment(tmp_path: Path, photo_dir: Path, statsd: StatsdListener) -> Any:
    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig
    from rosetta.devservices.airflow import AirflowDeployment, drop_postgres_database

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  cams:\n    connector: image_folder\n    options: {root: '${TEST_PHOTO_DIR}'}\n"
                       "models:\n  cams_proj:\n    image_view: cam_images\n    text_view: cam_captions\n"
                       "    after: [cams]\n    holdout: 0.3\n    k: 2\n    epochs: 50\n")
    env = {"ROSETTA_SOURCES_FILE": str(sources), "TEST_PHOTO_DIR": str(photo_dir),
           "ROSETTA_OBJECT_STORE_URL": str(tmp_path / "store"), "ROSETTA_QDRANT_PATH": str(tmp_path / "qdrant"),
           "ROSETTA_HOME": str(tmp_path / "home"), "AIRFLOW__METRICS__STATSD_ON": "True",
           "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1", "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
           "AIRFLOW__METRICS__STATSD_PREFIX": "airflow"}
    store = FeatureStoreConfig.model_validate({"object_store": {"kind": "local", "root": tmp_path / "store"},
                                               "vector_store": {"path": tmp_path / "qdrant"}})
    with FeatureStore(store) as fs:
        apply_cam_views(fs)
    database = f"rosetta_airflow_test_{secrets.token_hex(4)}"
    airflow = AirflowDeployment(tmp_path / "airflow", database_url=f"{POSTGRES}/{database}", env=env,
                                refresh_interval_s=5)
    try:
        with airflow:
            yield airflow
    finally:
        drop_postgres_database(f"{POSTGRES}/{database}")


def test_rest_triggered_ingestion_starts_the_asset_scheduled_training(deployment: Any, tmp_path: Path,
                                                                      statsd: StatsdListener) -> None:
    dags = deployment.wait_for_dags(["rosetta_source_cams", "rosetta_train_cams_proj", "rosetta_ingest_images"])
    assert any(t["name"] == "training" for t in dags["rosetta_train_cams_proj"]["tags"])
    pools = {p["name"]: p["slots"] for p in deployment.api("GET", "/pools")["pools"]}
    assert pools["gpu"] == 1 and pools["io"] == 4
    deployment.unpause("rosetta_train_cams_proj")
    deployment.unpause("rosetta_source_cams")

    run = deployment.trigger("rosetta_source_cams")
    deployment.wait_for_run("rosetta_source_cams", run["dag_run_id"], timeout_s=600)
    tasks = deployment.task_instances("rosetta_source_cams", run["dag_run_id"])
    assert {t["task_id"] for t in tasks if t["state"] == "success"} >= {"commit", "write_features"}
    assert {t["pool"] for t in tasks if t["task_id"] == "embed_batch"} == {"gpu"}

    # run metrics through Airflow's StatsD backend, beside Airflow's own task metrics
    counters: dict[str, int] = {}
    for line in statsd.lines:
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        if kind.startswith("c") and name.startswith("airflow.rosetta.cams."):
            counters[name] = counters.get(name, 0) + int(float(value))
    assert counters["airflow.rosetta.cams.commit.new_records"] == 14
    assert counters["airflow.rosetta.cams.store_batch.bytes_written"] > 0
    assert counters["airflow.rosetta.cams.write_features.offline_rows"] == 28  # two views x 14 samples
    assert any(line.startswith("airflow.rosetta.cams.embed_batch.duration:") and line.endswith("|ms")
               for line in statsd.lines)
    assert any(line.startswith("airflow.ti.finish.") for line in statsd.lines)  # Airflow's own metrics too

    deadline = time.monotonic() + 300
    training: list[dict[str, Any]] = []
    while not training and time.monotonic() < deadline:
        training = deployment.runs("rosetta_train_cams_proj")
        time.sleep(2)
    assert training, "the training DAG was not triggered by the feature Assets"
    assert training[0]["run_type"] == "asset_triggered"
    finished = deployment.wait_for_run("rosetta_train_cams_proj", training[0]["dag_run_id"], timeout_s=600)
    assert finished["state"] == "success"
    assert list((tmp_path / "store" / "models").glob("*/*/model.pt"))
