"""End to end under a real Airflow: the sample pipeline from files to a trained model, with the time per stage.

    .venv/bin/python benchmarks/bench_e2e.py

1. **DAG parse time**: Airflow's own ``DagBag`` loads every file of ``dags/`` in a fresh process and reports the
   seconds per file (what the dag-processor spends on it).  Target: under 0.5 s each.
2. A real deployment (:class:`rosetta.devservices.airflow.AirflowDeployment`: api-server, scheduler,
   dag-processor, triggerer, LocalExecutor, a fresh PostgreSQL database) with the repository's ``sources.yaml``
   and ``features.yaml``, the demo photos in a temporary ``ROSETTA_HOME``.
3. Over the REST API: trigger ``rosetta_source_demo_photos`` (plan, store, embed, Qdrant, commit, feature views
   offline + online), then wait for ``rosetta_train_demo_projection``, which the feature Assets trigger.
4. From the task instances: wall time per stage (first start to last end of a task's mapped instances), each
   run's wall time, the sum of its task run times, and the scheduler's overhead as the issue defines it (run wall
   time minus the sum of task run times; negative when mapped instances overlap) and on the critical path (run
   wall time minus the stages' walls, the time no task of the run was running); the delay from the ingestion run's
   end to the training run's start (Asset event to DAG run).

Sources in the sample set: the demo photos (images + captions).  Alignment needs two time-stamped sources
(video + subtitles, DICOM + reports, camera + machine logs), which the sample set does not configure; the
alignment DAGs are exercised by ``tests/dags/test_alignment_dag.py`` and measured by ``bench_alignment.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"

PARSE_CODE = """
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": {k: str(v)[:300] for k, v in bag.import_errors.items()},
                  "files": [{"file": os.path.basename(s.file), "seconds": s.duration.total_seconds()
                             if hasattr(s.duration, "total_seconds") else float(s.duration), "dags": s.dag_num,
                             "tasks": s.task_num} for s in bag.dagbag_stats]}))
