"""Encoders: pipeline overhead over the bare model forward, and int8 dynamic quantization on the CPU.

    .venv/bin/python benchmarks/bench_encoders.py

1. Texts/s through ``HFMeanPoolTextEncoder.encode`` (tokenize, length-sorted batches, forward, mean
   pool, normalise) against the bare ``model(**batch)`` forward on the same tokenized batches; images/s
   through ``EfficientNetLiteEncoder.encode`` (resize, crop, normalise, forward, pool) against the bare
   ``extract_features`` forward on the same prepared tensors.  Overhead = pipeline time / forward time - 1;
   target under 15%.  The inputs are the demo's photos and captions, repeated to ``--texts``/``--images``.
2. The text encoder at ``precision="int8"`` against fp32 on the same texts: speed-up and cosine similarity
   of the vectors (mean and minimum).

Alternating rounds (the order swapped every round); medians.  Exit code 0 only if both overheads are under the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _texts(count: int) -> list[str]:
    from rosetta.samples import captions

    base = list(captions().values())
    return [f"{base[i % len(base)]} (variant {i})" for i in range(count)]


def _photos() -> list[Any]:
    from PIL import Image

    from rosetta.samples import captions, skimage_data_dir

    folder = skimage_data_dir()
    return [Image.open(folder / name).convert("RGB") for name in sorted(captions())]


def _alternate(pipeline: Any, forward: Any, rounds: int) -> tuple[float, float]:
    """Median seconds of ``pipeline()`` and ``forward()``, run back to back, the order swapped every round."""
    times: dict[str, list[float]] = {"pipeline": [], "forward": []}
    for number in range(rounds):
        pair = [("pipeline", pipeline), ("forward", forward)]
        for name, run in pair if number % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["pipeline"]), statistics.median(times["forward"])


def main() -> int:
    import numpy as np
    import torch

    from transforms.encoders import ImageEncoderConfig, TextEncoderConfig, load_image_encoder, load_text_encoder
    from transforms.encoders.base import batched

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    figures: dict[str, Any] = {}

    texts = _texts(args.texts)
    text = load_text_encoder(TextEncoderConfig(device="cpu", precision="fp32", batch_size=64))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [text.tokenizer([texts[i] for i in chunk], padding=True, truncation=True,  # type: ignore[attr-defined]
                              max_length=256, return_tensors="pt") for chunk in batched(order, 64)]
    def text_forward() -> None:
        with torch.inference_mode():
            for batch in batches:
                text.model(**batch)  # type: ignore[attr-defined]

    p, f = _alternate(lambda: text.encode(texts), text_forward, args.rounds)
    figures["text"] = {"texts": len(texts), "pipeline_per_s": round(len(texts) / p, 1),
                       "forward_per_s": round(len(texts) / f, 1), "overhead": round(p / f - 1, 3)}
    print(f"text: pipeline {len(texts) / p:,.0f}/s, bare forward {len(texts) / f:,.0f}/s, "
          f"overhead {100 * (p / f - 1):.1f}%", flush=True)

    quantized = load_text_encoder(TextEncoderConfig(device="cpu", precision="int8", batch_size=64))
    fp32_vectors, int8_vectors = text.encode(texts), quantized.encode(texts)
    int8_s = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        quantized.encode(texts)
        int8_s.append(time.perf_counter() - start)
    cosine = np.sum(fp32_vectors * int8_vectors, axis=1)
    q = statistics.median(int8_s)
    figures["int8"] = {"fp32_per_s": round(len(texts) / p, 1), "int8_per_s": round(len(texts) / q, 1),
                       "speedup": round(p / q, 2), "cosine_mean": round(float(cosine.mean()), 4),
                       "cosine_min": round(float(cosine.min()), 4)}
    print(f"int8: {len(texts) / q:,.0f}/s vs fp32 {len(texts) / p:,.0f}/s ({p / q:.2f}x), cosine to fp32 mean "
          f"{cosine.mean():.4f}, min {cosine.min():.4f}", flush=True)

    photos = _photos()
    images = [photos[i % len(photos)] for i in range(args.images)]
    image = load_image_encoder(ImageEncoderConfig(device="cpu", precision="fp32", batch_size=16))
    tensors = [torch.stack([image._tensor(i) for i in chunk])  # type: ignore[attr-defined]
               for chunk in batched(images, 16)]
    def image_forward() -> None:
        with torch.inference_mode():
            for batch in tensors:
                image.model.extract_features(batch).mean(dim=(2, 3))  # type: ignore[attr-defined]

    p, f = _alternate(lambda: image.encode(images), image_forward, args.rounds)
    figures["image"] = {"images": len(images), "pipeline_per_s": round(len(images) / p, 1),
                        "forward_per_s": round(len(images) / f, 1), "overhead": round(p / f - 1, 3)}
    print(f"image: pipeline {len(images) / p:,.1f}/s, bare forward {len(images) / f:,.1f}/s, "
          f"overhead {100 * (p / f - 1):.1f}%", flush=True)

    ok = figures["text"]["overhead"] < args.target and figures["image"]["overhead"] < args.target
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
