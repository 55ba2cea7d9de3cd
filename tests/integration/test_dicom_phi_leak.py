"""The PHI leak test: pydicom's whole test corpus through the real pipeline, from files and through Orthanc,
then every stored object, manifest/catalog/ledger row, run summary, plan, Qdrant payload and log line is
searched for the originals' patient names, IDs, birth dates, accession numbers and UIDs.  None may appear.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.uid import UID

from feature_store.config import FeatureStoreConfig
from feature_store.object_store import object_store_config_from_url
from feature_store.vector_store import VectorStoreConfig
from rosetta.devservices.orthanc import Orthanc
from rosetta.pipelines.ingest import IngestPipeline, RunContext
from rosetta.pipelines.settings import IngestSettings
from transforms.dicom.deid import CLASS_UID_TAGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDENTIFYING = {"PatientName": 5, "OtherPatientNames": 5, "PatientID": 4, "OtherPatientIDs": 4,
               "AccessionNumber": 4, "PatientBirthDate": 8, "IssuerOfPatientID": 6}
NOT_PHI = {"ANONYMOUS", "ANONYMIZED", "Anonymized", "Anonymous", "NONE", "UNKNOWN"}


def _corpus() -> list[Path]:
    return sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())


def _walk(ds: Any, found: set[str]) -> None:
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot convert is no value to find either
            continue
        if elem.VR == "SQ":
            for item in elem.value or ():
                _walk(item, found)
            continue
        values = elem.value if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue" \
            else [elem.value]
        for value in values:
            text = str(value).strip(" \0") if value is not None else ""
            if elem.keyword in IDENTIFYING and len(text) >= IDENTIFYING[elem.keyword] and text not in NOT_PHI:
                found.add(text)
                if elem.VR == "PN":
                    found.update(part for part in text.replace("=", "^").split("^") if len(part) >= 5
                                 and part not in NOT_PHI)
            elif elem.VR == "UI" and int(tag) not in CLASS_UID_TAGS and tag.group != 0x0002 and len(text) >= 10 \
                    and UID(text).name == text:  # an instance UID, not a registered one
                found.add(text)


def _identifiers(files: list[Path]) -> set[str]:
    """Identifying values of the corpus; software identifiers (Implementation Class UIDs) are not PHI."""
    found: set[str] = set()
    software: set[str] = set()
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
                _walk(ds, found)
                meta = getattr(ds, "file_meta", None) or {}
                media_uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
                if len(media_uid) >= 10:
                    found.add(media_uid)
                software.add(str(meta.get("ImplementationClassUID", "") or ""))
            except Exception:
                continue
    return found - software


def _settings(tmp_path: Path, connector: str, options: dict[str, Any]) -> IngestSettings:
    return IngestSettings(
        connector=connector, options={"max_frames": 2, **options},
        feature_store=FeatureStoreConfig(
            object_store=object_store_config_from_url(str(tmp_path / "store")),
            vector_store=VectorStoreConfig(path=tmp_path / "qdrant", collection="samples")),
        batch_size=16, concurrency=4)


def _run(settings: IngestSettings, run_id: str) -> dict[str, Any]:
    run = RunContext(run_id=run_id, ingest_time=datetime(2026, 12, 1, tzinfo=UTC))
    with IngestPipeline(settings) as pipeline:
        pipeline.check()
        batches = pipeline.plan(run)
        stored = [pipeline.store_batch(run, b) for b in batches]
        embedded = [pipeline.embed_batch(run, s) for s in stored]
        vectors = pipeline.write_vectors(run, embedded)
        summary = pipeline.commit(run, stored, vectors, plans=batches)
        summary["series"] = pipeline.complete_series(run)
        return summary


def _texts_of_store(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every stored file as bytes, Parquet files decoded instead (their pages are compressed and encoded, so
    raw bytes neither show their text nor mean anything: a dictionary index holds the bytes "0123456789")."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix != ".parquet":
            yield str(path.relative_to(root)), data
        else:
            table = pq.read_table(io.BytesIO(data))
            rows = json.dumps(table.to_pylist(), default=str)
            meta = json.dumps({k.decode(): v.decode("utf-8", "replace")
                               for k, v in (table.schema.metadata or {}).items()})
            yield f"{path.relative_to(root)} (rows)", (rows + meta).encode()


def _qdrant_payloads(settings: IngestSettings) -> str:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(settings.feature_store.vector_store.path))
    try:
        points, payloads, offset = 0, [], None
        while True:
            batch, offset = client.scroll("samples", limit=256, offset=offset, with_payload=True, with_vectors=False)
            payloads += [p.payload for p in batch]
            points += len(batch)
            if offset is None:
                break
        assert points > 50, points
        return json.dumps(payloads)
    finally:
        client.close()


def _leaks(identifiers: set[str], haystacks: Iterator[tuple[str, bytes]]) -> dict[str, list[str]]:
    """Where each identifier occurs as a whole value: not inside a longer number or UID (an organisation's
    UID root such as pydicom's 1.2.826.0.1.3680043.8.498 is the prefix of every UID it makes, no leak)."""
    needles = {value: re.compile(rb"(?<![0-9.])" + re.escape(value.encode("utf-8", "surrogateescape")) +
                                 rb"(?!\.?[0-9])") for value in identifiers}
    leaks: dict[str, list[str]] = {}
    for where, data in haystacks:
        for value, needle in needles.items():
            if needle.search(data):
                leaks.setdefault(where, []).append(value)
    return leaks


def test_no_identifier_of_the_corpus_reaches_storage_qdrant_or_logs(tmp_path: Path, orthanc: Orthanc,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    files = _corpus()
    identifiers = _identifiers(files)
    assert len(identifiers) > 150  # names, IDs, birth dates, accession numbers and UIDs of ~190 files
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in files:  # flat; a DICOMDIR would make the folder a file-set of its own references
        if not path.name.upper().startswith("DICOMDIR"):
            shutil.copyfile(path, folder / path.name)
    accepted = 0
    for path in files:  # Orthanc keeps what parses as DICOM; the rest it refuses with HTTP 400
        response = httpx.post(f"{orthanc.url}/instances", content=path.read_bytes(), auth=orthanc.auth, timeout=30)
        accepted += response.status_code == 200
    assert accepted > 80

    caplog.set_level(logging.DEBUG)
    caplog.clear()  # what this test said while reading the originals is not the pipeline's log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline's own handling is under test, not pydicom's warnings
        from_files = _run(_settings(tmp_path, "dicom_files", {"root": str(folder), "source": "corpus_files"}),
                          "phi-files")
        from_pacs = _run(_settings(tmp_path, "dicomweb", {
            "source": "corpus_pacs", "url": orthanc.dicomweb_url, "auth": "basic", "username": orthanc.username,
            "password": orthanc.password, "page_size": 100}), "phi-pacs")
    assert from_files["new_records"] > 80 and from_files["quarantined"] > 10  # broken files are quarantined
    assert from_pacs["new_records"] > 80 and from_pacs["points_written"] > 40
    assert from_files["series"]["tracked"]
    gate = from_files["gates"]["dicom_metadata"]  # pydicom's corpus holds instances without series UID or modality
    assert (gate["success"], gate["policy"], gate["rows"]) == (False, "warn", from_files["new_records"])
    assert from_files["gates"]["raw_manifest"]["success"] and "dicom_metadata" in from_pacs["gates"]

    settings = _settings(tmp_path, "dicom_files", {"root": str(folder), "source": "corpus_files"})
    store_root = tmp_path / "store"
    assert (store_root / "manifest").is_dir() and (store_root / "quarantine").is_dir()
    logs = "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records)
    assert "quarantined" in logs  # the log was captured: there is something to search
    haystacks = [*_texts_of_store(store_root), ("qdrant payloads", _qdrant_payloads(settings).encode()),
                 ("logs", logs.encode()), ("summaries", json.dumps([from_files, from_pacs]).encode())]
    assert _leaks(identifiers, iter(haystacks)) == {}

