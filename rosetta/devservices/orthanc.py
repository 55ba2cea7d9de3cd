"""Start a throw-away Orthanc DICOM server (REST, DICOMweb plugin, DIMSE) on free loopback ports.

Used by the DICOM connector tests and anyone who wants a local PACS::

    with Orthanc(data_dir, modalities={"rosetta": ("ROSETTA", "127.0.0.1", 11112)}) as pacs:
        pacs.upload(Path("CT_small.dcm").read_bytes())
        print(pacs.dicomweb_url, pacs.dicom_port, pacs.ae_title)

Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` (Orthanc 1.10.1, DICOMweb plugin 1.7).
HTTP needs basic auth (``username``/``password``); any AE title may C-ECHO/C-FIND/C-GET/C-MOVE/C-STORE.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rosetta.devservices.ports import free_port_block, stop_process_group

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL_HINT = "apt-get install -y orthanc orthanc-dicomweb"


class Orthanc:
    """One Orthanc process with its own storage folder; HTTP on ``http_port``, DICOM on ``dicom_port``.

    ``modalities`` maps an Orthanc modality id to ``(AE title, host, port)``: the peers Orthanc may
    C-MOVE to or C-STORE to (``POST /modalities/{id}/store``).
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, ae_title: str = "ORTHANC",
                 modalities: dict[str, tuple[str, str, int]] | None = None, username: str = "rosetta",
                 password: str | None = None, start_timeout_s: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.ae_title = ae_title
        self.modalities = dict(modalities or {})
        self.username = username
        self.password = password or secrets.token_hex(12)
        self.start_timeout_s = start_timeout_s
        self.http_port = 0
        self.dicom_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REST API root, e.g. ``http://127.0.0.1:20000``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return self.username, self.password

    def config(self) -> dict[str, Any]:
        """The Orthanc configuration this server runs with."""
        storage = str(self.data_dir / "storage")
        return {
            "Name": f"rosetta-{self.http_port}", "StorageDirectory": storage, "IndexDirectory": storage,
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
            "StableAge": 1, "SaveJobs": False,
        }

    def start(self) -> Orthanc:
        if not Path(ORTHANC_BINARY).exists():
            raise RuntimeError(f"Orthanc not found at {ORTHANC_BINARY}: {INSTALL_HINT}")
        if not Path(DICOMWEB_PLUGIN).exists():
            raise RuntimeError(f"Orthanc DICOMweb plugin not found at {DICOMWEB_PLUGIN}: {INSTALL_HINT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        base = free_port_block(2)
        self.http_port, self.dicom_port = base, base + 1
        config_path = self.data_dir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.data_dir / "orthanc.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen([ORTHANC_BINARY, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.data_dir, start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | str | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.data_dir}/orthanc.log")
            try:
                response = httpx.get(f"{self.url}/system", auth=self.auth, timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:  # not up yet
                last = exc
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc not ready after {self.start_timeout_s}s: {last}")

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store one DICOM file through ``POST /instances``; Orthanc's answer (``ID``, ``Status``...)."""
        import httpx

        response = httpx.post(f"{self.url}/instances", content=data, auth=self.auth, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def send_to_modality(self, modality: str, orthanc_ids: list[str]) -> dict[str, Any]:
        """C-STORE the given Orthanc resources to ``modality`` (``POST /modalities/{id}/store``)."""
        import httpx

        response = httpx.post(f"{self.url}/modalities/{modality}/store", json={"Resources": orthanc_ids,
                                                                                "Synchronous": True},
                              auth=self.auth, timeout=60)
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process_group(self.process)
        self.process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
