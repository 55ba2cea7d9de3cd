"""DAG files parse without errors and import nothing heavy (the scheduler parses them constantly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = ["torch", "transformers", "numpy", "pandas", "pyarrow", "PIL", "boto3", "botocore", "qdrant_client",
         "great_expectations", "skimage", "sentence_transformers"]


def test_dagbag_has_no_import_errors(airflow_db: None) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "rosetta_ingest_images" in bag.dag_ids
    dag = bag.get_dag("rosetta_ingest_images")
    assert dag.doc_md and "rosetta" in dag.tags and dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks} == {"check", "plan", "store_batch", "embed_batch", "write_vectors",
                                              "commit", "write_features"}
    assert all(t.retries >= 1 for t in dag.tasks)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_nothing_heavy(dag_file: Path) -> None:
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagmod', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_cli_start_up_imports_nothing_heavy() -> None:
    code = ("import sys, json; import rosetta.cli as c; c.build_parser(); "
            f"print(json.dumps([m for m in {[*HEAVY, 'airflow', 'pydantic']!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_feature_store_imports_without_airflow() -> None:
    code = ("import sys, json; import feature_store, feature_store.store, rosetta.pipelines.ingest, connectors.sdk; "
            "print(json.dumps([m for m in ('airflow', 'torch', 'pyarrow', 'boto3', 'qdrant_client') "
            "if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
