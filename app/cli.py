"""The `quarterdeck` command line (DESIGN §4)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import sys
from collections.abc import Iterator

from app.config import Config, ConfigError, load_config

log = logging.getLogger("quarterdeck")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.INFO if not args.verbose else logging.DEBUG, handlers=[handler]
    )
    # APScheduler logs every job run at INFO: one line per source every interval.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Alembic logs its context and each step at INFO; `db upgrade` says what it did itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = Config(demo=True) if args.command == "demo" else load_config(args.config)
    except ConfigError as exc:
        print(f"quarterdeck: configuration error: {exc}", file=sys.stderr)
        return 2
    from app.auth.accounts import AccountError

    try:
        return args.handler(config, args)
    except AccountError as exc:  # a user or token request the store cannot honour
        print(f"quarterdeck: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before a command set up its own handling (start-up)
        print("quarterdeck: interrupted", file=sys.stderr)
        return 130


class _LogFormatter(logging.Formatter):
    """The usual log lines, except audit records: those read as what they are."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "quarterdeck.audit":
            return f"{self.formatTime(record)} audit: {record.getMessage()}"
        return super().format(record)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quarterdeck", description=__doc__)
    parser.add_argument(
        "--config", help="TOML file (default: $QUARTERDECK_CONFIG or ./quarterdeck.toml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="web UI + API + collectors")
    serve.add_argument("--bind", help="HOST:PORT (overrides [server] bind)")
    serve.add_argument(
        "--dev", action="store_true", help="Flask's development server (not for production)"
    )
    serve.set_defaults(handler=_serve)

    db = sub.add_parser("db", help="store migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the store to the newest schema").set_defaults(
        handler=_db_upgrade
    )

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=_user_add)
    user_sub.add_parser("list", help="list users").set_defaults(handler=_user_list)
    set_role = user_sub.add_parser("set-role", help="give a user another role, at once")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=("viewer", "operator", "admin"))
    set_role.set_defaults(handler=_user_set_role)
    for verb, helptext in (
        ("disable", "stop a user signing in and end their sessions"),
        ("enable", "let a disabled user sign in again"),
        ("delete", "delete a user and end their sessions"),
    ):
        command = user_sub.add_parser(verb, help=helptext)
        command.add_argument("name")
        command.set_defaults(handler=_user_change, verb=verb)
    passwd = user_sub.add_parser("passwd", help="set a user's password and end their sessions")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    passwd.set_defaults(handler=_user_passwd)

    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create an API token and print it once")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    create.set_defaults(handler=_token_create)

    collect = sub.add_parser("collect", help="run collectors")
    collect.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    collect.add_argument("--only", default="", help="comma-separated source names or kinds")
    collect.set_defaults(handler=_collect)

    jobs = sub.add_parser("jobs", help="list every scheduled job, its last run, and the leader")
    jobs.set_defaults(handler=_jobs)

    action = sub.add_parser("action", help="change the fleet: planned, confirmed, audited")
    action_sub = action.add_subparsers(dest="action_command", required=True)
    for verb, helptext in (
        ("drain", "take an instance out of every balancer and put it in Consul maintenance"),
        ("ready", "put a drained instance back"),
    ):
        command = action_sub.add_parser(verb, help=helptext)
        command.add_argument("target", metavar="SERVICE/INSTANCE")
        command.add_argument("--reason", default="", help="why, for the audit")
        command.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
        command.add_argument("--yes", action="store_true", help="do not ask before running")
        if verb == "drain":
            command.add_argument(
                "--force", action="store_true", help="drain even the last healthy instance"
            )
            command.add_argument(
                "--wait",
                action="store_true",
                help="report done only when the instance holds no connection",
            )
            command.add_argument(
                "--wait-timeout", type=int, default=None, metavar="SECONDS",
                help="give up waiting after this long (default 120, at most 240)",
            )  # fmt: skip
        command.set_defaults(handler=_action, verb=verb)
    _add_service_action_parsers(action_sub)
    approve = action_sub.add_parser("approve", help="approve (and run) another's service action")
    approve.add_argument("id", help="the action's audit id")
    approve.set_defaults(handler=_action_approve)
    undo = action_sub.add_parser("undo", help="undo exactly what an audited action changed")
    undo.add_argument("id", help="the action's audit id")
    undo.set_defaults(handler=_action_undo)

    runbook = sub.add_parser("runbook", help="multi-step procedures from [runbooks] file")
    runbook_sub = runbook.add_subparsers(dest="runbook_command", required=True)
    runbook_sub.add_parser("list", help="list the runbooks and their steps").set_defaults(
        handler=_runbook_list
    )
    run = runbook_sub.add_parser("run", help="plan, confirm and run a runbook on a target")
    run.add_argument("name")
    run.add_argument("--target", required=True, metavar="SERVICE[/INSTANCE]")
    run.add_argument("--reason", default="", help="why, for the audit")
    run.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    run.add_argument("--yes", action="store_true", help="do not ask before running")
    run.add_argument("--force", action="store_true", help="drain even the last healthy instance")
    run.set_defaults(handler=_runbook_run)
    report = sub.add_parser("report", help="the on-call handoff reports")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    report_run = report_sub.add_parser("run", help="make a report now, store and deliver it")
    report_run.add_argument("name", help="a [[reports]] name")
    report_run.add_argument(
        "--out", help="also write it to this file (HTML; CSV when the name ends in .csv)"
    )
    report_run.set_defaults(handler=_report_run)
    report_sub.add_parser("list", help="configured reports and the stored ones").set_defaults(
        handler=_report_list
    )

    demo = sub.add_parser("demo", help="the dashboard on a fresh SQLite with a simulated fleet")
    demo.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    demo.add_argument(
        "--keep", action="store_true", help="keep the demo's folder (config, store) on exit"
    )
    demo.set_defaults(handler=_demo)
    return parser


