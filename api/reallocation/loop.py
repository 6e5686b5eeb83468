"""Reallocation: lake statistics → guardrails → policy → a new allocation version.

One replica at a time runs the periodic loop (it holds the ``reallocator`` lease);
``POST /reallocate`` runs the same step on demand in whichever replica receives it.

The lease (``BANDITLAKE_LEASE_TTL_S``, default 6 s): every tick (1 s) each replica asks for
it, which renews it for its holder; during a pass the holder renews it at most every
TTL/3 between the steps of the work (each chunk the statistics fold, each experiment,
the checkpoint's sections), so a long catch-up keeps it, while a holder that stops making
progress (killed, paused, hung) loses it within one TTL, and another replica takes it on
its next tick: within TTL + 1 s of the last renewal. An allocation is published only if
:func:`api.control.leases.fence` finds the lease still held, in the transaction that
writes it: a holder paused past its TTL while another took over publishes nothing when
it wakes up. After a pass that moved the lake's watermarks, the holder checkpoints the
statistics (fenced the same way); a new holder starts from that checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.alerts import AlertEngine
from api.control import allocation_versions, leases
from api.control.experiments import retention_cutoffs_of_store
from api.errors import ConflictError
from api.reallocation.lake_views import LakeStats, VariantView, bandit_kind
from api.settings import Settings
from api.store.models import AllocationRow, AuditEvent, Experiment
from api.store.types import utcnow
from bandit.allocation import allocate
from bandit.bayesian import bayes_summary
from bandit.guardrails import ArmHealth, check_guardrails
from lake.compaction import CompactionSummary, compact
from lake.retention import apply_retention

__all__ = ["LeaseLost", "Reallocator"]

log = logging.getLogger(__name__)

LEASE = "reallocator"


class LeaseLost(Exception):  # noqa: N818 (a state, not an error of the caller's)
    """Another replica holds the lease now: the pass stops without publishing."""


def _seed(experiment: str, version: int) -> int:
    # Reproducible draws: the seed is a function of the experiment and the version it makes.
    digest = hashlib.blake2b(f"{experiment}:{version}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _health(view: VariantView) -> ArmHealth:
    return ArmHealth(view.served, view.errors, view.p(0.99))


class Reallocator:
    def __init__(
        self, settings: Settings, session_factory: sessionmaker[Session], stats: LakeStats
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self.stats = stats
        self.holder = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self._ttl = timedelta(seconds=settings.lease_ttl_s)
        self._renewed_at = -float("inf")
        # The first compaction waits one period: a starting holder has a catch-up to do.
        self._compact_due = time.monotonic() + settings.compact_every_s
        # Alert rules are evaluated by the lease holder after its passes (api.alerts).
        self.alerts = AlertEngine(settings, session_factory, stats)

    # -- the lease ----------------------------------------------------------------------

    def renew(self) -> None:
        """Renew the lease during a pass, at most every TTL/3.

        Raises
        ------
        LeaseLost
            When another replica holds it now.
        """
        started = time.monotonic()
        if started - self._renewed_at < self._ttl.total_seconds() / 3:
            return
        with self._session_factory() as session:
            held = leases.acquire(session, LEASE, self.holder, self._ttl)
        if not held:
            raise LeaseLost
        self._renewed_at = started

    def _fence(self, conn: Any) -> bool:
        return leases.fence(conn, LEASE, self.holder, self._ttl)

    # -- one experiment ---------------------------------------------------------------

    def _apply_guardrails(
        self,
        session: Session,
        experiment: Experiment,
        views: list[VariantView],
        health: dict[str, ArmHealth],
        author: str,
    ) -> list[dict[str, Any]]:
        pulled = []
        arms = {v.name: v for v in experiment.variants if v.role == "arm" and v.status == "active"}
        guardrails = dataclasses.replace(
            experiment.guardrail_config, min_requests=self._settings.guardrail_min_requests
        )
        for view in views:
            check = check_guardrails(health[view.name], guardrails, arm=view.name, wording="audit")
            if check.state != "breach" or view.name not in arms:
                continue
            reason = check.reason
            if len(arms) == 1:
                log.warning(
                    "%s: last arm %s fails its guardrail (%s)", experiment.name, view.name, reason
                )
                continue
            variant = arms.pop(view.name)
            variant.status = "disabled"
            variant.status_reason = f"guardrail: {reason}"
            details = {
                "variant": view.name,
                "reason": reason,
                "served": view.served,
                "errors": view.errors,
                "p99_latency_ms": health[view.name].p99_latency_ms,
            }
            session.add(
                AuditEvent(
                    experiment_id=experiment.id, actor=author, action="guardrail", details=details
                )
            )
            pulled.append(details)
        return pulled

    def reallocate(
        self,
        session: Session,
        experiment: Experiment,
        *,
        author: str,
        progress: Callable[[], None] | None = None,
    ) -> AllocationRow:
        """Run the experiment's policy on the lake and write the next allocation version
        (flushed, not committed); ``progress`` is called during the lake's refresh."""
        if experiment.status != "running":
            msg = (
                f"Experiment {experiment.name!r} is {experiment.status}; only a running "
                "experiment is reallocated."
            )
            raise ConflictError(msg, code="experiment_not_running")
        self.stats.refresh(session, progress=progress)
        arm_rows = [v for v in experiment.variants if v.role == "arm" and v.status == "active"]
        views = self.stats.variants(experiment.name, [(v.name, "arm") for v in arm_rows])
        health = {view.name: _health(view) for view in views}
        pulled = self._apply_guardrails(session, experiment, views, health, author)
        names = allocation_versions.active_arms(experiment)
        if not names:
            msg = f"Experiment {experiment.name!r} has no active arm to allocate traffic to."
            raise ConflictError(msg, code="no_active_arm")
        by_name = {v.name: v for v in views}
        config = experiment.policy_config
        if experiment.min_weight > config.min_weight:
            config = dataclasses.replace(
                config, min_weight=min(experiment.min_weight, 1.0 / len(names))
            )
        current = allocation_versions.current_allocation(session, experiment)
        version = (current.version + 1) if current else 1
        seed = _seed(experiment.name, version)
        kind = bandit_kind(experiment)
        uses_buckets = config.discount < 1.0 or config.window is not None
        arms_input = [
            (n, by_name[n].buckets() if uses_buckets else by_name[n].rewards) for n in names
        ]
        decision = allocate(
            arms_input,
            config,
            kind=kind,
            rng=np.random.default_rng(seed),
            previous=dict(current.weights) if current else None,
            health={n: health[n] for n in names},
        )
        weights = decision.weights
        reason = decision.reason
        if pulled:
            reason = (
                "Guardrail pulled "
                + ", ".join(f"{p['variant']!r} ({p['reason']})" for p in pulled)
                + ". "
                + reason
            )
        prob_best = decision.prob_best
        loss = decision.expected_loss
        if prob_best is None and len(names) > 1:
            summary = bayes_summary(
                [by_name[n].rewards for n in names], kind=kind, rng=np.random.default_rng(seed)
            )
            prob_best = dict(zip(names, summary.prob_best.tolist(), strict=True))
            loss = dict(zip(names, summary.expected_loss.tolist(), strict=True))
        stopping = experiment.stopping_rule
        winner = None
        if prob_best and loss:
            winner = stopping.winner(names, [prob_best[n] for n in names], [loss[n] for n in names])
        if winner is not None and stopping.auto_promote:
            weights = {n: 1.0 if n == winner else 0.0 for n in names}
            reason += f" Stopping rule met: auto-promoting {winner!r}."
        elif winner is not None:
            reason += f" Stopping rule met: {winner!r} is the winner."
        row = allocation_versions.record_allocation(
            session,
            experiment,
            weights,
            reason=reason,
            author=author,
            stats={
                "policy": decision.policy,
                "decision": decision.decision,
                "seed": seed,
                "means": decision.means,
                "counts": decision.counts,
                "prob_best": prob_best,
                "expected_loss": loss,
                "served": {n: by_name[n].served for n in names},
                "errors": {n: by_name[n].errors for n in names},
                "guardrails": pulled,
                "winner": winner,
                "watermarks": self.stats.watermarks,
                "holder": self.holder,
            },
        )
        return row

    # -- the loop -----------------------------------------------------------------------

    def run_due(self) -> int:
        """One tick of the loop: if this replica holds the lease, reallocate what is due,
        then checkpoint the statistics if they moved; return the allocations published."""
        done = 0
        with self._session_factory() as session:
            asked = time.monotonic()
            if not leases.acquire(session, LEASE, self.holder, self._ttl):
                return 0
            self._renewed_at = asked
            running = list(
                session.scalars(select(Experiment).where(Experiment.status == "running"))
            )
            now = utcnow()
            for experiment in running:
                current = allocation_versions.current_allocation(session, experiment)
                due = (
                    current is None
                    or (now - current.created_at).total_seconds() >= experiment.reallocate_every_s
                )
                if not due:
                    continue
                try:
                    self.renew()
                    self.reallocate(session, experiment, author="reallocator", progress=self.renew)
                    # The lease is checked (and renewed) in the transaction that publishes.
                    if not self._fence(session):
                        raise LeaseLost
                    session.commit()
                    done += 1
                except LeaseLost:
                    session.rollback()
                    log.warning(
                        "%s lost the %s lease during a pass; %s not reallocated",
                        self.holder,
                        LEASE,
                        experiment.name,
                    )
                    return done
                except Exception:
                    session.rollback()
                    log.exception("reallocating %s failed; trying again next tick", experiment.name)
        self.run_alerts(passed=done > 0)
        self.checkpoint()
        self.compact_if_due()
        return done

    def compact_if_due(self) -> CompactionSummary | None:
        """Apply the experiments' retention and compact the lake, if ``compact_every_s``
        has passed since this holder last did.

        Runs under the lease, renewed between the compaction's steps; a holder that
        loses it stops after the step in progress (the next run recovers a compaction
        left half-way). Compaction never changes the statistics (its outputs are not
        folded), so it needs no fence of its own.
        """
        every = self._settings.compact_every_s
        if every <= 0 or time.monotonic() < self._compact_due:
            return None
        self._compact_due = time.monotonic() + every

        def step(_: str) -> None:
            self.renew()

        try:
            # Retention first, so expired rows are not compacted before being dropped.
            with self._session_factory() as session:
                cutoffs = retention_cutoffs_of_store(session, datetime.now(UTC))
            retention = apply_retention(
                self.stats.engine,
                self.stats.storage,
                cutoffs,
                grace=timedelta(seconds=self._settings.compact_grace_s),
                after_step=step,
            )
            if retention.rewrites:
                log.info("retention dropped %s rows", retention.rows_dropped)
            summary = compact(
                self.stats.engine,
                self.stats.storage,
                min_age=timedelta(seconds=self._settings.compact_min_age_s),
                grace=timedelta(seconds=self._settings.compact_grace_s),
                after_step=step,
            )
        except LeaseLost:
            log.warning("%s lost the %s lease during compaction; stopped", self.holder, LEASE)
            return None
        except Exception:
            log.exception("compacting the lake failed; trying again in %d s", every)
            return None
        if summary.compactions or summary.replaced_deleted:
            log.info(
                "compacted %d files (%d rows) into %d; deleted %d replaced files",
                summary.files_in,
                summary.rows,
                summary.files_out,
                summary.replaced_deleted,
            )
        return summary

    def checkpoint(self) -> None:
        """Checkpoint the statistics if they moved (the lease checked in the same write)."""
        try:
            self.renew()
            info = self.stats.checkpoint(self.holder, fence=self._fence, progress=self.renew)
        except LeaseLost:
            log.warning("%s lost the %s lease; no checkpoint written", self.holder, LEASE)
            return
        except Exception:
            log.exception("checkpointing the statistics failed; trying again after next pass")
            return
        if info is not None:
            log.info(
                "checkpoint %r at %s: %d bytes, %d rows folded, encoded in %.3f s, "
                "written in %.3f s",
                info.name,
                info.watermarks,
                info.bytes,
                info.rows,
                info.encode_s,
                info.write_s,
            )

    def run_alerts(self, *, passed: bool) -> None:
        """Evaluate the alert rules (after a pass that published, or when due) and send
        what is due, under the lease; a failure is logged and tried again next tick."""
        try:
            self.alerts.run(passed=passed, renew=self.renew, fence=self._fence)
        except LeaseLost:
            log.warning("%s lost the %s lease while alerting; stopped", self.holder, LEASE)
        except Exception:
            log.exception("evaluating or sending alerts failed; trying again next tick")

    def release(self) -> None:
        with self._session_factory() as session:
            leases.release(session, LEASE, self.holder)
