from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rosetta.devservices.ports import free_port_block


def s3_client(options: dict[str, Any]) -> Any:
    """A plain boto3 client for the server in ``options`` (to build and change the test source)."""
    import boto3
    from botocore.config import Config

    secret = options["aws_secret_access_key"]
    return boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="us-east-1",
                        aws_access_key_id=options["aws_access_key_id"],
                        aws_secret_access_key=secret.get_secret_value() if isinstance(secret, SecretStr) else secret,
                        config=Config(s3={"addressing_style": "path"}))


def put(options: dict[str, Any], name: str, data: bytes) -> str:
    """Upload ``data`` as ``<prefix>/<name>``; return the full key."""
    key = f"{options['prefix'].strip('/')}/{name}" if options.get("prefix") else name
    s3_client(options).put_object(Bucket=options["bucket"], Key=key, Body=data)
    return key


class S3PrefixHarness:
    name = "s3_prefix"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        photos: Path = request.getfixturevalue("photo_dir")
        options = {**request.getfixturevalue("s3_options"), "bucket": request.getfixturevalue("bucket_name"),
                   "prefix": "photos", "source": "contract_s3", "page_size": 2}
        s3_client(options).create_bucket(Bucket=options["bucket"])
        for stem in ("chelsea", "astronaut", "coffee"):
            for path in sorted(photos.glob(f"{stem}.*")):
                put(options, path.name, path.read_bytes())
        s3_client(options).put_object(Bucket=options["bucket"], Key="photos-old/stray.txt", Body=b"not listed")
        return options

    def add_new(self, options: dict[str, Any]) -> set[str]:
        client = s3_client(options)
        image = client.get_object(Bucket=options["bucket"], Key="photos/chelsea.png")["Body"].read()
        put(options, "more/second_cat.png", image)
        put(options, "more/second_cat.txt", b"The same tabby cat again.")
        return {"more/second_cat"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        client = s3_client(options)
        png = client.get_object(Bucket=options["bucket"], Key="photos/coffee.png")["Body"].read()
        put(options, "cut.png", png[:5000])  # an upload that stopped half way
        put(options, "cut.txt", b"truncated picture")
        put(options, "blank.png", png)
        put(options, "blank.txt", b"  \n")
        put(options, "orphan.txt", b"a caption with no picture")
        put(options, "notes.csv", b"a,b\n1,2\n")
        return {"cut", "blank", "orphan", "notes.csv"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        closed_port = free_port_block(1)
        return [
            {**options, "aws_secret_access_key": SecretStr("wrong-secret")},
            {**options, "aws_access_key_id": "nobody"},
            {**options, "bucket": options["bucket"] + "-missing"},
            {**options, "endpoint_url": f"http://127.0.0.1:{closed_port}", "max_attempts": 1,
             "connect_timeout_s": 1},
            {**options, "page_size": 0},
            {**options, "source": "has spaces"},
        ]


HARNESS = S3PrefixHarness()
