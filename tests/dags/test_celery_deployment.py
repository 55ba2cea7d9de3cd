"""The Celery variant: the same DAGs under the CeleryExecutor with the Redis broker on this machine and two
workers, one per queue (``cpu``: the default; ``gpu``: encoder tasks).  Workers on other hosts run the same
command against the same broker and metadata DB; here both run on loopback."""

from __future__ import annotations

import random
import secrets
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def test_encoder_tasks_run_on_the_gpu_queue_worker_and_the_rest_on_the_cpu_worker(tmp_path: Path,
                                                                                  photo_dir: Path) -> None:
    import redis

    from rosetta.devservices.airflow import AirflowDeployment, drop_postgres_database

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  cams:\n    connector: image_folder\n    options: {root: '${TEST_PHOTO_DIR}'}\n"
                       "    batch_size: 7\n")
    redis_db = random.randrange(1, 16)
    env = {"ROSETTA_SOURCES_FILE": str(sources), "TEST_PHOTO_DIR": str(photo_dir),
           "ROSETTA_OBJECT_STORE_URL": str(tmp_path / "store"), "ROSETTA_QDRANT_PATH": str(tmp_path / "qdrant"),
           "ROSETTA_HOME": str(tmp_path / "home")}
    database = f"rosetta_airflow_celery_{secrets.token_hex(4)}"
    airflow = AirflowDeployment(tmp_path / "airflow", database_url=f"{POSTGRES}/{database}", env=env,
                                refresh_interval_s=5, executor="CeleryExecutor",
                                celery_workers={"cpu": "cpu", "gpu": "gpu"},
                                broker_url=f"redis://127.0.0.1:6379/{redis_db}")
    try:
        with airflow:
            assert {"worker-cpu", "worker-gpu"} <= set(airflow.processes)
            airflow.wait_for_dags(["rosetta_source_cams"])
            airflow.unpause("rosetta_source_cams")
            run = airflow.trigger("rosetta_source_cams")
            airflow.wait_for_run("rosetta_source_cams", run["dag_run_id"], timeout_s=600)
            tasks = airflow.task_instances("rosetta_source_cams", run["dag_run_id"])
    finally:
        drop_postgres_database(f"{POSTGRES}/{database}")
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    by_task: dict[str, set[tuple[str, str]]] = {}
    for t in tasks:
        by_task.setdefault(t["task_id"], set()).add((t["queue"], t["hostname"]))
    assert by_task["embed_batch"] == {("gpu", "gpu")}  # two mapped batches, both on the gpu worker
    for task_id in ("check", "plan", "store_batch", "write_vectors", "commit"):
        assert by_task[task_id] == {("cpu", "cpu")}, (task_id, by_task[task_id])
    assert sum(1 for t in tasks if t["task_id"] == "embed_batch") == 2
    assert all(t["state"] in ("success", "skipped") for t in tasks)
