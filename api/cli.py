"""The ``banditlake`` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.auth import is_loopback
from api.errors import CommandError
from api.settings import Settings

__all__ = ["main"]

log = logging.getLogger("banditlake")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("banditlake")
    except PackageNotFoundError:
        # Run from a source tree that was never installed.
        return "unknown version"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        text = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
        # A check across fields names its variables itself.
        where = f"BANDITLAKE_{field.upper()}: " if field else ""
        msg = f"Invalid configuration: {where}{text}."
        raise CommandError(msg) from exc


def check_stores(settings: Settings) -> None:
    """Make sure the lake and the model store can be reached and written: one line if not.

    Run before serving starts, so that an unreachable endpoint, a missing bucket, refused
    credentials or a read-only prefix stop the start with a sentence, not a traceback
    from a worker process later.
    """
    from lake.errors import LakeConfigError
    from lake.storage import open_storage

    for name, uri in (
        ("BANDITLAKE_LAKE_URI", settings.lake_uri),
        ("BANDITLAKE_MODELS_URI", settings.models_uri),
    ):
        try:
            open_storage(uri).check(writable=True)
        except LakeConfigError as exc:
            raise CommandError(f"{name}: {exc}") from None


def cmd_migrate(_: argparse.Namespace) -> None:
    from api.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    log.info("migrations applied to %s", settings.database_url.split("@")[-1])


def cmd_serve(args: argparse.Namespace) -> None:

    settings = _settings()
    if not is_loopback(args.host):
        if not settings.has_tokens:
            msg = (
                f"Refusing to listen on {args.host} without BANDITLAKE_ADMIN_TOKEN and "
                "BANDITLAKE_SERVE_TOKEN; set both or use --host 127.0.0.1."
            )
            raise CommandError(msg)
    elif not settings.has_tokens:
        log.warning("no tokens set: serving loopback callers only on %s", args.host)
    if not 0 <= args.drain_delay < settings.shutdown_timeout_s:
        msg = (
            f"--drain-delay must be at least 0 and less than BANDITLAKE_SHUTDOWN_TIMEOUT_S "
            f"({settings.shutdown_timeout_s:g} s), which it counts in; got {args.drain_delay:g}."
        )
        raise CommandError(msg)
    if args.drain_delay and args.workers > 1:
        msg = "--drain-delay needs --workers 1: uvicorn's supervisor signals its workers itself."
        raise CommandError(msg)
    stream = None
    if (args.stream_experiment is None) != (args.stream_subject is None):
        msg = "--stream-experiment and --stream-subject go together; give both or neither."
        raise CommandError(msg)
    if args.stream_experiment is not None:
        if args.workers > 1:
            msg = "--stream-experiment needs --workers 1: the consumer runs in the server's loop."
            raise CommandError(msg)
        stream = _stream_options(args, args.stream_experiment, args.stream_subject)
    check_stores(settings)
    if settings.device == "cuda":
        from api.serving.sessions import cuda_status

        status = cuda_status(quiet=False)
        if not status.available:
            msg = (
                "BANDITLAKE_DEVICE=cuda but ONNX Runtime cannot start a CUDA session on this "
                f"machine ({status.reason}); set BANDITLAKE_DEVICE=auto or cpu, or fix the "
                "CUDA installation."
            )
            raise CommandError(msg)
    if settings.is_sqlite:
        from api.store.migrate import upgrade

        upgrade(settings.database_url)
    if stream is not None:
        _stream_preflight(settings, stream)
    worker = None
    if settings.reallocate:
        import multiprocessing

        from api.reallocation.worker import run_child

        # The loop reads the lake and runs the statistics: its own process keeps that
        # work off the serving processes' event loops. It gets the settings as an argument.
        worker = multiprocessing.get_context("spawn").Process(
            target=run_child, args=(settings,), name="banditlake-reallocator", daemon=True
        )
        worker.start()
    from api.next_steps import next_steps

    log.info(
        "once the service is up, open\n%s",
        "\n".join(next_steps(settings, host=args.host, port=args.port)),
    )
    # The web processes serve; the loop above (if any) reallocates.
    serving = settings.model_copy(update={"reallocate": False})
    # On SIGTERM the loop stops at once, so its lease lapses now rather than after its TTL.
    on_shutdown = [worker.terminate] if worker is not None else []
    try:
        _run_uvicorn(args, serving, on_shutdown=on_shutdown, stream=stream)
    finally:
        if worker is not None:
            worker.terminate()
            worker.join(timeout=settings.shutdown_timeout_s)
            if worker.is_alive():
                worker.kill()


def _stream_options(args: argparse.Namespace, experiment: str, subject: str) -> Any:
    from api.streaming import StreamError, StreamOptions, default_nats_url

    try:
        return StreamOptions(
            experiment=experiment,
            subject=subject,
            reply_subject=args.reply_subject,
            feedback_subject=args.feedback_subject,
            stream=args.stream,
            durable=args.durable,
            max_in_flight=args.max_in_flight,
            ack_wait_s=args.ack_wait,
            nats_url=args.nats_url or default_nats_url(),
        )
    except StreamError as exc:
        raise CommandError(str(exc)) from None


def _stream_preflight(settings: Settings, options: Any) -> None:
    from api.streaming import StreamError, preflight

    try:
        preflight(settings, options)
    except StreamError as exc:
        raise CommandError(str(exc)) from None


def cmd_stream(args: argparse.Namespace) -> None:
    from api.streaming import StreamError, run_stream

    options = _stream_options(args, args.experiment, args.subject)
    settings = _settings()
    check_stores(settings)
    if settings.is_sqlite:
        from api.store.migrate import upgrade

        upgrade(settings.database_url)
    _stream_preflight(settings, options)
    try:
        run_stream(settings, options, metrics_port=args.metrics_port)
    except StreamError as exc:
        raise CommandError(str(exc)) from None


def _add_stream_flags(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The stream consumer's flags: ``--reply-subject`` for ``stream``, ``--stream-reply-
    subject`` for ``serve``."""
    parser.add_argument(
        f"--{prefix}reply-subject",
        dest="reply_subject",
        help="subject of the answers to messages without a Reply-To inbox",
    )
    parser.add_argument(
        f"--{prefix}feedback-subject",
        dest="feedback_subject",
        help="subject of feedback messages (POST /v1/feedback bodies)",
    )
    parser.add_argument(
        "--stream-name" if prefix else "--stream",
        dest="stream",
        help="JetStream stream (created over the subjects when missing; default "
        "BANDITLAKE_<experiment>)",
    )
    parser.add_argument(
        f"--{prefix}durable",
        dest="durable",
        help="durable consumer name, shared by every process that splits the messages "
        "(default banditlake-<experiment>)",
    )
    parser.add_argument(
        f"--{prefix}max-in-flight",
        dest="max_in_flight",
        type=int,
        default=256,
        help="messages received and not yet acknowledged, at most (default 256)",
    )
    parser.add_argument(
        f"--{prefix}ack-wait",
        dest="ack_wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a message not acknowledged this long (its consumer died) is delivered again "
        "(default 30; applies when the consumer is created)",
    )
    parser.add_argument(
        "--nats-url",
        help="NATS server (default $BANDITLAKE_NATS_URL, else nats://127.0.0.1:4222)",
    )


