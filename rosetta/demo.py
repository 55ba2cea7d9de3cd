"""``rosetta demo``: the main job on embedded defaults.

Runs the ingestion DAG through Airflow (``airflow dags test``, a project-local
``AIRFLOW_HOME`` with SQLite) over the bundled sample photos, then prints what
it stored and a feature lookup.  Everything lives under the project folder:
``.airflow/`` (Airflow) and ``.rosetta/`` (objects, manifest, Qdrant).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

DAG_ID = "rosetta_ingest_images"
DEMO_SOURCE = "demo_photos"


def project_dir() -> Path:
    """The checkout this package runs from (where ``dags/`` and ``airflow.cfg`` are), else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "dags").is_dir() and (here / "airflow.cfg").is_file() else Path.cwd()


def local_airflow_env(root: Path) -> dict[str, str]:
    """Environment for a project-local Airflow (SQLite under ``.airflow/``); existing values win."""
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or root / ".airflow")
    airflow_home.mkdir(parents=True, exist_ok=True)
    secret_file = airflow_home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(64))
        secret_file.chmod(0o600)
    defaults = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONFIG": str(root / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "ROSETTA_HOME": str(root / ".rosetta"),
        "ROSETTA_SOURCE_NAME": DEMO_SOURCE,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    return {**defaults, **{k: v for k, v in os.environ.items() if v}}


def _airflow(args: list[str], env: dict[str, str], log_path: Path) -> int:
    airflow = str(Path(sys.executable).with_name("airflow"))
    with open(log_path, "ab") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n".encode())
        log.flush()
        return subprocess.call([airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_demo(runs: int = 1) -> int:
    root = project_dir()
    env = local_airflow_env(root)
    os.environ.update(env)  # the lookups below read the same settings
    from rosetta.pipelines.settings import default_source_dir
    from rosetta.samples import write_sample_folder

    inbox = default_source_dir()
    written, kept = write_sample_folder(inbox)
    print(f"sample photos: {inbox} ({written} files written, {kept} already there)")
    apply_feature_definitions(Path(os.environ.get("ROSETTA_FEATURES_FILE") or root / "features.yaml"))
    log_path = Path(env["ROSETTA_HOME"]) / "demo-airflow.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if _airflow(["db", "migrate"], env, log_path) != 0:
        print(f"airflow db migrate failed; last lines of {log_path}:\n{_tail(log_path)}", file=sys.stderr)
        return 1
    for number in range(1, runs + 1):
        print(f"\n== run {number}: airflow dags test {DAG_ID} (log: {log_path})")
        conf = json.dumps({"source_dir": str(inbox), "source_name": DEMO_SOURCE})
        if _airflow(["dags", "test", DAG_ID, "--conf", conf], env, log_path) != 0:
            print(f"the DAG run failed; last lines of {log_path}:\n{_tail(log_path)}", file=sys.stderr)
            return 1
        if not print_run_report():
            return 1
    print_lookup()
    return 0


def apply_feature_definitions(path: Path) -> None:
    """Make the registry hold the project's feature views (as ``rosetta features apply``), so the DAG writes
    their values; a definition that would be removed is kept (that needs ``rosetta features apply --yes``)."""
    from feature_store import FeatureStore
    from feature_store.registry import RemovalNotConfirmed
    from schemas.features import load_definitions

    if not path.is_file():
        print(f"no feature definitions at {path}: the DAG writes no feature views")
        return
    with FeatureStore.from_env() as fs:
        try:
            plan = fs.registry.apply(load_definitions(path))
        except RemovalNotConfirmed as exc:
            print(f"feature definitions not applied: {exc}")
            return
        views = ", ".join(v.versioned_name for v in fs.registry.views())
    print(f"feature views ({'applied' if plan.has_changes else 'unchanged'}): {views}")


def print_run_report() -> bool:
    from feature_store import FeatureStore
    from rosetta.pipelines.ingest import latest_summary

    with FeatureStore.from_env() as fs:
        summary = latest_summary(fs.objects)
    if summary is None:
        print("the DAG finished but wrote no run summary", file=sys.stderr)
        return False
    _report(summary)
    return summary.get("run_state", "success") == "success"


def _report(s: dict[str, Any]) -> None:
    print(f"run {s['run_id']}  (source {s['source']}, ingest time {s['ingest_time']})")
    print(f"  new items listed:  {s['items']}")
    print(f"  new records:       {s['new_records']}   unchanged: {s['unchanged_records']}   "
          f"quarantined: {s['quarantined']}")
    print(f"  objects written:   {s['objects_written']} ({s['bytes_written'] / 1e6:.2f} MB) -> {s['object_store']}")
    print(f"  manifest rows:     {s['manifest_rows']}")
    print(f"  vectors written:   {s['points_written']} (new points: {s['points_added']}, "
          f"total: {s['points_total']}) -> {s['vector_store']}")
    for q in s.get("quarantine_reasons", []):
        print(f"  quarantined {q['source_id']}: {q['reason']}")
    if s["new_records"] == 0 and s["objects_written"] == 0 and s["points_added"] == 0:
        print("  nothing new stored: no file changed since the last committed run")


def print_lookup() -> None:
    from feature_store import FeatureStore
    from rosetta.core.errors import ConfigError
    from rosetta.pipelines.settings import encoder_configs_from_env
    from transforms.encoders import load_text_encoder

    ids = [f"{DEMO_SOURCE}/chelsea", f"{DEMO_SOURCE}/astronaut"]
    print(f"\n== feature lookup: FeatureStore.get_online_features({ids})")
    with FeatureStore.from_env() as fs:
        for sample_id, features in fs.get_online_features(ids).items():
            if features is None:
                print(f"  {sample_id}: not found")
                continue
            dims = ", ".join(f"{m}: {len(v)}-d by {features.encoders[m].get('key')}"
                             for m, v in sorted(features.vectors.items()))
            print(f"  {sample_id}: {dims}")
            print(f"    caption: {features.payload.get('text')}")
            print(f"    image:   {features.payload.get('image_uri')}")
        query = "a cat"
        print(f"\n== similarity search over captions: {query!r}")
        text_config, _ = encoder_configs_from_env()
        for hit in fs.search_text(query, load_text_encoder(text_config), limit=3):
            print(f"  {hit.score:.3f}  {hit.sample_id}: {hit.payload.get('text')}")
        view = "text_embedding_minilm"
        print(f"\n== feature view search: FeatureStore.search_view({view!r}, {query!r})")
        try:
            for point in fs.search_view(view, query, limit=3):
                print(f"  {point.score or 0.0:.3f}  {point.payload.get('sample_id')} "
                      f"(event time {point.payload.get('event_time')})")
        except ConfigError as exc:
            print(f"  not served: {exc}")
