"""The ``selfheal`` command line. Subcommands import what they need when they run, so
``selfheal --help`` stays fast."""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
from collections.abc import Sequence
from typing import Any

from .cli_service import add_service_commands
from .cli_service import fail as _fail


def _demo(args: argparse.Namespace) -> int:
    from serve.demo import run_demo
    from serve.demo_simulation import run_deadlock_demo, run_simulation_demo

    if args.live:
        from healing.files import parse_duration
        from serve.demo_live import run_live_demo

        try:
            duration = parse_duration(args.duration, "--duration")
        except ValueError as exc:
            return _fail(exc)
        keep = pathlib.Path(args.keep) if args.keep else None
        if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            return _fail(ValueError(f"--keep {keep}: holds files already; give a new or "
                                    "empty folder"))
        run_live_demo(out=sys.stdout, duration_s=duration, keep=keep)
        return 0
    if args.keep:
        return _fail(ValueError("--keep: only with --live"))

    run_demo(out=sys.stdout, color=args.color)
    if args.core_only:
        run_simulation_demo(out=sys.stdout, chapter=6)
        return 0
    from serve.demo_cluster import run_cluster_demo

    run_cluster_demo(out=sys.stdout)
    run_simulation_demo(out=sys.stdout, chapter=8)
    run_deadlock_demo(out=sys.stdout, chapter=9)
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    import pathlib

    from actors.settings import SettingsError, load_settings
    from actors.stores.audit_checkpoints import public_path
    from actors.stores.audit_verify import VerifyError, verify_trail
    from serve.audit_report import format_report

    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        return _fail(exc)
    url = args.database_url or settings.audit_database_url()
    # The data directory's checkpoint log and spool belong to the configured database only:
    # checked against another database they would report its records as missing.
    own = url == settings.audit_database_url()
    logs = [pathlib.Path(p) for p in args.checkpoint_log] or \
        ([settings.checkpoint_log()] if own else [])
    keys = [pathlib.Path(p) for p in args.public_key] or [public_path(settings.signing_key_file())]
    try:
        report = verify_trail(url, checkpoint_logs=logs, public_keys=keys,
                              spool_dir=settings.spool_dir() if own else None,
                              missing_logs_ok=not args.checkpoint_log,
                              missing_keys_ok=not args.public_key)
    except VerifyError as exc:
        return _fail(exc)
    print(format_report(report))
    return 0 if report.intact else 1


def _catalogue(path: str | None, config: str | None) -> Any:
    """The catalogue named on the command line, else the settings', else the embedded one.

    Raises:
        ConfigError: a file of it, or the settings, are invalid.
    """
    from actors.settings import load_settings
    from healing.catalogue import SHIPPED, load_catalogue

    if path is None:
        path = load_settings(config).catalogue if config or os.path.exists("selfheal.toml") \
            or os.environ.get("SELFHEAL_CATALOGUE") else None
    return load_catalogue(path or SHIPPED)


def _overload(args: argparse.Namespace) -> int:
    import json

    from healing.errors import ConfigError
    from serve.outputs import OutputError, check_output, write_atomically
    from simulation.overload import run_overload
    from simulation.overload_scenario import OVERLOAD_SCENARIOS, load_overload

    files = args.files or sorted(str(p) for p in OVERLOAD_SCENARIOS.glob("*.yaml"))
    try:  # every file and the output path are checked before anything runs
        scenarios = [load_overload(p) for p in files]
        if args.json:
            check_output(args.json)
    except (ConfigError, OutputError) as exc:
        return _fail(exc)
    reports = [run_overload(sc) for sc in scenarios]
    for r in reports:
        print(f"{r['scenario']}: {r['description']}")
        print(f"  {'policy':<18} {'goodput/s':>9} {'p99 s':>7} {'life-crit':>9} "
              f"{'servable':>8}  shed (urgent/routine/batch)")
        for name, m in r["variants"].items():
            shed = m["shed"]
            print(f"  {name:<18} {m['goodput_per_s']:>9.1f} {m['p99_s'] or 0:>7.3f} "
                  f"{m['life_critical_success'] or 0:>9.1%} "
                  f"{m['life_critical_success_servable'] or 0:>8.1%}  "
                  f"{shed['urgent']}/{shed['routine']}/{shed['batch']}"
                  + (f"  hedged {m['hedge_rate']:.1%}, informational p99 "
                     f"{m['p99_informational_s']:.3f} s" if m["hedge_rate"] is not None
                     else ""))
    if args.json:
        try:
            write_atomically(pathlib.Path(args.json),
                             lambda f: f.write(json.dumps(reports, indent=2) + "\n"))
        except OutputError as exc:
            return _fail(exc)
    return 0


