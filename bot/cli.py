"""The `lotse` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from bot import admin, event_loop, handles, logs
from bot.app import App, demo_config, load_engine, open_app
from bot.backup import restore_backup, take_backup
from bot.casebook import ExportError
from bot.config import Config, ConfigError, StartupError, load_config
from bot.demo import DEFAULT_DEMO_DIR, run_demo
from bot.doctor import run_doctor
from bot.instance import InstanceError
from flows.graph import mermaid
from flows.offers import SHIPPED_OFFERS, DirectoryError, check_directory
from flows.problems import Problem
from flows.questionnaire import (
    SHIPPED_QUESTIONNAIRE,
    QuestionnaireError,
    check_questionnaire,
    load_questionnaire,
)
from flows.safety import SHIPPED_SAFETY, check_safety
from flows.texts import SHIPPED_TEXTS, TextsError, check_texts
from storage.audit import AuditError
from storage.backup import BackupError
from storage.casefile import CaseError
from storage.db import DatabaseError
from storage.key_binding import KeyBindingError
from storage.keyfile import KeyFileError
from storage.keyring import KeyringError
from storage.server_secret import DecryptionError, SecretError

OPERATOR_ERRORS = (
    ConfigError, QuestionnaireError, DirectoryError, TextsError, SecretError, DatabaseError,
    KeyFileError, KeyringError, CaseError, DecryptionError, admin.CommandError, AuditError,
    KeyBindingError, ExportError, handles.HandleError, InstanceError, BackupError,
)  # fmt: skip
CHANNEL_START_FAILED = 2  # a channel could not log in: wrong password, no server, lost device
CONFIG_ENV = "LOTSE_CONFIG"


def _with_data(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options that say which Lotse's data a command works on."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help=f"configuration file (default: ${CONFIG_ENV})")
    where.add_argument(
        "--data-dir", type=Path, help=f"a demo's data folder (default: ./{DEFAULT_DEMO_DIR})"
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lotse", description="Secure intake for threatened office holders."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more (never message content)"
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="json: one JSON object per line, for log collectors (default: text)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the intake in this terminal, with a built-in staff room"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DEMO_DIR),
        help=f"default: ./{DEFAULT_DEMO_DIR}",
    )
    demo.add_argument(
        "--config", type=Path, help="use this configuration instead of the demo defaults"
    )

    run = commands.add_parser("run", help="run the configured channels and the daily retention job")
    run.add_argument("--config", type=Path, required=True)

    keys = commands.add_parser("keys", help="counsellor key pairs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    generate = keys.add_parser("generate", help="a new key pair, on the counsellor's own machine")
    generate.add_argument(
        "--out", type=Path, required=True, help="private key file; FILE.pub is written beside it"
    )
    generate.add_argument("--name", help="the counsellor's name (default: the file's name)")

    counsellor = commands.add_parser("counsellor", help="manage counsellors").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = _with_data(
        counsellor.add_parser("add", help="add a counsellor (re-seals the team key to them)")
    )
    add.add_argument("name")
    add.add_argument("--public-key", type=Path, required=True)
    add.add_argument("--display-name", help="the name officials see (default: NAME)")
    add.add_argument(
        "--handle",
        action="append",
        default=[],
        metavar="CHANNEL:ID",
        help="how a staff room knows them, e.g. telegram:123456789 or matrix:@b:example.org "
        "(repeatable; one per channel)",
    )
    add.add_argument("--matrix-id", metavar="ID", help="the same as --handle matrix:ID")
    add.add_argument("--telegram-id", metavar="ID", help="the same as --handle telegram:ID")
    add.add_argument(
        "--by",
        type=Path,
        help="key file of an existing counsellor (with --first: the first one's own, to sign "
        "the team key at once)",
    )
    add.add_argument(
        "--first", action="store_true", help="the very first counsellor: creates the team key"
    )
    _with_data(counsellor.add_parser("list", help="counsellors and their key fingerprints"))
    revoke = _with_data(
        counsellor.add_parser("revoke", help="revoke a counsellor and rotate the team key")
    )
    revoke.add_argument("name")
    revoke.add_argument("--by", type=Path, required=True, help="key file of another counsellor")

    cases = commands.add_parser("cases", help="cases").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _with_data(
        cases.add_parser(
            "list", help="references, status, urgency, times: no content, no key needed"
        )
    )
    stats = _with_data(cases.add_parser("stats", help="times to claim and to first reply"))
    stats.add_argument(
        "--since", type=dt.date.fromisoformat, help="first day (default: 30 days ago)"
    )
    stats.add_argument("--until", type=dt.date.fromisoformat, help="last day (default: today)")
    show = _with_data(cases.add_parser("show", help="decrypt one case with a counsellor key"))
    show.add_argument("reference")
    show.add_argument("--key", type=Path, required=True)
    export = _with_data(
        cases.add_parser("export", help="case record, attachments and a SHA-256 manifest")
    )
    export.add_argument("reference")
    export.add_argument("--key", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True)

    _with_data(commands.add_parser("purge", help="apply the retention rules now"))
    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _with_data(audit.add_parser("verify", help="check the audit chain"))

    flow = commands.add_parser("flow", help="check or draw the questionnaire").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    check = flow.add_parser(
        "check", help="report every problem in a questionnaire and offer directory"
    )
    check.add_argument("file", nargs="?", type=Path, default=SHIPPED_QUESTIONNAIRE)
    check.add_argument("--offers", type=Path, default=SHIPPED_OFFERS)
    check.add_argument("--texts", type=Path, default=SHIPPED_TEXTS)
    check.add_argument("--safety", type=Path, default=SHIPPED_SAFETY)
    graph = flow.add_parser("graph", help="print the questionnaire as a Mermaid diagram")
    graph.add_argument("file", nargs="?", type=Path, default=SHIPPED_QUESTIONNAIRE)
    graph.add_argument("--language", choices=["de", "en"])

    database = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _with_data(database.add_parser("upgrade", help="apply migrations"))

    _add_operations(commands)

    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    config.add_parser("check", help="validate a configuration file").add_argument("file", type=Path)
    return parser


def _add_operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Backups and the operator's check-up (README: Backups, Running as a service)."""
    backup = _with_data(
        commands.add_parser("backup", help="a consistent copy of the database, while it runs")
    )
    backup.add_argument("--out", type=Path, required=True, help="a new file (never overwritten)")
    restore = _with_data(
        commands.add_parser("restore", help="put a backup back into an empty database")
    )
    restore.add_argument("file", type=Path)
    doctor = commands.add_parser("doctor", help="check a deployment, one line per check")
    doctor.add_argument("--config", type=Path, required=True)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logs.configure(logging.DEBUG if arguments.verbose else logging.WARNING, arguments.log_format)
    try:
        return _dispatch(arguments)
    except StartupError as error:  # a channel could not start (Telegram, Matrix)
        print(f"lotse: {error}", file=sys.stderr)
        return CHANNEL_START_FAILED
    except OPERATOR_ERRORS as error:
        _print_operator_error(error)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # an operator at 2 a.m. gets one line and where to look
        if arguments.verbose:
            raise
        print(f"lotse: {_unexpected(error)}; run again with -v for the details", file=sys.stderr)
        return 1


