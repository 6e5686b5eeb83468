"""A real S3 server for tests: moto's standalone server on a free loopback port.

The tests talk S3 to it over HTTP with the clients the service uses (pyarrow's
``S3FileSystem``, boto3); nothing is mocked in the client. Credentials and region are
fixed dummies: the server accepts any.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

ACCESS_KEY = "banditlake-test"
SECRET_KEY = "banditlake-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the server listens and how to reach it."""

    endpoint_url: str

    def environment(self) -> dict[str, str]:
        """The standard AWS variables a process needs to use this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def create_bucket(self) -> str:
        """A new, empty bucket with a unique name."""
        name = f"banditlake-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        client.create_bucket(Bucket=name)
        return name

    def filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's S3 file system pointed at this server over plain HTTP."""
        host = self.endpoint_url.removeprefix("http://")
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            endpoint_override=host,
            scheme="http",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the session; each test makes its own bucket."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
