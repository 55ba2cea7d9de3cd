"""Look features up the way a training job does.

    make demo                                   # ingest the sample photos first
    ROSETTA_HOME=.rosetta .venv/bin/python examples/lookup_features.py demo_photos/chelsea demo_photos/coffee

Settings come from the same ROSETTA_* variables the pipeline uses (see README).
"""

from __future__ import annotations

import sys

import numpy as np

from feature_store import FeatureStore


def main(sample_ids: list[str]) -> int:
    with FeatureStore.from_env() as fs:
        features = fs.get_online_features(sample_ids)
        missing = [sid for sid, f in features.items() if f is None]
        for sample_id, sample in features.items():
            if sample is None:
                print(f"{sample_id}: not in the feature store")
                continue
            image = np.asarray(sample.vectors["image"], dtype=np.float32)
            text = np.asarray(sample.vectors["text"], dtype=np.float32)
            print(f"{sample_id}")
            print(f"  image vector {image.shape} from {sample.encoders['image']['key']}, "
                  f"text vector {text.shape} from {sample.encoders['text']['key']}")
            print(f"  caption:  {sample.payload['text']}")
            print(f"  raw image {sample.payload['image_uri']} (sha256 {sample.payload['image_sha256'][:12]}...)")
            print(f"  event time {sample.payload['event_time']}, ingested {sample.payload['ingest_time']}")
            nearest = fs.search(image.tolist(), modality="image", limit=3)
            print("  nearest images: " + ", ".join(f"{h.sample_id} ({h.score:.2f})" for h in nearest[1:]))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["demo_photos/chelsea", "demo_photos/astronaut"]))