def open_quarterdeck(config: Config, *, migrate: bool = False):
    """Open the store named by the config (migrating it first if asked) and its context.

    Exits with a message naming the store when its schema is missing or not current.
    """
    from app.context import Quarterdeck
    from app.store import migrate as migrations

    if migrate:
        migrations.upgrade(config.store.url)
        log.info("store created at schema %s", migrations.head_revision())
    elif problem := migrations.schema_problem(config.store.url):
        # Checked before anything opens the store: opening an SQLite path creates the file.
        raise SystemExit(f"quarterdeck: {problem}")
    return Quarterdeck.from_config(config)


@contextlib.contextmanager
def _opened(config: Config) -> Iterator:
    """Open the (current) store for one command and close its connections afterwards."""
    qd = open_quarterdeck(config)
    try:
        yield qd
    finally:
        qd.store.dispose()


def _db_upgrade(config: Config, _args) -> int:
    from app.store import migrate as migrations

    url = config.store.url
    try:
        before = migrations.upgrade(url)
    except Exception as exc:  # a migration runs in one transaction: nothing of it stayed
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"quarterdeck: db upgrade failed, the store is unchanged: {reason}", file=sys.stderr)
        return 1
    after = migrations.head_revision()
    where = migrations.shown_url(url)
    if before is None:
        print(f"store at {where} created at schema {after}")
    elif before == after:
        print(f"store at {where} already at the newest schema ({after})")
    else:
        print(f"store at {where} upgraded from schema {before} to {after}")
    return 0


def _read_password(args) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        print("quarterdeck: the passwords differ", file=sys.stderr)
        return None
    return password


