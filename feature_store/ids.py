"""Deterministic identifiers for points in the vector store."""

from __future__ import annotations

from rosetta.core.hashing import stable_uuid


def point_id(sample_id: str, modality: str, encoder_key: str) -> str:
    """uuid5 of (sample identity, modality, encoder identity).

    The same sample embedded by the same encoder always lands on the same
    point, so re-running never adds one; a new encoder gives new points.
    """
    return stable_uuid("point", sample_id, modality, encoder_key)
