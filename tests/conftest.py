"""Shared fixtures.  Airflow's environment is set before anything imports Airflow,
so no test ever touches ~/airflow; services are started per test session on free
loopback ports and torn down after."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="rosetta-tests-"))

os.environ.update({
    "AIRFLOW_HOME": str(_SESSION_DIR / "airflow"),
    "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ROSETTA_HOME": str(_SESSION_DIR / "rosetta-home"),
    "ROSETTA_TORCH_THREADS": "2",
    # DICOM is de-identified by default; a fresh secret per test session, as an operator would set one
    "ROSETTA_DEID_KEY": "rosetta-tests-" + secrets.token_hex(16),
})
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)
for var in ("ROSETTA_OBJECT_STORE_URL", "ROSETTA_QDRANT_URL", "ROSETTA_QDRANT_PATH", "ROSETTA_AWS_CONN_ID",
            "ROSETTA_SOURCE_DIR", "ROSETTA_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.pop(var, None)


from tests.dicom_network_fixtures import orthanc  # noqa: E402, F401 - session fixture: a real Orthanc PACS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def seaweedfs(session_dir: Path) -> Iterator[object]:
    """A real SeaweedFS S3 server for the whole session."""
    from rosetta.devservices.seaweedfs import SeaweedFS

    server = SeaweedFS(session_dir / "seaweedfs")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_options(seaweedfs: object) -> dict[str, object]:
    from pydantic import SecretStr

    return {"endpoint_url": seaweedfs.endpoint_url, "aws_access_key_id": seaweedfs.access_key,  # type: ignore[attr-defined]
            "aws_secret_access_key": SecretStr(seaweedfs.secret_key)}  # type: ignore[attr-defined]


@pytest.fixture
def bucket_name(request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    return f"t-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def photo_dir(session_dir: Path) -> Path:
    """The demo's real photos with their caption sidecars (read-only for tests: copy before changing)."""
    from rosetta.samples import write_sample_folder

    folder = session_dir / "photos"
    write_sample_folder(folder)
    return folder


@pytest.fixture
def small_photo_dir(tmp_path: Path, photo_dir: Path) -> Path:
    """Four real photos with captions, in a folder the test may change."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for stem in ("chelsea", "astronaut", "coffee", "rocket"):
        for path in photo_dir.glob(f"{stem}.*"):
            shutil.copyfile(path, folder / path.name)
    return folder