def _cli_actor() -> str:
    """Name the person at the terminal for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def _user_add(config: Config, args) -> int:
    from app.auth.administration import add_user

    password = _read_password(args)
    if password is None:
        return 1
    with _opened(config) as qd:
        add_user(qd, _cli_actor(), args.name, args.role, password)
    print(f"user {args.name} created with role {args.role}")
    return 0


def _user_list(config: Config, _args) -> int:
    from app.auth.administration import list_users

    with _opened(config) as qd:
        users = list_users(qd)
    if not users:
        print("no users yet: create one with `quarterdeck user add NAME --role admin`")
        return 0
    print(f"{'NAME':<24} {'ROLE':<9} {'STATE':<9} LAST SIGN-IN")
    for user in users:
        state = "disabled" if user.disabled else "enabled"
        last = (
            user.last_sign_in_at.strftime("%Y-%m-%dT%H:%M:%SZ") if user.last_sign_in_at else "never"
        )
        print(f"{user.name:<24} {user.role:<9} {state:<9} {last}")
    return 0


def _jobs(config: Config, _args) -> int:
    from app.collection.jobs import declared_jobs
    from app.queries.jobs import job_views, leader_view

    def at(value) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "never"

    with _opened(config) as qd, qd.store.session() as db:
        leader = leader_view(db)
        views = job_views(db, declared_jobs(qd), qd.clock())
    if leader is None:
        print("leader: none yet (no `quarterdeck serve` has led)")
    else:
        print(f"leader: {leader.replica} since {at(leader.since_at)} (term {leader.term})")
    print(f"{'JOB':<28} {'EVERY':>7} {'STATUS':<7} {'LAST RUN':<21} {'TOOK':>8}  NEXT RUN")
    for job in views:
        took = f"{job.duration_s:.3f}s" if job.duration_s is not None else "-"
        next_run = at(job.next_run_at) if job.next_run_at else "-"
        print(
            f"{job.id:<28} {job.every_s:>6g}s {job.status:<7} {at(job.last_run_at):<21} "
            f"{took:>8}  {next_run}"
        )
        if job.status == "error":
            print(f"{'':<28} error: {job.last_error}")
    return 0


def _user_set_role(config: Config, args) -> int:
    from app.auth.administration import set_role

    with _opened(config) as qd:
        before = set_role(qd, _cli_actor(), args.name, args.role)
    if before == args.role:
        print(f"user {args.name} already has role {args.role}")
    else:
        print(f"user {args.name}: role {before} -> {args.role}")
    return 0


def _user_change(config: Config, args) -> int:
    from app.auth.administration import delete_user, set_disabled

    with _opened(config) as qd:
        if args.verb == "delete":
            delete_user(qd, _cli_actor(), args.name)
            print(f"user {args.name} deleted")
        else:
            ended = set_disabled(qd, _cli_actor(), args.name, args.verb == "disable")
            suffix = f" ({ended} sessions ended)" if ended else ""
            print(f"user {args.name} {args.verb}d{suffix}")
    return 0


def _user_passwd(config: Config, args) -> int:
    from app.auth.administration import reset_password

    password = _read_password(args)
    if password is None:
        return 1
    with _opened(config) as qd:
        ended = reset_password(qd, _cli_actor(), args.name, password)
    print(f"user {args.name}: new password set ({ended} sessions ended)")
    return 0


def _token_create(config: Config, args) -> int:
    from app.auth.administration import add_token

    with _opened(config) as qd:
        token = add_token(qd, _cli_actor(), args.name, args.role)
    print(token)
    print(f"(token {args.name}, role {args.role}: shown once; store it now)", file=sys.stderr)
    return 0


def _collect(config: Config, args) -> int:
    from app.collection.probes import run_and_record
    from app.collection.registry import configured_sources
    from app.collection.releases import track_releases
    from app.collection.runner import run_pass

    qd = open_quarterdeck(config)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    sources = [
        s
        for s in configured_sources(config, qd.clock)
        if not wanted or s.name in wanted or s.kind in wanted
    ]
    # Probes answer to "probes" (all of them) or "probe:<name>"; the releases job to "releases".
    probes = [
        p for p in config.probes if not wanted or "probes" in wanted or f"probe:{p.name}" in wanted
    ]
    extra = {"probes", "releases"} | {f"probe:{p.name}" for p in config.probes}
    unknown = wanted - {s.name for s in sources} - {s.kind for s in sources} - extra
    if unknown:
        print(
            f"quarterdeck: no configured source named {', '.join(sorted(unknown))}", file=sys.stderr
        )
        return 2
    failed = False
    for source in sources:
        if source.collector is None:
            print(f"{source.name:<16} {source.kind:<10} disabled (no collector in this version)")
            continue
        result = run_pass(qd, source.collector)
        if result.ok:
            figures = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
            print(f"{source.name:<16} {source.kind:<10} ok in {result.duration_s:.2f}s {figures}")
        else:
            failed = True
            print(f"{source.name:<16} {source.kind:<10} FAILED: {result.error}")
    # A failing probe is a result (recorded, with its reason), not a source that failed.
    for probe in probes:
        seen = run_and_record(qd, probe)
        state = "passing" if seen.ok else "failing"
        # The reason quotes the endpoint's answer: no control characters reach the terminal.
        detail = "".join(c if c.isprintable() else "?" for c in seen.detail)
        label = f"probe:{probe.name}"
        print(f"{label:<16} {'probe':<10} {state} in {seen.latency_ms:.0f} ms: {detail}")
    if not wanted or "releases" in wanted:
        run = track_releases(qd)
        figures = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items()))
        if run.ok:
            print(f"{'releases':<16} {'job':<10} ok {figures}")
        else:
            failed = True
            print(f"{'releases':<16} {'job':<10} FAILED: {run.error}")
    return 1 if failed else 0


def _action(config: Config, args) -> int:
    from app.actions.command import run_instance_command

    with _opened(config) as qd:
        return run_instance_command(
            qd,
            _cli_actor(),
            args.verb,
            args.target,
            reason=args.reason,
            dry_run=args.dry_run,
            yes=args.yes,
            force=getattr(args, "force", False),
            wait=getattr(args, "wait", False),
            wait_timeout_s=getattr(args, "wait_timeout", None),
        )


def _add_service_action_parsers(action_sub) -> None:
    """`action degrade|restore|canary|rollback SERVICE`: the API's params as options."""
    helps = {
        "degrade": "write the service's degrade switch (it expires at --until)",
        "restore": "delete the service's degrade switch",
        "canary": "shift a percentage of requests between two versions' servers by weight",
        "rollback": "move traffic back to the previous release and write the releases key",
    }
    for verb, helptext in helps.items():
        command = action_sub.add_parser(verb, help=helptext)
        command.add_argument("service", metavar="SERVICE")
        command.add_argument("--reason", default="", help="why, for the audit")
        command.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
        command.add_argument("--yes", action="store_true", help="do not ask before running")
        command.add_argument(
            "--break-glass",
            action="store_true",
            help="run without the approval it needs (needs --reason; loudly audited)",
        )
        if verb in ("degrade", "canary", "rollback"):
            command.add_argument(
                "--no-silence", action="store_true", help="do not silence its alerts meanwhile"
            )
        if verb == "degrade":
            command.add_argument("--level", default="degraded", help="the switch's level")
            command.add_argument(
                "--feature", action="append", default=[], help="a feature to switch off (repeat)"
            )
            command.add_argument("--until", help="RFC 3339 end (default: in one hour)")
            command.add_argument("--for", dest="duration_s", type=int, help="seconds, not --until")
        if verb in ("degrade", "restore"):
            command.add_argument("--weight", type=int, help="also set this HAProxy weight")
        if verb == "canary":
            command.add_argument("--from", dest="from_version", required=True, help="old version")
            command.add_argument("--to", dest="to_version", required=True, help="canary version")
            share = command.add_mutually_exclusive_group(required=True)
            share.add_argument("--percent", type=int, help="the canary's share of requests")
            share.add_argument("--abort", action="store_true", help="all traffic back to --from")
        command.set_defaults(handler=_service_action, verb=verb)


