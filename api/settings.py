"""Service configuration, read once from ``BANDITLAKE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lake.location import default_lake_root
from lake.storage import check_uri

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything the service needs to start; passed to :func:`api.app.create_app`."""

    model_config = SettingsConfigDict(
        env_prefix="BANDITLAKE_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Path("./var")
    database_url: str = ""
    lake_uri: str = ""
    # Where uploaded models are kept as <sha256>.onnx, shared by every replica; a local
    # directory or s3://bucket/prefix. Default: $BANDITLAKE_HOME/models.
    models_uri: str = ""
    admin_token: SecretStr | None = None
    serve_token: SecretStr | None = None
    # Prometheus and detailed health; the admin token is accepted there too.
    metrics_token: SecretStr | None = None
    request_id_secret: SecretStr | None = None
    # Key of the HMAC that replaces features an experiment lists as "hash" in its
    # redaction; required once any experiment hashes a feature. Never logged or stored.
    redaction_secret: SecretStr | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_predict_batch_rows: int = Field(default=1024, gt=0)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    feedback_dedup_ids: int = Field(default=262_144, gt=0)
    microbatch: bool = True
    max_batch_size: int = Field(default=64, gt=0)
    max_queue_delay_us: int = Field(default=0, ge=0)
    intra_op_threads: int = Field(default=1, gt=0)
    lake_flush_rows: int = Field(default=5000, gt=0)
    lake_flush_interval_ms: int = Field(default=1000, gt=0)
    lake_buffer_rows: int = Field(default=200_000, gt=0)
    # Durable mode: a predict or feedback response is sent only once its row is fsynced
    # in this replica's local log ($BANDITLAKE_HOME/lake-log), shared by concurrent
    # requests (group commit); a request waits at most lake_durable_wait_ms for it. Past
    # lake_durable_max_bytes of unpublished log, requests get 503 with Retry-After.
    lake_durable: bool = False
    lake_durable_wait_ms: int = Field(default=2000, gt=0)
    lake_durable_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # A variant's model call taking longer than this answers 503 for that request (the
    # variant's own latency guardrail counts it).
    model_timeout_ms: int = Field(default=5000, gt=0)
    # SIGTERM: readiness goes false, in-flight requests finish, the writers flush; the
    # process exits within this many seconds even when the lake cannot be written.
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    allocation_refresh_ms: int = Field(default=500, gt=0)
    reallocate: bool = True
    feedback_lookback_s: int = Field(default=86_400, gt=0)
    guardrail_min_requests: int = Field(default=100, gt=0)
    # A dead holder's lease lapses after this; with the 1 s poll, takeover within TTL + 1 s.
    lease_ttl_s: int = Field(default=6, gt=0)
    # The lease holder compacts the lake this often (0: only `banditlake compact` does),
    # taking flush files older than the minimum age; replaced files are deleted after
    # the grace period (longer than the longest read).
    compact_every_s: int = Field(default=600, ge=0)
    compact_min_age_s: int = Field(default=3600, ge=0)
    compact_grace_s: int = Field(default=3600, ge=0)
    # Alerts: the lease holder evaluates the rules after each pass that published and at
    # least this often; a message is POSTed with this timeout, retried with exponential
    # backoff (base, doubling, jittered) up to this many attempts.
    alert_every_s: int = Field(default=30, ge=0)
    alert_timeout_s: float = Field(default=5.0, gt=0, le=60)
    alert_max_attempts: int = Field(default=8, gt=0, le=100)
    alert_retry_base_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Defaults that depend on ``home`` are filled in here so one variable moves everything.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'banditlake.db'}")
        if not self.lake_uri:
            object.__setattr__(self, "lake_uri", str(default_lake_root(self.home)))
        if not self.models_uri:
            object.__setattr__(self, "models_uri", str(self.home / "models"))
        for name in ("lake_uri", "models_uri"):
            # The scheme is checked here; reaching the store is checked at start.
            check_uri(getattr(self, name), f"BANDITLAKE_{name.upper()}")
        return self

    @model_validator(mode="after")
    def _secret_long_enough(self) -> Settings:
        secret = self.request_id_secret
        if secret is not None and len(secret.get_secret_value().encode()) < 16:
            msg = (
                "BANDITLAKE_REQUEST_ID_SECRET must be at least 16 bytes long (32 random hex "
                "characters or more is better); leave it unset to generate one in the store."
            )
            raise ValueError(msg)
        return self

    @property
    def models_dir(self) -> Path:
        """Local directory of model files: the store itself, or the cache of a remote one."""
        if self.models_uri.startswith("s3://"):
            return self.home / "model-cache"
        return Path(self.models_uri)

    @property
    def lake_log_dir(self) -> Path:
        """This replica's durable log of rows not yet in the lake (always a local disk)."""
        return self.home / "lake-log"

    @property
    def lake_root(self) -> Path:
        """The lake directory of a local lake (an s3:// lake has none: use ``lake_uri``)."""
        if self.lake_is_remote:
            msg = f"The lake at {self.lake_uri} is not a local directory."
            raise ValueError(msg)
        return Path(self.lake_uri)

    @property
    def lake_is_remote(self) -> bool:
        return "://" in self.lake_uri

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def has_tokens(self) -> bool:
        return self.admin_token is not None and self.serve_token is not None
