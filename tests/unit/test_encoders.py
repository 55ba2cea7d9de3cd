"""Encoders load real weights from local paths (the bundled MiniLM and EfficientNet-Lite0)
and a Hugging Face CLIP directory saved to disk (a tiny random one, through the users' path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rosetta.core.errors import ConfigError
from transforms.encoders import ImageEncoderConfig, TextEncoderConfig, load_image_encoder, load_text_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text_encoder():  # type: ignore[no-untyped-def]
    return load_text_encoder(TextEncoderConfig(batch_size=2))


@pytest.fixture(scope="module")
def image_encoder():  # type: ignore[no-untyped-def]
    return load_image_encoder(ImageEncoderConfig(batch_size=2))


def test_minilm_vectors_are_unit_length_and_meaningful(text_encoder) -> None:  # type: ignore[no-untyped-def]
    identity = text_encoder.identity
    assert (identity.name, identity.modality, identity.dimension) == ("all-MiniLM-L6-v2", "text", 384)
    assert len(identity.revision) == 64 and "mean-pool" in identity.preprocessing
    texts = ["a cat lying on a sofa", "an astronaut in a spacesuit", "a kitten sleeping on a couch"]
    vectors = text_encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 2] > sims[0, 1] + 0.2  # cat ~ kitten, far from astronaut


def test_text_batching_does_not_change_results(text_encoder) -> None:  # type: ignore[no-untyped-def]
    texts = ["short", "a considerably longer sentence about a red rocket on a pad", "mid length text"]
    one_by_one = np.stack([text_encoder.encode([t])[0] for t in texts])
    assert np.allclose(text_encoder.encode(texts), one_by_one, atol=1e-5)
    assert text_encoder.encode([]).shape == (0, 384)


def test_efficientnet_embeds_real_photos(image_encoder, photo_dir: Path) -> None:  # type: ignore[no-untyped-def]
    identity = image_encoder.identity
    assert (identity.name, identity.dimension) == ("efficientnet-lite0", 1280)
    images = [(photo_dir / n).read_bytes() for n in ("chelsea.png", "coffee.png", "camera.png")]
    vectors = image_encoder.encode(images)
    assert vectors.shape == (3, 1280)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # grayscale input works, and batching (size 2) gives the same vectors as one at a time
    assert np.allclose(image_encoder.encode(images[2:])[0], vectors[2], atol=1e-4)
    # the same picture, slightly resized, stays closer than a different picture
    cat = Image.open(photo_dir / "chelsea.png")
    resized = image_encoder.encode([cat.resize((cat.width - 20, cat.height - 16))])[0]
    assert resized @ vectors[0] > vectors[1] @ vectors[0]


def test_identity_is_stable_across_loads(image_encoder) -> None:  # type: ignore[no-untyped-def]
    assert load_image_encoder(ImageEncoderConfig()).identity == image_encoder.identity


def test_hf_clip_directory_through_the_users_loading_path(tmp_path: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "vocab_size": 99, "max_position_embeddings": 32},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=24,
    )
    CLIPModel(config).save_pretrained(tmp_path / "tiny-clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "tiny-clip")
    encoder = load_image_encoder(ImageEncoderConfig(kind="hf", path=tmp_path / "tiny-clip"))
    assert encoder.identity.dimension == 24 and encoder.identity.name == "clip:tiny-clip"
    vectors = encoder.encode([Image.new("RGB", (50, 40), (255, 0, 0)), Image.new("L", (40, 50), 128)])
    assert vectors.shape == (2, 24)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_missing_model_paths_are_config_errors_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ROSETTA_TEXT_ENCODER_PATH"):
        load_text_encoder(TextEncoderConfig(path=tmp_path / "missing"))
    with pytest.raises(ConfigError, match="ROSETTA_IMAGE_ENCODER_PATH"):
        load_image_encoder(ImageEncoderConfig(kind="hf", path=tmp_path))
    with pytest.raises(ConfigError, match="ROSETTA_IMAGE_ENCODER_PATH"):
        load_image_encoder(ImageEncoderConfig(path=tmp_path / "weights.pth"))


def test_int8_quantization_is_close_to_fp32_and_names_itself(text_encoder) -> None:  # type: ignore[no-untyped-def]
    quantized = load_text_encoder(TextEncoderConfig(batch_size=2, device="cpu", precision="int8"))
    assert quantized.identity.preprocessing.endswith(";precision=int8")
    assert quantized.identity.key != text_encoder.identity.key  # other vectors: other points, other version
    texts = ["a cat lying on a sofa", "an astronaut in a spacesuit", "a red rocket on the launch pad"]
    cosine = np.sum(quantized.encode(texts) * text_encoder.encode(texts), axis=1)
    assert cosine.min() > 0.95
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        load_text_encoder(TextEncoderConfig(device="cpu", precision="fp16"))