def _service_action(config: Config, args) -> int:
    from app.actions.command import run_action_command

    params: dict = {}
    if getattr(args, "no_silence", False):
        params["silence"] = False
    if args.verb == "degrade":
        params.update(level=args.level, features_off=args.feature)
        if args.until:
            params["until"] = args.until
        if args.duration_s is not None:
            params["duration_s"] = args.duration_s
    if getattr(args, "weight", None) is not None:
        params["weight"] = args.weight
    if args.verb == "canary":
        params.update({"from": args.from_version, "to": args.to_version})
        if args.abort:
            params["abort"] = True
        else:
            params["percent"] = args.percent
    body = {
        "action": args.verb,
        "target": {"service": args.service},
        "params": params,
        "reason": args.reason,
        "break_glass": args.break_glass,
    }
    with _opened(config) as qd:
        return run_action_command(qd, _cli_actor(), body, dry_run=args.dry_run, yes=args.yes)


def _action_approve(config: Config, args) -> int:
    from app.actions.command import run_approve_command

    with _opened(config) as qd:
        return run_approve_command(qd, _cli_actor(), args.id)


def _action_undo(config: Config, args) -> int:
    from app.actions.command import run_undo_command

    with _opened(config) as qd:
        return run_undo_command(qd, _cli_actor(), args.id)


