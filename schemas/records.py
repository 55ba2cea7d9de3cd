"""Rosetta's records as plain frozen dataclasses (no heavy imports).

Every time field is a tz-aware UTC ``datetime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Where one raw object lives in the object store.

    ``key`` is content-addressed (``<prefix>/sha256/ab/cdef...``); ``uri`` is the
    full address (``s3://bucket/key`` or ``file:///root/key``).  ``created`` is
    True when this call wrote the object and False when it was already there.
    """

    key: str
    uri: str
    sha256: str
    size_bytes: int
    media_type: str
    created: bool = False


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One row of the object manifest: one raw object of one sample.

    ``role`` says what the object is to the sample (``image``, ``caption``).
    ``event_time`` is when the thing happened at the source (UTC);
    ``ingest_time`` is when Rosetta took it in (the run's data interval end, UTC).
    """

    sample_id: str
    source: str
    source_id: str
    role: str
    key: str
    uri: str
    sha256: str
    size_bytes: int
    media_type: str
    event_time: datetime
    ingest_time: datetime
    run_id: str

    def as_row(self) -> dict[str, Any]:
        """A flat dict of the fields (shallow: values are immutable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A record that could not be used, kept with the reason.

    ``uri``/``sha256`` point at a copy of the raw bytes in the object store when
    there were bytes to keep, so nothing is lost.
    """

    source: str
    source_id: str
    reason: str
    stage: str
    uri: str | None
    sha256: str | None
    size_bytes: int | None
    ingest_time: datetime
    run_id: str

    def as_row(self) -> dict[str, Any]:
        """A flat dict of the fields (shallow: values are immutable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class EncoderIdentity:
    """Who produced a vector: stamped on every embedding.

    ``revision`` is the sha256 of the weight files, so two installs of the same
    weights agree and any change to them is a new identity.  ``preprocessing``
    describes the input pipeline (resize, normalisation, tokenizer, pooling).
    """

    name: str
    modality: str
    revision: str
    dimension: int
    preprocessing: str

    @property
    def key(self) -> str:
        """Short stable identity, e.g. ``all-MiniLM-L6-v2@1a2b3c4d5e6f`` (``...+int8`` for a reduced precision,
        whose vectors differ: they are other points and another feature-view version)."""
        precision = self.preprocessing.partition(";precision=")[2].split(";")[0]
        return f"{self.name}@{self.revision[:12]}" + (f"+{precision}" if precision else "")

    def as_payload(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


@dataclass(frozen=True, slots=True)
class RawObject:
    """One raw object of a record: bytes, what it is to the record (``role``) and its media type."""

    role: str
    data: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What every connector hands over: raw objects + metadata + event time (UTC) + stable source id.

    ``source_id`` is stable across runs (a path, an object key, a primary key,
    a message id) so re-ingesting the same thing lands on the same identity.
    ``keys`` are entity keys for alignment and lookups (``patient_id``,
    ``accession``, ``device_id``, ``video_id``...).  ``text`` is the record's
    text for text-only or paired records (caption, report, subtitle cue).
    """

    source: str
    source_id: str
    event_time: datetime
    objects: tuple[RawObject, ...] = ()
    text: str | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_time_origin: str = "source"

    @property
    def sample_id(self) -> str:
        return f"{self.source}/{self.source_id}"

    def object(self, role: str) -> RawObject | None:
        return next((o for o in self.objects if o.role == role), None)
