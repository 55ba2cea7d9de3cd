"""Text and image encoders loaded from local paths only (never from a hub).

Each encoder stamps its vectors with an :class:`~schemas.records.EncoderIdentity`
(name, weights sha256, dimension, preprocessing).  torch and transformers are
imported when an encoder is loaded, not when this package is imported.
"""

from __future__ import annotations

from transforms.encoders.config import (
    ImageEncoderConfig,
    TextEncoderConfig,
    load_image_encoder,
    load_text_encoder,
)

__all__ = ["ImageEncoderConfig", "TextEncoderConfig", "load_image_encoder", "load_text_encoder"]
