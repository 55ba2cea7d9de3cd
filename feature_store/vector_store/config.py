"""Qdrant connection settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from rosetta.core.config import StrictModel


class VectorStoreConfig(StrictModel):
    """Where the vectors live: ``url`` (a Qdrant server or cluster) or ``path`` (local mode).

    Local mode is single-process: only one process may open a path at a time,
    so pipelines write it from one task.  Use a server URL for parallel writers.
    """

    url: str | None = None
    path: Path | None = None
    api_key: SecretStr | None = None
    collection: str = Field(default="rosetta_samples", pattern=r"^[A-Za-z0-9_-]+$")
    timeout_s: int = Field(default=30, ge=1)
    upsert_batch: int = Field(default=256, ge=1)
    engine: Literal["client", "edge"] = "client"  # edge: the embedded Qdrant engine (qdrant-edge-py), path only

    @model_validator(mode="after")
    def _one_location(self) -> VectorStoreConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("set exactly one of url (Qdrant server) or path (local mode)")
        if self.engine == "edge" and self.path is None:
            raise ValueError("engine 'edge' (embedded Qdrant) needs path, not url")
        return self

    @property
    def location(self) -> str:
        return self.url or f"local:{self.path}"