def cmd_reallocator(_: argparse.Namespace) -> None:
    from api.reallocation.worker import run_process

    settings = _settings()
    check_stores(settings)
    run_process(settings)


def worker_environment(settings: Settings, *, pid: int) -> dict[str, str]:
    """The variables ``serve --workers N`` adds to the environment its workers inherit.

    uvicorn starts each worker as a new process that builds its app from an import
    string (:func:`api.app.create_app_from_env`), so the environment is the only way in:
    this is the one place that writes to it. The workers do not run the reallocation loop
    (``serve`` runs it in its own process), and each writes its metric samples to a
    directory that ``/metrics`` sums over (prometheus_client reads
    ``PROMETHEUS_MULTIPROC_DIR`` itself).
    """
    env = {"BANDITLAKE_REALLOCATE": "false"}
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(settings.home / "metrics" / f"serve-{pid}")
    return env


def _run_uvicorn(
    args: argparse.Namespace,
    settings: Settings,
    *,
    on_shutdown: Sequence[Callable[[], None]],
    stream: Any = None,
) -> None:
    import uvicorn

    from api.app import create_app
    from api.server import GracefulServer

    # Every request is already in the lake and the metrics; a line per request on stderr
    # costs more than the routing does.
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": "info",
        "access_log": args.access_log,
    }
    if args.workers == 1:
        app = create_app(settings, tune_gc=True, stream=stream)
        server = GracefulServer(
            uvicorn.Config(app, **options),
            app.state.shutdown,
            drain_delay_s=args.drain_delay,
            on_shutdown=on_shutdown,
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down
            server.run()
        if not server.started:
            # uvicorn.run's exit code when the app did not start (its error is logged).
            raise SystemExit(3)
        return
    # uvicorn's supervisor signals the workers itself: no drain delay; the requests in
    # flight get half the bound and each worker's writers the other half.
    options["timeout_graceful_shutdown"] = max(int(settings.shutdown_timeout_s / 2), 1)
    env = worker_environment(settings, pid=os.getpid())
    if "PROMETHEUS_MULTIPROC_DIR" in env:
        directory = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    os.environ.update(env)
    uvicorn.run("api.app:create_app_from_env", factory=True, workers=args.workers, **options)


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        msg = f"--arms must be comma-separated numbers such as 0.05,0.06; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values:
        raise argparse.ArgumentTypeError("--arms needs at least one mean reward")
    return values


class _SimulatedPolicies:
    """The registered policies ``simulate`` can run: argparse's ``choices`` for ``--policy``.

    Read from the registry when argparse first asks, so commands other than
    ``simulate`` do not import the statistics. ``simulate`` fills in a fixed split
    (equal weights); a policy needing another parameter without a default (a
    canary's arms) cannot run from its flags.
    """

    def _kinds(self) -> list[str]:
        from bandit.config import required_parameters
        from bandit.registry import policy_kinds

        return [kind for kind in policy_kinds() if required_parameters(kind) <= {"weights"}]

    def __contains__(self, kind: object) -> bool:
        from api.simulate_contextual import is_replay_policy_list

        # --contextual takes a comma-separated list (lints,thompson,random), checked there.
        return kind in self._kinds() or is_replay_policy_list(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds())


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def cmd_simulate(args: argparse.Namespace) -> None:
    import json

    from bandit.config import default_min_weight, policy_from_dict
    from bandit.errors import BanditError
    from bandit.simulate import arm_names, simulate

    if args.contextual:
        _simulate_contextual(args)
        return
    if args.policy is None:
        args.policy = "thompson"
    if args.batch is None:
        args.batch = 1000
    if args.arms is None:
        raise CommandError("simulate needs --arms (or --contextual with --data).")
    if args.policy not in _SimulatedPolicies()._kinds():
        msg = f"--policy {args.policy} is a contextual replay; it needs --contextual and --data."
        raise CommandError(msg)
    min_weight = default_min_weight(args.policy) if args.min_weight is None else args.min_weight
    params: dict[str, object] = {"min_weight": min_weight}
    if args.policy == "epsilon_greedy":
        params["epsilon"] = args.epsilon
    if args.policy == "fixed":
        params["weights"] = {f"arm{i}": 1 / len(args.arms) for i in range(len(args.arms))}
    try:
        policy = policy_from_dict(args.policy, params)
        result = simulate(
            args.arms,
            reward=args.reward,
            policy=policy,
            horizon=args.horizon,
            batch=args.batch,
            seeds=args.seeds,
            sigma=args.sigma,
        )
    except BanditError as exc:
        raise CommandError(str(exc).rstrip(".") + ".") from exc
    # One summary feeds both outputs, so the JSON holds everything the text shows.
    statistics = {"mean": result.mean, "p5": result.p5, "p50": result.p50, "p95": result.p95}
    regret = {k: _significant(v) for k, v in statistics.items()}
    names = arm_names(len(result.arms))
    shares = result.pulls.mean(axis=0) / result.horizon
    share = {name: _significant(float(s)) for name, s in zip(names, shares, strict=True)}
    if args.json:
        body = {
            **result.to_dict(),
            "arms": [_significant(mu) for mu in result.arms],
            "regret": regret,
            "reward": args.reward,
            "min_weight": min_weight,
            "share": share,
        }
        print(json.dumps(body))  # noqa: T201
        return
    lines = [
        f"policy {result.policy} on {args.reward} arms {list(result.arms)}: horizon "
        f"{result.horizon}, reallocating every {result.batch} requests, {len(result.seeds)} "
        f"seeds, floor {min_weight:g} per arm",
        "pseudo-regret  " + "  ".join(f"{k} {v:.1f}" for k, v in regret.items()),
        "mean share per arm  " + "  ".join(f"{k} {v:.3f}" for k, v in share.items()),
    ]
    print("\n".join(lines))  # noqa: T201


def _simulate_contextual(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from api.simulate_contextual import (
        DataError,
        is_replay_policy_list,
        load_supervised,
        run_contextual,
    )
    from bandit.contextual import LinearConfig
    from bandit.errors import BanditError

    if args.data is None or args.features is None or args.label is None:
        raise CommandError("simulate --contextual needs --data, --features and --label.")
    listed = args.policy or "lints,thompson,random"
    policies = [p.strip() for p in listed.split(",")]
    if not is_replay_policy_list(listed):
        msg = f"--policy with --contextual lists lints, linucb, thompson, random; not {listed}."
        raise CommandError(msg)
    batch = 100 if args.batch is None else args.batch
    if args.seeds < 1 or batch < 1:
        raise CommandError("--seeds and --batch must be at least 1.")
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    try:
        # The flags are checked before the file is read.
        LinearConfig(ridge=args.ridge, exploration=args.exploration)
        data = load_supervised(Path(args.data), features=features, label=args.label)
        figures = run_contextual(
            data,
            policies=policies,
            seeds=args.seeds,
            batch=batch,
            ridge=args.ridge,
            exploration=args.exploration,
        )
    except (DataError, BanditError) as exc:
        raise CommandError(str(exc).rstrip(".") + ".") from exc
    rounds = int(data.y.shape[0])
    if args.json:
        body = {
            "data": str(args.data),
            "features": list(data.features),
            "label": args.label,
            "arms": list(data.classes),
            "rounds": rounds,
            "batch": batch,
            "seeds": args.seeds,
            "ridge": args.ridge,
            "exploration": args.exploration,
            "policies": figures,
        }
        print(json.dumps(body))  # noqa: T201
        return
    lines = [
        f"{args.data}: {rounds} rounds, {len(data.classes)} arms (classes of {args.label!r}), "
        f"{len(data.features)} features, refit every {batch} rounds, {args.seeds} seeds (means)",
        f"{'policy':<10} {'reward':>10} {'average':>8} {'regret vs best arm':>19} "
        f"{'regret vs best per context':>27}",
    ]
    for policy, row in figures.items():
        lines.append(
            f"{policy:<10} {row['cumulative_reward']['mean']:>10.1f} {row['average_reward']:>8.3f} "
            f"{row['regret_fixed']['mean']:>19.1f} {row['regret_context']['mean']:>27.1f}"
        )
    print("\n".join(lines))  # noqa: T201


def cmd_demo(args: argparse.Namespace) -> None:
    from api.demo import run_demo

    run_demo(_settings(), rows=args.rows, port=args.port, seed=args.seed)


def cmd_example_model(args: argparse.Namespace) -> None:
    from pathlib import Path

    from api.example_model import OUTPUT, build_example_model

    features = [name.strip() for name in args.features.split(",")]
    model = build_example_model(features, kind=args.kind, seed=args.seed)
    out = Path(args.out)
    try:
        out.write_bytes(model.onnx)
    except OSError as exc:
        msg = f"Cannot write the model to {str(out)!r}: {exc.strerror or exc}."
        raise CommandError(msg) from exc
    print(  # noqa: T201
        f"wrote {out}: {model.description} on {model.rows} synthetic rows "
        f"(held-out accuracy {model.accuracy:.3f}); input X [N, {len(model.features)}] = "
        f"{','.join(model.features)}, first output {OUTPUT!r} [N, 1] = P(label 1)"
    )


def _duration(flag: str, text: str) -> Any:
    from datetime import timedelta

    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        msg = f"{flag} must be a number of seconds, 0 or more; got {text!r}."
        raise CommandError(msg)
    return timedelta(seconds=seconds)


# Experiments whose retention `compact` enforces: every one that has served traffic.
def cmd_compact(args: argparse.Namespace) -> None:
    import json
    from datetime import UTC, datetime

    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from api.control.experiments import retention_cutoffs_of_store
    from lake.compaction import CompactionProgress, compact
    from lake.errors import LakeConfigError
    from lake.retention import apply_retention
    from lake.storage import open_storage

    min_age = _duration("--min-age", args.min_age)
    grace = _duration("--grace", args.grace)
    settings = _settings()
    if settings.is_sqlite:
        from api.store.migrate import upgrade

        upgrade(settings.database_url)
    try:
        storage = open_storage(settings.lake_uri)
    except LakeConfigError as exc:
        raise CommandError(str(exc)) from exc
    show = sys.stderr.isatty()

    def progress(p: CompactionProgress) -> None:
        if show:
            sys.stderr.write(
                f"\r{p.table}: {p.files_done}/{p.files_total} files, {p.rows} rows, "
                f"{p.bytes_in} -> {p.bytes_out} bytes"
            )
            sys.stderr.flush()

    engine = create_engine(settings.database_url)
    try:
        # Retention first: expired rows are dropped before compaction would rewrite them.
        cutoffs = retention_cutoffs_of_store(engine, datetime.now(UTC))
        retention = apply_retention(engine, storage, cutoffs, grace=grace, progress=progress)
        summary = compact(engine, storage, min_age=min_age, grace=grace, progress=progress)
    except LakeConfigError as exc:
        raise CommandError(str(exc)) from exc
    except SQLAlchemyError as exc:
        where = settings.database_url.split("@")[-1]
        first = str(exc).splitlines()[0]
        msg = f"The SQL store at {where} failed ({first}); is it migrated (banditlake migrate)?"
        raise CommandError(msg) from exc
    except OSError as exc:
        msg = f"The lake at {storage.uri} failed: {str(exc).splitlines()[0]}"
        raise CommandError(msg) from exc
    finally:
        engine.dispose()
        if show:
            sys.stderr.write("\n")
    if args.json:
        print(json.dumps({**summary.to_dict(), "retention": retention.to_dict()}))  # noqa: T201
        return
    versions = ", ".join(f"{t} v{v}" for t, v in summary.delta_versions.items() if v is not None)
    dropped = ", ".join(f"{n} {t}" for t, n in retention.rows_dropped.items())
    print(  # noqa: T201
        f"retention: {len(cutoffs)} experiments, rewrote {retention.files_rewritten} files "
        f"into {retention.files_out}, dropped {dropped} rows; "
        f"compacted {summary.files_in} files into {summary.files_out} ({summary.rows} rows, "
        f"{summary.bytes_in} -> {summary.bytes_out} bytes) in {summary.seconds:.1f} s"
        f"{'; Delta ' + versions if versions else ''}; deleted "
        f"{summary.replaced_deleted + retention.replaced_deleted} replaced files"
    )


def cmd_score(args: argparse.Namespace) -> None:
    import json

    from api.batch import ScoreOptions, score

    options = ScoreOptions(
        experiment=args.experiment,
        input=args.input,
        output=args.output,
        variant=args.variant,
        all_variants=args.all_variants,
        id_column=args.id_column,
        unit_column=args.unit_column,
        log=not args.no_log,
        batch_size=args.batch_size,
        threads=args.threads,
        seed=args.seed,
    )
    summary = score(_settings(), options)
    if args.json:
        print(json.dumps(summary.to_dict()))  # noqa: T201
        return
    logged = f", {summary.logged} logged to the lake" if summary.logged else ", not logged"
    print(  # noqa: T201
        f"scored {summary.rows} rows in {summary.seconds:.1f} s "
        f"({summary.rows_per_s:,.0f} rows/s) into {summary.output}{logged}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banditlake",
        description="Multi-armed-bandit experiments over ONNX model variants.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="start the service (applies migrations on SQLite)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs both tokens set)",
    )
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log one line per HTTP request (off by default)"
    )
    serve.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=(
            "after SIGTERM, keep serving this long with /readyz at 503 before closing the "
            "listener, so the load balancer notices (default 0; counts in "
            "BANDITLAKE_SHUTDOWN_TIMEOUT_S; one worker only)"
        ),
    )
    serve.add_argument(
        "--stream-experiment",
        metavar="EXPERIMENT",
        help="also serve this experiment's predict requests off NATS JetStream (one worker)",
    )
    serve.add_argument(
        "--stream-subject", metavar="SUBJECT", help="subject of the streamed predict requests"
    )
    _add_stream_flags(serve, "stream-")
    serve.set_defaults(func=cmd_serve)
    stream = sub.add_parser(
        "stream",
        help="serve an experiment's predict requests and feedback off NATS JetStream",
    )
    stream.add_argument("experiment", help="the experiment that serves the requests")
    stream.add_argument("--subject", required=True, help="subject of the predict requests")
    _add_stream_flags(stream, "")
    stream.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on 127.0.0.1:PORT (default: none)",
    )
    stream.set_defaults(func=cmd_stream)
    realloc = sub.add_parser(
        "reallocator", help="run only the reallocation loop (serve already starts one)"
    )
    realloc.set_defaults(func=cmd_reallocator)
    migrate = sub.add_parser("migrate", help="apply the SQL store's migrations")
    migrate.set_defaults(func=cmd_migrate)
    sim = sub.add_parser("simulate", help="plan an experiment: a policy's regret on simulated arms")
    sim.add_argument("--arms", type=_floats, default=None, help="true mean reward of each arm")
    sim.add_argument(
        "--horizon", type=int, default=100_000, help="requests per run (default 100000)"
    )
    sim.add_argument(
        "--batch",
        type=int,
        default=None,
        help="requests between reallocations (default 1000; 100 with --contextual)",
    )
    sim.add_argument(
        "--policy",
        default=None,
        choices=_SimulatedPolicies(),
        help="allocation policy (default thompson; fixed is equal weights); with --contextual "
        "a list of lints, linucb, thompson, random (default lints,thompson,random)",
    )
    sim.add_argument(
        "--seeds", type=int, default=20, help="independent runs to summarise (default 20)"
    )
    sim.add_argument(
        "--reward",
        default="bernoulli",
        choices=["bernoulli", "gaussian"],
        help="reward of each arm: 0/1 draws or normal around its mean (default bernoulli)",
    )
    sim.add_argument("--sigma", type=float, default=1.0, help="noise of gaussian arms")
    sim.add_argument(
        "--min-weight",
        type=float,
        default=None,
        help="floor on every arm's weight (default as the API: 0.02, or 0 for fixed)",
    )
    sim.add_argument(
        "--epsilon",
        type=float,
        default=0.1,
        help="share of traffic explored uniformly by epsilon_greedy (default 0.1)",
    )
    sim.add_argument(
        "--contextual",
        action="store_true",
        help="replay a supervised data set as a bandit (arms = classes of --label)",
    )
    sim.add_argument("--data", default=None, help="with --contextual: a .parquet or .csv file")
    sim.add_argument("--features", default=None, help="with --contextual: numeric columns a,b,c")
    sim.add_argument("--label", default=None, help="with --contextual: the class column")
    sim.add_argument(
        "--ridge", type=float, default=10.0, help="with --contextual: ridge prior (default 10)"
    )
    sim.add_argument(
        "--exploration",
        type=float,
        default=0.1,
        help="with --contextual: LinTS posterior scale / LinUCB alpha (default 0.1)",
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.set_defaults(func=cmd_simulate)
    demo = sub.add_parser(
        "demo", help="train three digit classifiers and run them as an experiment"
    )
    demo.add_argument("--rows", type=int, default=3000, help="requests to replay")
    demo.add_argument("--port", type=int, default=8000, help="port of the service to show")
    demo.add_argument("--seed", type=int, default=0, help="seed of the replay order (default 0)")
    demo.set_defaults(func=cmd_demo)
    example = sub.add_parser(
        "example-model",
        help="train a small classifier on synthetic data and write it as ONNX",
    )
    example.add_argument(
        "--features", required=True, help="comma-separated input names, e.g. age,tenure,spend"
    )
    example.add_argument("--out", required=True, help="the .onnx file to write")
    example.add_argument(
        "--kind",
        default="gbm",
        choices=["gbm", "logistic"],
        help="gradient-boosted trees or a logistic regression (default gbm)",
    )
    example.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the model (default 0)"
    )
    example.set_defaults(func=cmd_example_model)
    comp = sub.add_parser(
        "compact",
        help=(
            "apply the experiments' retention, rewrite old small lake files as large "
            "sorted Delta files, delete replaced ones"
        ),
    )
    comp.add_argument(
        "--min-age",
        default="3600",
        help="compact files registered at least this many seconds ago (default 3600; 0: all)",
    )
    comp.add_argument(
        "--grace",
        default="3600",
        help="delete replaced files this many seconds after replacement (default 3600)",
    )
    comp.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    comp.set_defaults(func=cmd_compact)
    _score_parser(sub)
    return parser


