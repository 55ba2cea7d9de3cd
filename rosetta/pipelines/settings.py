"""Settings of the image ingestion pipeline, read from the environment and DAG params."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from feature_store.config import FeatureStoreConfig, rosetta_home
from rosetta.core.config import StrictModel, env, validate_config
from transforms.encoders.config import ImageEncoderConfig, TextEncoderConfig

#: Airflow maps at most 1,024 task instances by default; stay well below it.
MAX_BATCHES = 512
#: The DICOM connectors: their DAGs track series completeness and their records pass the DICOM metadata gate.
DICOM_CONNECTORS = frozenset({"dicom_files", "dicomweb", "dicom_dimse"})


class GatePolicies(StrictModel):
    """What a failed quality gate of each ingestion stage does: ``block`` stops the run before anything of it
    is committed (the next run redoes it), ``warn`` records the failure in the run summary and goes on.  Every
    gate's full Great Expectations result is stored under ``quality/<source>/<stage>/`` either way.  The DICOM
    metadata gate warns by default: real archives hold instances without a series UID or modality, which are
    still worth keeping; set it to ``block`` where every instance must be complete."""

    raw_manifest: Literal["block", "warn"] = "block"
    dicom_metadata: Literal["block", "warn"] = "warn"  # archives hold odd instances; block where yours must not
    embeddings: Literal["block", "warn"] = "block"


class IngestSettings(StrictModel):
    """Everything one ingestion run needs: which connector with which options, where to store, how to embed.

    ``options`` are validated against the connector's own config class when the
    connector is built (see :func:`connectors.sdk.load_connector`).
    """

    connector: str = "image_folder"
    options: dict[str, Any]
    feature_store: FeatureStoreConfig
    text_encoder: TextEncoderConfig = TextEncoderConfig()
    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    batch_size: int = Field(default=64, ge=1, le=10_000)
    concurrency: int = Field(default=8, ge=1, le=64)
    gates: GatePolicies = GatePolicies()


def encoder_configs_from_env() -> tuple[TextEncoderConfig, ImageEncoderConfig]:
    """``ROSETTA_TEXT_ENCODER_PATH``, ``ROSETTA_IMAGE_ENCODER_KIND``/``_PATH``, ``ROSETTA_ENCODER_DEVICE``,
    ``ROSETTA_ENCODER_PRECISION`` (auto, fp32, fp16, bf16, int8)."""
    device = env("ROSETTA_ENCODER_DEVICE", "auto")
    precision = env("ROSETTA_ENCODER_PRECISION", "auto")
    text: dict[str, Any] = {"device": device, "precision": precision}
    if env("ROSETTA_TEXT_ENCODER_PATH"):
        text["path"] = Path(env("ROSETTA_TEXT_ENCODER_PATH") or "")
    image: dict[str, Any] = {"device": device, "precision": precision,
                             "kind": env("ROSETTA_IMAGE_ENCODER_KIND", "efficientnet-lite0")}
    if env("ROSETTA_IMAGE_ENCODER_PATH"):
        image["path"] = Path(env("ROSETTA_IMAGE_ENCODER_PATH") or "")
    return (validate_config(TextEncoderConfig, text, where="ROSETTA_TEXT_ENCODER_*"),
            validate_config(ImageEncoderConfig, image, where="ROSETTA_IMAGE_ENCODER_*"))


def default_source_dir() -> Path:
    return Path(env("ROSETTA_SOURCE_DIR") or rosetta_home() / "inbox")


def ingest_settings(*, connector: str = "image_folder", options: dict[str, Any] | None = None,
                    batch_size: int = 64, concurrency: int = 8, gates: GatePolicies | None = None,
                    s3_options: dict[str, Any] | None = None) -> IngestSettings:
    """Settings from the environment plus the source's connector options."""
    text, image = encoder_configs_from_env()
    return IngestSettings(connector=connector, options=dict(options or {}),
                          feature_store=FeatureStoreConfig.from_env(s3_options=s3_options),
                          text_encoder=text, image_encoder=image, batch_size=batch_size, concurrency=concurrency,
                          gates=gates or GatePolicies())


def image_folder_options(*, source_dir: str | Path | None = None, source_name: str = "image_folder",
                         timezone: str = "UTC") -> dict[str, Any]:
    """Options of the ``image_folder`` connector, with the folder defaulting to ``ROSETTA_SOURCE_DIR``."""
    return {"root": str(source_dir) if source_dir else str(default_source_dir()), "source": source_name,
            "timezone": timezone}
