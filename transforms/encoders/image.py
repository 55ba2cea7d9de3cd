"""Image encoders: EfficientNet-Lite0 (bundled ImageNet weights) and any local HF vision/CLIP model."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.records import EncoderIdentity
from transforms.encoders.base import (
    ImageEncoder,
    apply_precision,
    batched,
    l2_normalise,
    pick_device,
    prefetched,
    weights_revision,
)
from transforms.encoders.config import ImageEncoderConfig

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb_image(item: Any) -> Image.Image:
    """A PIL RGB image from a PIL image or encoded bytes."""
    from PIL import Image

    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, (bytes, bytearray, memoryview)):
        image = Image.open(io.BytesIO(bytes(item)))
    else:
        raise TypeError(f"cannot encode {type(item).__name__} as an image; pass PIL images or encoded bytes")
    return image.convert("RGB") if image.mode != "RGB" else image


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0 pooled features (1280-d) from the final conv block.

    Preprocessing: shorter side to 256 (bicubic), centre crop 224, ImageNet
    mean/std; features are global-average-pooled and L2-normalised.
    """

    resize = 256
    crop = 224

    def __init__(self, path: Path, config: ImageEncoderConfig) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        self.config = config
        self.device = pick_device(config.device)
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            from rosetta.core.errors import ConfigError

            raise ConfigError(f"{path} is not an EfficientNet-Lite0 state dict (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); set ROSETTA_IMAGE_ENCODER_PATH",
                              setting="ROSETTA_IMAGE_ENCODER_PATH")
        dimension = int(model._conv_head.out_channels)
        self.model, self.precision, self.dtype = apply_precision(model.to(self.device).eval(), config.precision,
                                                                 self.device)
        self.identity = EncoderIdentity(
            name=config.name or "efficientnet-lite0", modality="image", revision=weights_revision(path),
            dimension=dimension,
            preprocessing=f"rgb;resize-short={self.resize}(bicubic);center-crop={self.crop};"
                          "imagenet-mean-std;global-avg-pool;l2-normalise"
                          + ("" if self.precision == "fp32" else f";precision={self.precision}"),
        )

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        import numpy as np
        import torch
        from PIL import Image

        w, h = image.size
        scale = self.resize / min(w, h)
        image = image.resize((max(self.crop, round(w * scale)), max(self.crop, round(h * scale))),
                             Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        mean = np.array(IMAGENET_MEAN, dtype=np.float32)
        std = np.array(IMAGENET_STD, dtype=np.float32)
        array = (np.asarray(image, dtype=np.float32) / np.float32(255.0) - mean) / std
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        import numpy as np
        import torch

        out = np.zeros((len(images), self.dimension), dtype=np.float32)
        def prepare(chunk: Sequence[Any]) -> torch.Tensor:
            return torch.stack([self._tensor(to_rgb_image(item)) for item in chunk])

        starts = range(0, len(images), self.config.batch_size)
        with torch.inference_mode():
            for (start, chunk), prepared in prefetched(zip(starts, batched(images, self.config.batch_size),
                                                           strict=True), lambda pair: prepare(pair[1])):
                batch = prepared.to(self.device, self.dtype)
                features = self.model.extract_features(batch).mean(dim=(2, 3))
                out[start:start + len(chunk)] = l2_normalise(features).cpu().numpy()
        return out


class HFImageEncoder(ImageEncoder):
    """Any local Hugging Face vision model directory.

    CLIP/SigLIP-style models use ``get_image_features`` (the joint embedding
    space); other vision models use ``pooler_output`` or the mean of the last
    hidden state.  Preprocessing is the directory's own image processor.
    """

    def __init__(self, path: Path, config: ImageEncoderConfig) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.config = config
        self.device = pick_device(config.device)
        hf_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True).to(self.device).eval()
        self.model, self.precision, self.dtype = apply_precision(model, config.precision, self.device)
        self.joint = hasattr(self.model, "get_image_features")
        if self.joint:
            dimension = int(getattr(hf_config, "projection_dim", 0) or hf_config.vision_config.hidden_size)
        else:
            dimension = int(getattr(hf_config, "hidden_size", 0) or hf_config.hidden_sizes[-1])
        self.identity = EncoderIdentity(
            name=config.name or f"{hf_config.model_type}:{path.name}", modality="image",
            revision=weights_revision(path), dimension=dimension,
            preprocessing=f"hf-image-processor({type(self.processor).__name__});"
                          f"{'image-features' if self.joint else 'pooled'};l2-normalise"
                          + ("" if self.precision == "fp32" else f";precision={self.precision}"),
        )

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        import numpy as np
        import torch

        out = np.zeros((len(images), self.dimension), dtype=np.float32)
        def prepare(pair: tuple[int, Sequence[Any]]) -> Any:
            return self.processor(images=[to_rgb_image(i) for i in pair[1]], return_tensors="pt")["pixel_values"]

        starts = range(0, len(images), self.config.batch_size)
        with torch.inference_mode():
            for (start, chunk), prepared in prefetched(zip(starts, batched(images, self.config.batch_size),
                                                           strict=True), prepare):
                pixels = prepared.to(self.device, self.dtype)
                if self.joint:
                    features = self.model.get_image_features(pixel_values=pixels)
                    if not isinstance(features, torch.Tensor):  # newer transformers return an output object
                        features = features.pooler_output
                else:
                    output = self.model(pixel_values=pixels)
                    pooled = getattr(output, "pooler_output", None)
                    features = pooled if pooled is not None else output.last_hidden_state.mean(dim=1)
                    features = features.flatten(1)
                out[start:start + len(chunk)] = l2_normalise(features).cpu().numpy()
        return out
