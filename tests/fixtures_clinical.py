"""Realistic clinical report payloads for the clinical_reports connector tests."""

from __future__ import annotations

import base64
import json
from typing import Any


def fhir_report(rid: str, *, patient: str = "p-001", accession: str = "ACC-1001",
                issued: str = "2026-03-04T10:15:00+01:00", text: str = "No acute findings.",
                presented: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": rid, "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "ACSN"}]}, "value": accession}],
        "effectiveDateTime": "2026-03-04T09:00:00+01:00", "issued": issued, "conclusion": text,
    }
    if presented is not None:
        resource["presentedForm"] = [{"contentType": "text/plain",
                                      "data": base64.b64encode(presented.encode()).decode()}]
    return resource


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


def oru(control_id: str, *, patient: str = "p-002", accession: str = "ACC-2002",
        observed: str = "20260304101500", lines: tuple[str, ...] = ("CHEST X-RAY", "Lungs are clear.")) -> bytes:
    segments = [
        f"MSH|^~\\&|RIS|HOSP|ROSETTA|LAB|20260304102000||ORU^R01|{control_id}|P|2.5",
        f"PID|1||{patient}^^^HOSP^MR||DOE^JANE||19700101|F",
        f"OBR|1|ORD-9|{accession}|71020^CHEST XRAY|||{observed}|||||||||||||||{observed}|||F",
        *[f"OBX|{i + 1}|TX|GDT^REPORT||{line}||||||F" for i, line in enumerate(lines)],
    ]
    return "\r".join(segments).encode() + b"\r"