"""


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def parse_times(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", PARSE_CODE, str(REPO / "dags")], env=env, capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run_figures(airflow: Any, dag_id: str, run: dict[str, Any]) -> dict[str, Any]:
    tasks = airflow.task_instances(dag_id, run["dag_run_id"])
    stages: dict[str, dict[str, Any]] = {}
    for t in tasks:
        stage = stages.setdefault(t["task_id"], {"instances": 0, "task_seconds": 0.0, "start": None, "end": None,
                                                 "states": set()})
        stage["instances"] += 1
        stage["states"].add(t["state"])
        stage["task_seconds"] += _seconds(t.get("start_date"), t.get("end_date"))
        if t.get("start_date") and (stage["start"] is None or t["start_date"] < stage["start"]):
            stage["start"] = t["start_date"]
        if t.get("end_date") and (stage["end"] is None or t["end_date"] > stage["end"]):
            stage["end"] = t["end_date"]
    wall = _seconds(run.get("start_date"), run.get("end_date"))
    task_sum = sum(s["task_seconds"] for s in stages.values())
    stage_walls = {name: _seconds(s["start"], s["end"]) for name, s in stages.items()}
    ordered = sorted(stages, key=lambda n: stages[n]["start"] or "")
    return {
        "run_id": run["dag_run_id"], "run_type": run.get("run_type"), "state": run["state"], "wall_s": round(wall, 2),
        "task_seconds_sum": round(task_sum, 2), "scheduler_overhead_s": round(wall - task_sum, 2),
        "idle_on_critical_path_s": round(wall - sum(stage_walls.values()), 2),
        "stages": {name: {"instances": stages[name]["instances"], "wall_s": round(stage_walls[name], 2),
                          "task_seconds": round(stages[name]["task_seconds"], 2),
                          "states": sorted(stages[name]["states"])} for name in ordered},
        "start": run.get("start_date"), "end": run.get("end_date"),
    }


def main() -> int:
    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig
    from rosetta.devservices.airflow import AirflowDeployment, drop_postgres_database
    from rosetta.samples import write_sample_folder
    from schemas.features import load_definitions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--parse-target", type=float, default=0.5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rosetta-e2e-"))
    env = {"ROSETTA_HOME": str(work / "home"), "ROSETTA_OBJECT_STORE_URL": str(work / "home" / "store"),
           "ROSETTA_QDRANT_PATH": str(work / "home" / "qdrant"), "ROSETTA_SOURCES_FILE": str(REPO / "sources.yaml")}
    write_sample_folder(work / "home" / "inbox")
    os.environ.update(env)
    with FeatureStore(FeatureStoreConfig.from_env()) as fs:
        fs.registry.apply(load_definitions(REPO / "features.yaml"))

    figures: dict[str, Any] = {}
    airflow_env = {**os.environ, "AIRFLOW_HOME": str(work / "airflow-parse"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{work / 'parse.db'}"}
    parsed = parse_times(airflow_env)
    figures["parse"] = parsed
    slowest = max(f["seconds"] for f in parsed["files"])
    for f in parsed["files"]:
        print(f"parse {f['file']:<22} {f['seconds']:.3f} s  ({f['dags']} DAGs, {f['tasks']} tasks)", flush=True)

    database = f"rosetta_airflow_bench_{secrets.token_hex(4)}"
    airflow = AirflowDeployment(work / "airflow", database_url=f"{POSTGRES}/{database}", env=env, refresh_interval_s=5)
    ingest_id, train_id = "rosetta_source_demo_photos", "rosetta_train_demo_projection"
    try:
        started = time.perf_counter()
        with airflow:
            figures["startup_s"] = round(time.perf_counter() - started, 1)
            airflow.wait_for_dags([ingest_id, train_id])
            airflow.unpause(train_id)
            airflow.unpause(ingest_id)
            clock = time.perf_counter()
            run = airflow.trigger(ingest_id)
            ingest = airflow.wait_for_run(ingest_id, run["dag_run_id"], timeout_s=1200)
            training_runs: list[dict[str, Any]] = []
            while not training_runs and time.perf_counter() - clock < 1500:
                training_runs = airflow.runs(train_id)
                time.sleep(1)
            if not training_runs:
                raise RuntimeError("the training DAG was not triggered by the feature Assets")
            training = airflow.wait_for_run(train_id, training_runs[0]["dag_run_id"], timeout_s=1200)
            figures["end_to_end_s"] = round(time.perf_counter() - clock, 1)
            figures["ingest"] = run_figures(airflow, ingest_id, ingest)
            figures["training"] = run_figures(airflow, train_id, training)
            figures["training"]["summary"] = {
                k: v for k, v in (airflow.api("GET", f"/dags/{train_id}/dagRuns/{training['dag_run_id']}/taskInstances/"
                                               "train/xcomEntries/return_value").get("value") or {}).items()
                if k in ("mode", "pairs", "train_pairs", "held_out_pairs", "recall@5", "recall@5_before",
                         "feature_views", "model_uri")}
            figures["asset_trigger_delay_s"] = round(_seconds(ingest["end_date"], training["start_date"]), 2)
    finally:
        drop_postgres_database(f"{POSTGRES}/{database}")

    for name in ("ingest", "training"):
        f = figures[name]
        print(f"\n{name}: run {f['wall_s']} s wall ({f['run_type']}), task time {f['task_seconds_sum']} s, "
              f"scheduler overhead {f['scheduler_overhead_s']} s (wall - sum of task times), "
              f"{f['idle_on_critical_path_s']} s with no task running")
        for stage, s in f["stages"].items():
            print(f"  {stage:<16} x{s['instances']:<3} wall {s['wall_s']:>7.2f} s   "
                  f"task time {s['task_seconds']:>7.2f} s")
    print(f"\nAsset event -> training run start: {figures['asset_trigger_delay_s']} s; trigger to model: "
          f"{figures['end_to_end_s']} s; services up in {figures['startup_s']} s")
    print(f"training: {figures['training']['summary']}")
    ok = not parsed["errors"] and slowest < args.parse_target
    print(f"slowest DAG file parses in {slowest:.3f} s (target < {args.parse_target} s): "
          f"{'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=sorted))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
