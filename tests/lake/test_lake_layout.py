from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lake import LakeConfigError, default_writer_id
from lake.layout import is_valid_writer_id, part_name, partition_path


def test_partition_path_uses_utc_date_and_hour() -> None:
    at = datetime(2025, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert partition_path("predictions", at) == "predictions/dt=2024-12-31/hour=22"
    at = datetime(2025, 5, 6, 7, tzinfo=UTC)
    assert partition_path("feedback", at) == "feedback/dt=2025-05-06/hour=07"


def test_partition_path_refuses_naive_times() -> None:
    with pytest.raises(LakeConfigError, match="must be timezone-aware"):
        partition_path("feedback", datetime(2025, 1, 1))


def test_file_names() -> None:
    assert part_name("host-1-ab", 7) == "part-host-1-ab-00000007.parquet"


@pytest.mark.parametrize(
    ("writer_id", "valid"),
    [
        ("api-1", True),
        ("host.example_9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("-leading", False),
        ("has/slash", False),
        ("has space", False),
    ],
)
def test_writer_ids(writer_id: str, valid: bool) -> None:
    assert is_valid_writer_id(writer_id) is valid


def test_default_writer_ids_are_valid_and_unique() -> None:
    ids = {default_writer_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(is_valid_writer_id(i) for i in ids)
