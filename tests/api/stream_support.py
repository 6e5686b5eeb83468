"""Helpers for the streaming tests: a NATS client that publishes requests and reads answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

NATS_URL = "nats://127.0.0.1:4222"


def require_nats() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            pass
    except OSError as exc:
        pytest.skip(f"no NATS server at {NATS_URL}: {exc}")


@dataclass
class Names:
    """A stream, its subjects and its consumer, unique to one test."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def stream(self) -> str:
        return f"T_{self.tag}"

    @property
    def subject(self) -> str:
        return f"t{self.tag}.predict"

    @property
    def feedback(self) -> str:
        return f"t{self.tag}.feedback"

    @property
    def replies(self) -> str:
        return f"t{self.tag}.replies"

    @property
    def durable(self) -> str:
        return f"c{self.tag}"


@dataclass
class Bus:
    """A test's own NATS connection: publishes requests, collects the answers by key."""

    client: Client
    names: Names
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    @classmethod
    async def open(cls, names: Names) -> Bus:
        client = await nats.connect(NATS_URL)
        bus = cls(client, names)
        js = client.jetstream()
        await js.add_stream(name=names.stream, subjects=[names.subject, names.feedback])
        await client.subscribe(names.replies, cb=bus._on_answer)
        return bus

    @classmethod
    async def open_existing(cls, names: Names) -> Bus:
        """A connection to a stream the test already created, listening for answers."""
        bus = cls(await nats.connect(NATS_URL), names)
        await bus.client.subscribe(names.replies, cb=bus._on_answer)
        return bus

    async def wait_until(self, done: Any, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not done():
            if loop.time() > deadline:
                msg = f"not done within {timeout_s} s ({len(self.answers)} keys answered)"
                raise AssertionError(msg)
            await asyncio.sleep(0.05)

    async def _on_answer(self, msg: Msg) -> None:
        headers = msg.headers or {}
        key = headers.get("Banditlake-Request-Key", "")
        self.answers[key].append((int(headers["Banditlake-Status"]), json.loads(msg.data)))

    async def publish(self, subject: str, bodies: list[bytes], headers: Any = None) -> None:
        js = self.client.jetstream()
        for start in range(0, len(bodies), 1000):
            futures = [
                await js.publish_async(subject, body, headers=headers)
                for body in bodies[start : start + 1000]
            ]
            await asyncio.gather(*futures)

    async def wait_for(self, keys: int, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.answers) < keys:
            if loop.time() > deadline:
                msg = f"{len(self.answers)} of {keys} requests answered within {timeout_s} s"
                raise AssertionError(msg)
            await asyncio.sleep(0.05)

    async def request(self, subject: str, body: bytes, timeout_s: float = 10.0) -> Msg:
        """Publish one message naming an inbox (Reply-To) and wait for its answer there."""
        inbox = self.client.new_inbox()
        sub = await self.client.subscribe(inbox, max_msgs=1)
        await self.client.jetstream().publish(subject, body, headers={"Reply-To": inbox})
        try:
            return await sub.next_msg(timeout=timeout_s)
        finally:
            await sub.unsubscribe()

    async def consumer_info(self, durable: str) -> Any:
        return await self.client.jetstream().consumer_info(self.names.stream, durable)

    async def close(self) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.client.jetstream().delete_stream(self.names.stream)
        await self.client.close()


def predict_body(i: int, *, request_id: bool = True) -> bytes:
    body: dict[str, Any] = {"features": [0.001 * i, 1.0, -0.5]}
    if request_id:
        body["request_id"] = f"r{i}"
    return json.dumps(body).encode()
