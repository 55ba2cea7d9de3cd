"""Camera events from an MQTT broker: an image, its timestamp and the device id per message.

Payload (JSON): ``{"event_id": "...", "device_id": "cam-7", "timestamp": "2026-03-04T10:15:00+01:00",
"image": "<base64 JPEG/PNG>", "content_type": "image/jpeg", ...extra fields kept as metadata}``.

A stream does not fit a batch run by itself, so listing works in two steps that lose nothing:

1. drain: connect with a persistent session (fixed ``client_id``, ``clean_session=False``, QoS 1),
   take what the broker holds for us (until ``idle_seconds`` pass without a message, at most
   ``drain_seconds`` or ``max_messages``), write each message to the spool
   folder (write, fsync, rename), and only then acknowledge it (manual acks).  A crash before the
   ack makes the broker redeliver; the message id then gives the same source id, so the pipeline's
   hash check stores it once.
2. list the spool files after the committed state (cursor = the spool sequence), and delete spool
   files the state says are committed.

``spool_dir`` must be on storage every worker that runs this source can reach.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from connectors.media import jpeg_is_complete
from connectors.sdk import Connector, ConnectorConfig, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from rosetta.core.timeutil import ensure_utc
from schemas.records import RawObject, SourceRecord

SPOOL_SUFFIX = ".msg"


class MqttEventsConfig(ConnectorConfig):
    """Broker, subscription and spool.  ``client_id`` names the persistent session: keep it stable."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic: str = Field(min_length=1)
    client_id: str = Field(min_length=1, max_length=128)
    spool_dir: Path
    drain_seconds: float = Field(default=30.0, gt=0)
    idle_seconds: float = Field(default=1.0, gt=0)
    max_messages: int = Field(default=10_000, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)


class MqttEventsConnector(Connector[MqttEventsConfig]):
    """Drains a persistent MQTT session into a spool, then lists and parses the spooled messages."""

    name = "mqtt_events"
    config_class = MqttEventsConfig
    requires = ("paho.mqtt",)
    extra = "mqtt"

    def check(self) -> None:
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        client = self._client()
        try:
            self._connect(client)
        finally:
            client.disconnect()

    def _client(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.config.client_id,
                             clean_session=False, manual_ack=True)
        if self.config.username:
            password = self.config.password.get_secret_value() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        return client

    def _connect(self, client: Any) -> None:
        where = f"{self.config.host}:{self.config.port}"
        try:
            code = client.connect(self.config.host, self.config.port, keepalive=30)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the MQTT broker at {where} ({exc}); check the options host and port",
                              setting="host") from None
        if code != 0:
            raise ConfigError(f"MQTT broker at {where} refused the connection (code {code}); check username and "
                              "password", setting="username")

    def drain(self) -> int:
        """Move what the broker holds for this session into the spool; returns how many messages."""
        config = self.config
        config.spool_dir.mkdir(parents=True, exist_ok=True)
        client = self._client()
        received = 0
        connected = threading.Event()
        refused: list[str] = []
        lock = threading.Lock()

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            else:
                client.subscribe(config.topic, qos=1)
            connected.set()

        last_seen = [time.monotonic()]

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            nonlocal received
            with lock:
                self._spool(message.topic, message.payload)
                received += 1
                last_seen[0] = time.monotonic()
            client.ack(message.mid, message.qos)

        client.on_connect = on_connect
        client.on_message = on_message
        self._connect(client)
        client.loop_start()
        try:
            if not connected.wait(config.connect_timeout_s):
                raise RetriableError(f"no CONNACK from the MQTT broker at {config.host}:{config.port} within "
                                     f"{config.connect_timeout_s}s")
            if refused:
                raise ConfigError(f"MQTT broker refused the session: {refused[0]}; check username and password",
                                  setting="username")
            deadline = time.monotonic() + config.drain_seconds
            last_seen[0] = time.monotonic()
            while time.monotonic() < deadline and received < config.max_messages and \
                    time.monotonic() - last_seen[0] < config.idle_seconds:
                time.sleep(0.02)
        finally:
            client.loop_stop()
            client.disconnect()
        return received

    def _spool(self, topic: str, payload: bytes) -> None:
        body = json.dumps({"topic": topic, "payload": base64.b64encode(payload).decode()}).encode()
        name = f"{time.time_ns():020d}-{hashlib.sha256(payload).hexdigest()[:12]}{SPOOL_SUFFIX}"
        tmp = self.config.spool_dir / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.config.spool_dir / name)

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        self.drain()
        items = []
        for path in sorted(self.config.spool_dir.glob(f"*{SPOOL_SUFFIX}")):
            item = Item(source_id=self._message_id(path), cursor=path.name, ref={"spool": path.name})
            if state.is_new(item):
                items.append(item)
            elif state.cursor is not None and path.name <= str(state.cursor):
                path.unlink(missing_ok=True)  # committed: the manifest has it
        return items

    @staticmethod
    def _message_id(path: Path) -> str:
        try:
            payload = base64.b64decode(json.loads(path.read_bytes())["payload"])
            event_id = json.loads(payload).get("event_id")
            if event_id:
                return f"event/{event_id}"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return f"sha256/{path.stem.split('-', 1)[1]}"

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        spooled = json.loads((self.config.spool_dir / item.ref["spool"]).read_bytes())
        payload = base64.b64decode(spooled["payload"])

        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"message on {spooled['topic']}: {reason}", source_id=item.source_id,
                                  payload=payload)

        try:
            event = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad(f"payload is not JSON ({exc})") from None
        if not isinstance(event, dict):
            raise bad("payload is not a JSON object")
        missing = [f for f in ("device_id", "timestamp", "image") if not event.get(f)]
        if missing:
            raise bad(f"missing {', '.join(missing)}")
        try:
            event_time = ensure_utc(datetime.fromisoformat(str(event["timestamp"])), name="timestamp")
        except ValueError as exc:
            raise bad(f"timestamp {event['timestamp']!r} is not ISO 8601 with an offset ({exc})") from None
        try:
            image = base64.b64decode(event["image"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise bad(f"image is not base64 ({exc})") from None
        media_type = _image_type(image)
        if media_type is None:
            raise bad("image is neither JPEG nor PNG")
        if media_type == "image/jpeg" and not jpeg_is_complete(image):
            raise bad("JPEG image is truncated (no end-of-image marker after the scan)")
        metadata = {k: v for k, v in event.items() if k not in ("image", "timestamp")}
        metadata["topic"] = spooled["topic"]
        yield SourceRecord(source=self.source, source_id=item.source_id, event_time=event_time,
                           objects=(RawObject("image", image, media_type),),
                           keys={"device_id": str(event["device_id"])}, metadata=metadata,
                           text=str(event["caption"]) if event.get("caption") else None, event_time_origin="payload")


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None
