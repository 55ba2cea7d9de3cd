"""Feature definitions: entities and feature views, as a repository declares them (``features.yaml``).

An **entity** is what features describe and how rows are joined to it: a sample, a study, a series,
a video, a device, each with its join keys.  A **feature view** is a set of features of one entity
from one source: the embeddings of one modality by one encoder, aligned image-text pairs, or
metadata columns.  It says its features' types, the embedding dimension, how long a value stays
valid (``ttl``) and where the values come from.

Every view has a **version**: a hash of everything that changes its values (entities, kind, source,
modality, encoder, dimension, features, and their types).  Changing any of them, the encoder above
all, makes a new version beside the old one; ``ttl``, ``description``, ``owner`` and ``tags`` are
metadata and keep the version.  Values are stored per version (offline files, Qdrant collections),
so a new encoder never overwrites what the old one produced.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from rosetta.core.config import StrictModel, validate_config
from rosetta.core.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FeatureType = Literal["float32", "float64", "int64", "bool", "string", "timestamp", "embedding"]
ViewKind = Literal["embedding", "aligned_pairs", "metadata"]
Modality = Literal["image", "text", "video", "audio", "dicom"]


def _check_name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"name {value!r} must be lower case letters, digits and '_', starting with a letter")
    return value


#: An entity, feature or feature-view name (it names files, collections and columns).
Name = Annotated[str, AfterValidator(_check_name)]


class Entity(StrictModel):
    """What features describe: ``sample`` (one ingested record), ``study``, ``series``, ``video``, ``device``."""

    name: Name
    join_keys: tuple[str, ...] = Field(min_length=1)
    description: str = ""



class FeatureField(StrictModel):
    """One feature column of a view."""

    name: Name
    dtype: FeatureType
    description: str = ""



class EncoderRef(StrictModel):
    """The encoder that produces an embedding view: kind (``hf-mean-pool``, ``efficientnet-lite0``, ``hf``),
    a name, and the local model path (unset: the bundled weights of that kind).  ``revision``: the weights'
    sha256 when known; :func:`feature_store.registry.resolve_encoder` fills it in from the files.
    ``precision``: the reduced precision the vectors are made in (``int8``, ``fp16``, ``bf16``; unset: fp32),
    whose vectors differ from fp32's and so make another version."""

    kind: Literal["hf-mean-pool", "efficientnet-lite0", "hf"]
    name: str
    path: str | None = None
    revision: str | None = None
    precision: Literal["fp16", "bf16", "int8"] | None = None

    def made(self, identity: dict[str, Any]) -> bool:
        """Whether an embedding stamped with this encoder identity (``EncoderIdentity.as_payload()``) is this
        encoder's: the same weights (sha256 revision) in the same precision."""
        key = str(identity.get("key", ""))
        precision = key.rpartition("+")[2] if "+" in key else None
        return bool(self.revision) and identity.get("revision") == self.revision and precision == self.precision


class FeatureView(StrictModel):
    """A versioned set of features of one entity from one source (see the module docstring)."""

    name: Name
    entities: tuple[str, ...] = Field(min_length=1)
    kind: ViewKind
    source: str = Field(min_length=1, description="a source or alignment name from sources.yaml")
    modality: Modality | None = None
    encoder: EncoderRef | None = None
    dimension: int | None = Field(default=None, ge=1, le=65536)
    features: tuple[FeatureField, ...] = ()
    ttl: timedelta | None = None
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureView:
        if self.kind == "embedding":
            missing = [f for f in ("modality", "encoder", "dimension") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"embedding view {self.name!r} needs {', '.join(missing)}")
        elif self.encoder is not None or self.dimension is not None:
            raise ValueError(f"{self.kind} view {self.name!r} has no encoder or dimension (only embedding views do)")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature view {self.name!r} names a feature twice")
        if self.ttl is not None and self.ttl <= timedelta(0):
            raise ValueError(f"feature view {self.name!r}: ttl must be positive (leave it unset for no expiry)")
        return self

    @property
    def version(self) -> str:
        """``v`` + 12 hex digits of the sha256 of what determines the values (see the module docstring)."""
        identity = self.model_dump(mode="json", include={"entities", "kind", "source", "modality", "encoder",
                                                         "dimension", "features"})
        if identity["encoder"] is not None and identity["encoder"]["precision"] is None:
            del identity["encoder"]["precision"]  # fp32: the versions from before precision was a field
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"v{digest[:12]}"

    @property
    def versioned_name(self) -> str:
        """``name@version``: the name of this version's collection, offline dataset and Asset."""
        return f"{self.name}@{self.version}"


class FeatureDefinitions(StrictModel):
    """A repository's definitions: what ``rosetta features apply`` makes the registry hold."""

    entities: tuple[Entity, ...] = ()
    feature_views: tuple[FeatureView, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> FeatureDefinitions:
        entity_names = [e.name for e in self.entities]
        view_names = [v.name for v in self.feature_views]
        for kind, names in (("entity", entity_names), ("feature view", view_names)):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{kind} {', '.join(map(repr, twice))} defined twice")
        for view in self.feature_views:
            unknown = [e for e in view.entities if e not in entity_names]
            if unknown:
                raise ValueError(f"feature view {view.name!r} names entity {', '.join(map(repr, unknown))}, which "
                                 f"is not defined (entities: {', '.join(entity_names) or 'none'})")
        return self


def load_definitions(path: str | Path) -> FeatureDefinitions:
    """Read and validate a definitions file (YAML); ConfigError naming the file and the problem."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no feature definitions file at {file}; create it (see features.yaml in the repository) "
                          "or pass --file", setting="features_file")
    try:
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}", setting="features_file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must be a mapping with 'entities' and 'feature_views'", setting="features_file")
    return validate_config(FeatureDefinitions, raw, where=str(file))
