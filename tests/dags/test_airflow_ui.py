"""The Airflow UI as a person sees it: headless Chromium opens the DAG list of a real deployment and finds
Rosetta's DAGs in the page the UI rendered (the React app, its API calls included)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.slow]

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=20000"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: run 'make system-deps' (installs Debian's chromium)"
    return found


def test_the_ui_lists_the_dags(tmp_path: Path) -> None:
    from rosetta.devservices.airflow import AirflowDeployment, drop_postgres_database

    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  line_cams:\n    connector: image_folder\n    options: {root: /nonexistent}\n")
    database = f"rosetta_airflow_ui_{secrets.token_hex(4)}"
    airflow = AirflowDeployment(tmp_path / "airflow", database_url=f"{POSTGRES}/{database}", refresh_interval_s=5,
                                all_admins=True, env={"ROSETTA_SOURCES_FILE": str(sources),
                                                      "ROSETTA_HOME": str(tmp_path / "home")})
    try:
        with airflow:
            airflow.wait_for_dags(["rosetta_source_line_cams", "rosetta_ingest_images"])
            browser = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
            page = subprocess.run([*browser, "--dump-dom", f"{airflow.url}/dags"], capture_output=True, text=True,
                                  timeout=180)
            shot = subprocess.run([*browser, f"--screenshot={tmp_path / 'dags.png'}", f"{airflow.url}/dags"],
                                  capture_output=True, text=True, timeout=180)
    finally:
        drop_postgres_database(f"{POSTGRES}/{database}")
    assert page.returncode == 0, page.stderr[-2000:]
    assert "rosetta_source_line_cams" in page.stdout and "rosetta_ingest_images" in page.stdout, page.stdout[-3000:]
    assert shot.returncode == 0 and (tmp_path / "dags.png").stat().st_size > 10_000
