"""One contract for every object store backend: the local directory and real S3 (SeaweedFS)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_store.object_store import (
    ObjectStore,
    object_store_config_from_url,
    open_object_store,
)
from feature_store.object_store.base import content_key
from rosetta.core.errors import NotFoundError
from rosetta.core.hashing import sha256_bytes

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        backend = open_object_store(object_store_config_from_url(str(tmp_path / "store")))
    else:
        request.applymarker(pytest.mark.integration)
        options = request.getfixturevalue("s3_options")
        bucket = request.getfixturevalue("bucket_name")
        backend = open_object_store(object_store_config_from_url(
            f"s3://{bucket}/rosetta", multipart_threshold_bytes=5 * MiB, multipart_chunk_bytes=5 * MiB, **options))
    backend.check()
    yield backend
    backend.close()


def test_put_is_content_addressed_and_idempotent(store: ObjectStore) -> None:
    first = store.put(b"a caption", media_type="text/plain")
    again = store.put(b"a caption", media_type="text/plain")
    assert first.created is True and again.created is False
    assert first.key == again.key == content_key(sha256_bytes(b"a caption"))
    assert first.sha256 == sha256_bytes(b"a caption") and first.size_bytes == 9
    assert store.read_bytes(first.key) == b"a caption"
    assert store.has_content(first.sha256)
    assert list(store.list("objects/")) == [first.key]


def test_uri_round_trips_to_key(store: ObjectStore) -> None:
    ref = store.put(b"x")
    assert store.key_for(ref.uri) == ref.key
    with pytest.raises(ValueError):
        store.key_for("s3://someone-else/objects/x")


def test_large_objects_stream_in_and_out(store: ObjectStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * (12 * MiB // 256)  # 12 MiB: multipart on S3 with a 5 MiB threshold
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    ref = store.put_file(path)
    assert ref.created and ref.size_bytes == len(data) and ref.sha256 == sha256_bytes(data)
    assert store.put_stream(io.BytesIO(data)).created is False
    with store.open(ref.key) as stream:
        head = stream.read(1000)
        rest = stream.read()
    assert head + rest == data


def test_concurrent_puts_of_the_same_object_store_it_once(store: ObjectStore) -> None:
    created: list[bool] = []
    payload = b"same bytes from eight writers" * 1000

    def put() -> None:
        created.append(store.put(payload).created)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 8 and sum(created) <= 1  # S3 may let none "win" if all race; never two
    assert store.read_bytes(content_key(sha256_bytes(payload))) == payload


def test_plain_keys_overwrite_list_and_delete(store: ObjectStore) -> None:
    store.write_bytes("manifest/part-a.parquet", b"1")
    store.write_bytes("manifest/part-a.parquet", b"2")
    store.write_bytes("manifest/part-b.parquet", b"3")
    store.write_bytes("runs/x.json", b"{}")
    assert list(store.list("manifest/")) == ["manifest/part-a.parquet", "manifest/part-b.parquet"]
    assert store.read_bytes("manifest/part-a.parquet") == b"2"
    store.delete("manifest/part-a.parquet")
    store.delete("manifest/never-there")
    assert not store.exists("manifest/part-a.parquet")
    with pytest.raises(NotFoundError):
        store.read_bytes("manifest/part-a.parquet")


def test_listing_pages_through_many_keys(store: ObjectStore) -> None:
    keys = [f"staging/run/batch-{i:04d}.json" for i in range(25)]
    for key in keys:
        store.write_bytes(key, b"{}")
    listed = list(store.list("staging/", page_size=7)) if hasattr(store, "client") else list(store.list("staging/"))
    assert listed == keys
