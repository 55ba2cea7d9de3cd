"""Storing a quality gate's outcome beside the data it judged, and applying the stage's policy."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rosetta.core.hashing import safe_name

if TYPE_CHECKING:
    from feature_store.object_store import ObjectStore
    from transforms.quality.gates import GateResult

log = logging.getLogger(__name__)


def record_gate(store: ObjectStore, source: str, run_key: str, stage: str, gate: GateResult,
                policy: str) -> dict[str, Any]:
    """Store a gate's full validation result at ``quality/<source>/<stage>/<run>.json`` and a readable report
    beside it (``.html``); apply ``policy``
    (``block`` raises :class:`~transforms.quality.gates.QualityGateError`); the summary with the result's URI."""
    from transforms.quality.gates import QualityGateError

    key = f"quality/{safe_name(source)}/{stage}/{run_key}.json"
    store.write_bytes(key, gate.validation_json.encode(), media_type="application/json")
    report = key.removesuffix(".json") + ".html"
    store.write_bytes(report, gate.html(f"{source}: {stage}, run {run_key}").encode(), media_type="text/html")
    summary = {**gate.summary(), "policy": policy, "result_uri": store.uri_for(key),
               "report_uri": store.uri_for(report)}
    if not gate.success:
        if policy == "block":
            raise QualityGateError(f"source {source!r}: the {stage} quality gate failed ({', '.join(summary['failed'])}"
                                   f") on {gate.rows} rows; nothing of this run was committed; the validation result "
                                   f"is at {summary['result_uri']}; fix the input, or set gates.{stage}: warn")
        log.warning("source %s: the %s quality gate failed (%s); policy warn: going on; result at %s", source, stage,
                    ", ".join(summary["failed"]), summary["result_uri"])
    return summary