# api.batch.DEFAULT_BATCH_SIZE, not imported: building the parser would load the batch module.
_SCORE_BATCH_SIZE = 65_536


def _score_parser(sub: Any) -> None:
    sc = sub.add_parser(
        "score",
        help="batch inference: score a Parquet or CSV table with an experiment's variants",
    )
    sc.add_argument("experiment", help="the experiment whose variants score the rows")
    sc.add_argument("input", help="a Parquet file, a directory of Parquet files or a .csv file")
    sc.add_argument("--output", required=True, help="the file to write (.csv, else Parquet)")
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--variant", help="score every row with this variant")
    which.add_argument(
        "--all-variants", action="store_true", help="score every row with every active variant"
    )
    sc.add_argument("--id-column", default="id", help="input column copied to OUTPUT (default id)")
    sc.add_argument(
        "--unit-column", help="unit id for sticky assignment and the lake (default: the id column)"
    )
    sc.add_argument("--no-log", action="store_true", help="do not log the rows to the lake")
    sc.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    sc.add_argument(
        "--batch-size",
        type=int,
        default=_SCORE_BATCH_SIZE,
        help=f"rows per chunk and model call (default {_SCORE_BATCH_SIZE})",
    )
    sc.add_argument("--threads", type=int, help="ONNX Runtime threads (default: one per core)")
    sc.add_argument("--seed", type=int, help="seed of the allocation's draws")
    sc.set_defaults(func=cmd_score)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every plugin and revision at INFO; `migrate` says the outcome itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except CommandError as exc:
        print(f"banditlake: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