def _unexpected(error: Exception) -> str:
    """One line for an error no check foresaw: what kind, and the file or database if known."""
    if isinstance(error, SQLAlchemyError):
        return (
            f"the database failed ({type(error).__name__}); check storage.url, "
            "and that lotse db upgrade ran"
        )
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or type(error).__name__}"
    if isinstance(error, MemoryError):
        return "out of memory"
    return f"unexpected {type(error).__name__}"


def _print_operator_error(error: Exception) -> None:
    problems = getattr(error, "problems", None)
    if problems is not None and not isinstance(error, ConfigError):
        print(
            f"lotse: {getattr(error, 'source', '')} has {len(problems)} problem(s):",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return
    print(f"lotse: {error}", file=sys.stderr)


def _target(arguments: argparse.Namespace) -> Config:
    """Which Lotse's data: --config, --data-dir, $LOTSE_CONFIG, or the demo's folder here."""
    if getattr(arguments, "config", None):
        return load_config(arguments.config)
    if getattr(arguments, "data_dir", None):
        return demo_config(arguments.data_dir)
    if os.environ.get(CONFIG_ENV):
        return load_config(Path(os.environ[CONFIG_ENV]))
    if Path(DEFAULT_DEMO_DIR).is_dir():
        return demo_config(Path(DEFAULT_DEMO_DIR))
    raise ConfigError(
        "lotse",
        [Problem("--config", f"name the configuration with --config FILE or ${CONFIG_ENV}")],
    )


def _with_app(arguments: argparse.Namespace, work: Callable[[App], Awaitable[int]]) -> int:
    command, action = arguments.command, getattr(arguments, "action", None)
    # Only these may set up a new database; every other command works on an existing one.
    creates = (command, action) in {("db", "upgrade"), ("counsellor", "add")}

    async def run() -> int:
        async with open_app(_target(arguments), may_create=creates) as app:
            return await work(app)

    return event_loop.run(run())


def _dispatch(arguments: argparse.Namespace) -> int:
    command, action = arguments.command, getattr(arguments, "action", None)
    if command == "demo":
        config = (
            load_config(arguments.config) if arguments.config else demo_config(arguments.data_dir)
        )
        return event_loop.run(run_demo(config))
    if command == "run":
        # Imported here: the channels' libraries (Telegram, Matrix) load only for `lotse run`,
        # so the demo and the other commands stay light.
        from bot.runner import run_service  # noqa: PLC0415

        return event_loop.run(run_service(load_config(arguments.config)))
    if command == "keys":
        return admin.generate_keys(arguments.out, arguments.name or arguments.out.stem)
    if command == "flow" and action == "check":
        return _flow_check(arguments.file, arguments.offers, arguments.texts, arguments.safety)
    if command == "flow":
        print(mermaid(load_questionnaire(arguments.file), arguments.language), end="")
        return 0
    if command == "config":
        load_engine(load_config(arguments.file))  # the questionnaire files, as `run` reads them
        print(f"{arguments.file}: configuration is valid")
        return 0
    if command == "backup":
        return event_loop.run(take_backup(_target(arguments), arguments.out))
    if command == "restore":
        return event_loop.run(restore_backup(_target(arguments), arguments.file))
    if command == "doctor":
        return event_loop.run(run_doctor(arguments.config))
    return _with_app(arguments, _data_command(arguments))


def _data_command(arguments: argparse.Namespace) -> Callable[[App], Awaitable[int]]:
    command, action = arguments.command, getattr(arguments, "action", None)
    if command == "counsellor" and action == "add":
        given = handles.from_arguments(  # checked before the database is opened
            arguments.handle, telegram_id=arguments.telegram_id, matrix_id=arguments.matrix_id
        )
        return lambda app: admin.add_counsellor(
            app,
            arguments.name,
            arguments.public_key,
            display_name=arguments.display_name,
            handles=given,
            by=arguments.by,
            first=arguments.first,
        )
    if command == "counsellor" and action == "list":
        return admin.list_counsellors
    if command == "counsellor":
        return lambda app: admin.revoke_counsellor(app, arguments.name, arguments.by)
    if command == "cases" and action == "list":
        return lambda app: admin.list_cases(app.store)
    if command == "cases" and action == "stats":
        return lambda app: admin.case_stats(app, arguments.since, arguments.until)
    if command == "cases" and action == "show":
        return lambda app: admin.show_case(app, arguments.reference, arguments.key)
    if command == "cases":
        return lambda app: admin.export_case(app, arguments.reference, arguments.key, arguments.out)
    if command == "purge":
        return admin.purge
    if command == "audit":
        return lambda app: admin.verify_audit(app.store)
    return _schema_is_current


async def _schema_is_current(app: App) -> int:
    print("database schema is up to date")
    return 0


def _flow_check(
    questionnaire_path: Path, offers_path: Path, texts_path: Path, safety_path: Path
) -> int:
    questionnaire, problems = check_questionnaire(questionnaire_path)
    reports: list[tuple[Path, list[Problem]]] = [(questionnaire_path, problems)]
    languages = questionnaire.meta.languages if questionnaire else ["de", "en"]
    texts, text_problems = check_texts(texts_path, languages)
    reports.append((texts_path, text_problems))
    # The safety replies may show only numbers the safety file lists with a source.
    replies = texts.messages if texts is not None else None
    reports.append((safety_path, check_safety(safety_path, replies)[1]))
    reports.append(
        (offers_path, check_directory(offers_path, questionnaire if not problems else None)[1])
    )
    failed = False
    for path, found in reports:
        if found:
            failed = True
            print(f"{path}: {len(found)} problem(s)")
            for problem in found:
                print(f"  {problem}")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0