def _runbook_list(config: Config, _args) -> int:
    from app.runbooks.command import list_runbooks_command

    with _opened(config) as qd:
        return list_runbooks_command(qd)


def _runbook_run(config: Config, args) -> int:
    from app.runbooks.command import run_runbook_command

    with _opened(config) as qd:
        return run_runbook_command(
            qd,
            _cli_actor(),
            args.name,
            args.target,
            reason=args.reason,
            dry_run=args.dry_run,
            yes=args.yes,
            force=args.force,
        )


def _report_run(config: Config, args) -> int:
    from app.reports.commands import run_report_command

    with _opened(config) as qd:
        return run_report_command(qd, args.name, args.out)


def _report_list(config: Config, _args) -> int:
    from app.reports.commands import list_reports_command

    with _opened(config) as qd:
        return list_reports_command(qd)


def _serve(config: Config, args) -> int:
    if args.bind:
        config = config.replace(server=_with_bind(config, args.bind))
    qd = open_quarterdeck(config, migrate=_store_is_empty(config))
    _warn_without_users(qd)
    return _run_server(qd, dev=args.dev)


def _warn_without_users(qd) -> None:
    from sqlalchemy import func, select

    from app.models import User

    with qd.store.session() as db:
        if not db.scalar(select(func.count()).select_from(User)):
            log.warning(
                "no users yet: create the first admin with `quarterdeck user add NAME --role admin`"
            )


def _store_is_empty(config: Config) -> bool:
    from app.store.db import create_store_engine
    from app.store.migrate import current_revision

    engine = create_store_engine(config.store.url)
    try:
        return current_revision(engine) is None
    finally:
        engine.dispose()


def _with_bind(config: Config, bind: str):
    import dataclasses

    host, sep, port = bind.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise SystemExit(f"quarterdeck: --bind {bind!r} must be HOST:PORT")
    return dataclasses.replace(config.server, bind=bind)


def _run_server(qd, *, dev: bool = False) -> int:
    if not dev:
        from app.serving import serve_quarterdeck

        return serve_quarterdeck(qd)
    from app.factory import create_app
    from app.replicas.running import Replica

    app = create_app(qd=qd)
    host, _, port = qd.config.server.bind.rpartition(":")
    collection = Replica(qd).start()
    log.info("Quarterdeck (development server) listening on http://%s:%s/", host, port)
    try:
        app.run(host=host, port=int(port), threaded=True, use_reloader=False)
    finally:
        qd.feed.close()
        collection.stop()
    return 0


def _demo(config: Config, args) -> int:
    from demo.run import run_demo

    return run_demo(args.bind, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
