"""A real Airflow deployment on this machine: api-server, scheduler, dag-processor and triggerer.

What ``make airflow`` (``rosetta airflow``) runs, and what the deployment tests start::

    with AirflowDeployment(home, database_url="postgresql+psycopg2://postgres@127.0.0.1:5432/rosetta_airflow") as af:
        token = af.token()
        run = af.trigger("rosetta_source_demo_photos")
        af.wait_for_run("rosetta_source_demo_photos", run["dag_run_id"])

- metadata DB: the PostgreSQL given (the database is created if missing), migrated with ``airflow db migrate``;
- executor: ``LocalExecutor`` (one machine), or ``CeleryExecutor`` with the Redis broker and workers per queue
  (``cpu``: everything by default; ``gpu``: encoder and training tasks), which on other hosts run the same
  ``airflow celery worker --queues ...`` against the same broker and metadata DB;
- the API server (UI + REST ``/api/v2``) on loopback only; users of Airflow's simple auth manager (``admin``), whose
  generated password is in ``<home>/passwords.json``; a JWT secret generated once under ``<home>``;
- the Rosetta pools ``gpu`` (encoder tasks) and ``io`` (source and object-store I/O) created with their slots.

Every process runs in its own session and is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from rosetta.devservices.ports import free_port_block, stop_process_group

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: pool -> (slots, description)
POOLS = {"gpu": (1, "Encoder tasks (models on the accelerator or the CPU): one batch at a time per slot"),
         "io": (4, "Source and object-store I/O tasks")}


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers started here: their name (``ROSETTA_WORKER_NAME``), else the
    host's name as Airflow's default gives it."""
    import socket

    return os.environ.get("ROSETTA_WORKER_NAME") or socket.getfqdn()


