"""Typed records and Arrow schemas shared by every layer of Rosetta."""

from __future__ import annotations

from schemas.records import (
    EncoderIdentity,
    ManifestEntry,
    ObjectRef,
    QuarantineEntry,
)

__all__ = ["EncoderIdentity", "ManifestEntry", "ObjectRef", "QuarantineEntry"]