def _catalogue_check(args: argparse.Namespace) -> int:
    from healing.errors import ConfigError
    from learning.policy import policy_from

    try:
        cat = _catalogue(args.directory, args.config)
        policy = policy_from(cat)
    except ConfigError as exc:
        return _fail(exc)
    print(f"{cat.source}: {len(cat.services)} services, {len(cat.strategies)} strategy "
          f"files, {len(cat.workflows)} workflow files: valid")
    for name, svc in cat.services.items():
        strategy = next((s for s in policy.strategies if s.service == name), None)
        tiers = ", ".join(t.label for t in strategy.tiers) if strategy else "none (fails safe)"
        print(f"  {name}: {' > '.join(svc.providers)}; error threshold "
              f"{policy.error_thresholds[name]:.0%}; fallback: {tiers}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from healing.errors import ConfigError
    from serve.outputs import OutputError, check_output, write_atomically
    from simulation.scenario import load_scenario

    try:  # every file and every output path is checked before anything runs
        scenarios = [load_scenario(p) for p in args.files]
        catalogue = _catalogue(args.catalogue, args.config)
        if args.json:
            check_output(args.json)
    except (ConfigError, OutputError) as exc:
        return _fail(exc)
    if args.runs < 1:
        return _fail(ValueError(f"--runs must be at least 1, got {args.runs}"))
    if args.seed is not None and args.seed < 0:
        return _fail(ValueError(f"--seed must be a whole number >= 0, got {args.seed}"))
    if args.events and os.path.exists(args.events) and not os.path.isdir(args.events):
        return _fail(ValueError(f"--events {args.events}: is a file, not a folder"))
    from simulation.runner import SimulationInterrupted, estimate, report_json, simulate
    from simulation.table import format_reports

    mlflow_uri = None
    if not args.no_mlflow:
        from actors.settings import SettingsError, load_settings

        try:
            settings = load_settings(args.config)
        except SettingsError as exc:
            return _fail(exc)
        mlflow_uri = settings.mlflow_uri()
    from serve.progress import SimulationProgress, describe_estimate, refuse_estimate

    cost = estimate(scenarios, args.runs)
    refusal = refuse_estimate(cost)
    if refusal:
        biggest = max(scenarios, key=lambda sc: sc.duration_s * len(sc.services))
        return _fail(ValueError(f"{biggest.source or biggest.name}: duration: {refusal}"))
    warning = describe_estimate(cost)
    if warning:
        print(f"selfheal: {warning}", file=sys.stderr, flush=True)
    fan_out = None
    if not args.local and len(scenarios) * args.runs > 1:
        from actors.ray_gateway import as_completed, init_ray

        init_ray()
        fan_out = as_completed
    interrupted = None
    with SimulationProgress(sys.stderr) as progress:
        try:
            reports = simulate(scenarios, runs=args.runs, seed=args.seed, fan_out=fan_out,
                               events_dir=args.events, mlflow_uri=mlflow_uri,
                               progress=progress.update, catalogue=catalogue)
        except SimulationInterrupted as exc:
            reports, interrupted = exc.reports, exc
    unwritten = None
    if args.json and reports:  # before printing: a reader that stops early must not cost it
        try:
            write_atomically(pathlib.Path(args.json), lambda f: f.write(report_json(reports)))
        except OutputError as exc:  # a full disk after a long run: the table still shows it
            unwritten = exc
    if reports:
        print(format_reports(reports))
    if unwritten is not None:
        return _fail(unwritten)
    if args.json and reports:
        print(f"report written to {args.json}")
    if interrupted is not None:
        kept = "the report holds those" if reports else "nothing to report"
        print(f"selfheal: interrupted: {interrupted.finished} of {interrupted.total} runs had "
              f"finished; {kept}", file=sys.stderr)
        return 130
    return 0


def _detect(args: argparse.Namespace) -> int:
    from serve.detect import CsvError, detect_file
    from serve.outputs import OutputError

    try:
        n = detect_file(args.input, args.output, args.detector,
                        value_range=tuple(args.range) if args.range else None)
    except (CsvError, OutputError) as exc:
        return _fail(exc)
    if args.output:
        print(f"{n} rows scored into {args.output}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from actors.settings import SettingsError, load_settings
    from actors.training_job import DEFAULT_SCENARIOS, run_training
    from healing.errors import ConfigError
    from simulation.scenario import load_scenario

    default = list(DEFAULT_SCENARIOS)
    try:
        settings = load_settings(args.config)
        history = [load_scenario(p) for p in (args.history or default)]
        replay_on = [load_scenario(p) for p in (args.replay or args.history or default)]
    except (SettingsError, ConfigError) as exc:
        print(f"selfheal: {exc}", file=sys.stderr)
        return 2
    if not args.local:
        from actors.ray_gateway import init_ray

        init_ray()
    live = None
    if args.live:
        if settings.redis_url is None:
            print("selfheal: --live needs REDIS_URL (the metric streams)", file=sys.stderr)
            return 2
        from actors.live_history import live_history, stream_services
        from actors.stores.redis_conn import connect

        client = connect(settings.redis_url)
        live = live_history(client, settings.audit_database_url(), stream_services(client),
                            settings.metrics_sample_rate)
    out = run_training(settings.mlflow_uri(), history, replay_on, use_ray=not args.local,
                       promote=not args.no_promote, event_logs=args.events or (), live=live)
    print(f"trained: {', '.join(f'{s} h={h:g}' for s, h in sorted(out['policies'].items()))}")
    print(f"MLflow run {out['run_id']}, model version {out['version']}, compared with "
          f"{out['against']}:")
    for r in out["reasons"]:
        print(f"  {r}")
    print("promoted to champion" if out["promoted"] else "not promoted")
    if out["calibrated_thresholds"]:
        print("error thresholds on this history (targets: false positives <= 5 %, "
              "misses <= 1 %):")
        for line in out["calibrated_thresholds"]:
            print(f"  {line}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfheal")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfheal",
        description="Keeps clinical AI services answering through failures, safely.",
    )
    parser.add_argument("--version", action="version", version=f"selfheal {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run a short scripted outage and explain each step")
    demo.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                      help="colour the output (default: when writing to a terminal)")
    demo.add_argument("--live", action="store_true",
                      help="run the service with a clinical workload and scripted outages, "
                           "and watch them on the dashboard")
    demo.add_argument("--duration", default="150s",
                      help="how long --live runs (default 150s; Ctrl-C stops it sooner)")
    demo.add_argument("--keep", metavar="DIR",
                      help="with --live: keep the state in DIR (a new or empty folder), to "
                           "read afterwards with actors.frames.open_frames(DIR)")
    demo.add_argument("--core-only", action="store_true",
                      help="only the in-process stories (no Ray, no Redis)")
    demo.set_defaults(func=_demo)

    audit = sub.add_parser("audit", help="inspect the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify", help="check every record's chain, typed row and signed checkpoint",
        description="Exit status: 0 intact, 1 tampering or loss found, 2 could not check.")
    verify.add_argument("--database-url", help="audit database (default: from settings)")
    verify.add_argument("--checkpoint-log", action="append", default=[], metavar="FILE",
                        help="a checkpoint log to check against; repeat for one per machine "
                             "(default: the one in the data directory)")
    verify.add_argument("--public-key", action="append", default=[], metavar="FILE",
                        help="a public key that signs checkpoints; keep a copy where the "
                             "database's writers cannot change it (default: the .pub beside "
                             "the signing key)")
    verify.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    verify.set_defaults(func=_audit_verify)

    sim = sub.add_parser("simulate", help="replay scenario files: outcomes with self-healing "
                                          "and without")
    sim.add_argument("files", nargs="+", metavar="FILE", help="scenario files (YAML)")
    sim.add_argument("--runs", type=int, default=1, help="seeds per scenario (default 1)")
    sim.add_argument("--seed", type=int, default=None,
                     help="first seed (default: each scenario's own)")
    sim.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    sim.add_argument("--events", metavar="DIR",
                     help="write each run's event log as Parquet under DIR")
    sim.add_argument("--no-mlflow", action="store_true", help="do not log runs to MLflow")
    sim.add_argument("--local", action="store_true",
                     help="run in this process rather than as Ray tasks")
    sim.add_argument("--catalogue", metavar="DIR",
                     help="the service catalogue whose policy to replay (default: the "
                          "settings' catalogue, else the embedded one)")
    sim.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    sim.set_defaults(func=_simulate)

    ov = sub.add_parser("overload", help="latency, queues and overload: each scenario with "
                                         "no limit, a static limit and its call policy")
    ov.add_argument("files", nargs="*", metavar="FILE",
                    help="overload scenario files (default: the shipped library)")
    ov.add_argument("--json", metavar="OUT", help="write the reports as JSON to OUT")
    ov.set_defaults(func=_overload)

    add_service_commands(sub)

    cat = sub.add_parser("catalogue", help="the service catalogue")
    cat_sub = cat.add_subparsers(dest="catalogue_command", required=True, metavar="COMMAND")
    check = cat_sub.add_parser("check", help="validate a catalogue and summarise its policy")
    check.add_argument("directory", nargs="?", metavar="DIR",
                       help="catalogue directory (default: the settings', else the embedded)")
    check.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    check.set_defaults(func=_catalogue_check)

    det = sub.add_parser("detect", help="score a timestamp,value CSV for anomalies, streaming")
    det.add_argument("input", metavar="INPUT.csv")
    det.add_argument("-o", "--output", metavar="OUT.csv",
                     help="write here (default: standard output)")
    det.add_argument("--detector", default="selfheal",
                     choices=["selfheal", "deviation", "static_threshold", "rolling_zscore"],
                     help="the detector: selfheal's; its model-free cold start alone; or one "
                          "of the two baselines")
    det.add_argument("--range", nargs=2, type=float, metavar=("MIN", "MAX"),
                     help="the stream's minimum and maximum, known before it starts (a hint "
                          "NAB gives its detectors; never needed)")
    # argparse before Python 3.13 takes a negative number written with an exponent
    # (``--range -1e6 1e6``) for an option and refuses it as "expected 2 arguments"; this
    # parser has no option that looks like a number, so any such token is a value.
    det._negative_number_matcher = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
    det.set_defaults(func=_detect)

    tr = sub.add_parser("train", help="train the predictive monitor now: history, MLflow, "
                                      "replay, promotion")
    tr.add_argument("--history", nargs="+", metavar="FILE",
                    help="scenario files to learn from (default: the library's gradual "
                         "faults and its noisy healthy day)")
    tr.add_argument("--replay", nargs="+", metavar="FILE",
                    help="scenario files the candidate is replayed on (default: --history)")
    tr.add_argument("--events", nargs="+", metavar="DIR",
                    help="exported event logs to learn from too (selfheal simulate --events)")
    tr.add_argument("--live", action="store_true",
                    help="learn from the live metric streams and audit trail too")
    tr.add_argument("--no-promote", action="store_true", help="train and compare only")
    tr.add_argument("--local", action="store_true", help="train in this process, not on Ray")
    tr.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    tr.set_defaults(func=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `selfheal simulate ... | head`: the reader left; not an error
        # Python would complain again flushing stdout at exit: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("selfheal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