@contextmanager
def _server(url: str) -> Iterator[tuple[Any, str]]:
    """An autocommit cursor on the ``postgres`` database of the server of a ``postgresql+psycopg2://user@host:port/db``
    URL, and the URL's database name."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    connection = psycopg2.connect(host=parsed.host, port=parsed.port or 5432, user=parsed.username,
                                  password=parsed.password, dbname="postgres")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            yield cursor, str(parsed.database)
    finally:
        connection.close()


def ensure_postgres_database(url: str) -> None:
    """Create the database of a PostgreSQL URL if it does not exist."""
    with _server(url) as (cursor, database):
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{database}"')


def drop_postgres_database(url: str) -> None:
    """Drop the database of a PostgreSQL URL (and end its sessions)."""
    with _server(url) as (cursor, database):
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


class AirflowDeployment:
    """Airflow's four services on loopback with a PostgreSQL metadata DB (see the module docstring)."""

    def __init__(self, home: str | os.PathLike[str], *, database_url: str, port: int | None = None,
                 executor: str = "LocalExecutor", env: dict[str, str] | None = None,
                 dags_folder: Path | None = None, refresh_interval_s: int = 30,
                 celery_workers: dict[str, str] | None = None,
                 broker_url: str = "redis://127.0.0.1:6379/0", all_admins: bool = False) -> None:
        """``celery_workers`` (CeleryExecutor): worker name -> comma-separated queues, each started as its own
        ``airflow celery worker`` (on other hosts in production: the same command with the same settings).
        ``all_admins``: no login (Airflow's simple auth manager treats everyone as admin): for a throw-away
        deployment on loopback only, such as a browser test."""
        self.home = Path(home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port_block(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        secret_file = self.home / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(64))
            secret_file.chmod(0o600)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or REPO / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(refresh_interval_s),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false",
            **(env or {}),
        }
        self.all_admins = all_admins
        if all_admins:
            self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
        if executor == "CeleryExecutor":
            from sqlalchemy.engine import make_url

            backend = make_url(database_url).set(drivername="postgresql")
            self.env.update({
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + backend.render_as_string(hide_password=False),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            })
        self.celery_workers = dict(celery_workers or {}) if executor == "CeleryExecutor" else {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command against this deployment; its output (RuntimeError on failure)."""
        binary = str(Path(sys.executable).with_name("airflow"))
        result = subprocess.run([binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result.stdout

    def start(self, *, timeout_s: float = 180) -> AirflowDeployment:
        """Migrate the DB, create the pools, start the four services and wait until the API answers."""
        if self.database_url.startswith("postgresql"):
            ensure_postgres_database(self.database_url)
        self.airflow("db", "migrate")
        for pool, (slots, description) in POOLS.items():
            self.airflow("pools", "set", pool, str(slots), description)
        binary = str(Path(sys.executable).with_name("airflow"))
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        commands = {component: [binary, component] for component in COMPONENTS}
        environments = {component: self.env for component in COMPONENTS}
        for name, queues in self.celery_workers.items():
            commands[f"worker-{name}"] = [binary, "celery", "worker", "--queues", queues, "--celery-hostname",
                                          f"{name}@%h", "--concurrency", "1"]
            # task instances record the worker's name as their hostname (one host runs both workers here)
            environments[f"worker-{name}"] = {**self.env, "ROSETTA_WORKER_NAME": name,
                                              "AIRFLOW__CORE__HOSTNAME_CALLABLE":
                                                  "rosetta.devservices.airflow.worker_hostname"}
        for component, command in commands.items():
            with open(logs / f"{component}.log", "ab") as log:
                self.processes[component] = subprocess.Popen(
                    command, env=environments[component], stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {component} exited with {process.returncode}; see "
                                       f"{logs / (component + '.log')}:\n{self.log_tail(component)}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                    health = json.loads(response.read())
                if health.get("metadatabase", {}).get("status") == "healthy":
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the Airflow API server did not answer on {self.url} within {timeout_s:.0f} s:\n"
                           f"{self.log_tail('api-server')}")

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.home / "logs" / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process_group(process)
        self.processes.clear()

    def __enter__(self) -> AirflowDeployment:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- REST API ----------------------------------------------------------------------------------------
    def password(self, user: str = "admin") -> str:
        return str(json.loads((self.home / "passwords.json").read_text())[user])

    def token(self) -> str:
        """A JWT for the REST API (``POST /auth/token`` with the admin user)."""
        if self._token is None and self.all_admins:
            with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as response:
                self._token = str(json.loads(response.read())["access_token"])
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.password()}).encode()
            request = urllib.request.Request(f"{self.url}/auth/token", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = str(json.loads(response.read())["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/api/v2<path>`` with the token; the decoded JSON answer."""
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} /api/v2{path}: HTTP {error.code}: {error.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def wait_for_dags(self, dag_ids: list[str], *, timeout_s: float = 180) -> dict[str, Any]:
        """Wait until the dag-processor has parsed these DAGs; their API records."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = {d["dag_id"]: d for d in self.api("GET", "/dags?limit=1000")["dags"]}
            if all(d in found for d in dag_ids):
                return found
            if time.monotonic() > deadline:
                errors = self.api("GET", "/importErrors")
                raise RuntimeError(f"DAGs {sorted(set(dag_ids) - set(found))} not parsed within {timeout_s:.0f} s; "
                                   f"import errors: {errors}\n{self.log_tail('dag-processor')}")
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Trigger a run now; the DAG run record (``dag_run_id``...)."""
        from datetime import UTC, datetime

        return dict(self.api("POST", f"/dags/{dag_id}/dagRuns",
                             {"logical_date": datetime.now(UTC).isoformat(), "conf": conf or {}}))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=100")["dag_runs"])

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout_s: float = 600) -> dict[str, Any]:
        """Poll until the run finishes; its record.  RuntimeError with the task states when it does not succeed."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(2)
        if run["state"] != "success":
            tasks = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]
            states = {(t["task_id"], t.get("map_index")): t["state"] for t in tasks}
            raise RuntimeError(f"{dag_id} run {run_id} ended {run['state']}: {states}\n{self.log_tail('scheduler')}")
        return dict(run)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"])
