"""Publish camera events to the Mosquitto broker on this machine (127.0.0.1:1883)."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any

BROKER = ("127.0.0.1", 1883)


def jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(out, "JPEG")
    return out.getvalue()


def event(event_id: str, *, device: str = "cam-1", timestamp: str = "2026-03-04T10:15:00+01:00",
          image: bytes | None = None, **extra: Any) -> bytes:
    body = {"event_id": event_id, "device_id": device, "timestamp": timestamp,
            "image": base64.b64encode(image if image is not None else jpeg()).decode(), **extra}
    return json.dumps(body).encode()


def publish(topic: str, *payloads: bytes) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(*BROKER)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
