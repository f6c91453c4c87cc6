"""The `lotse` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import logs
from bot.app import demo_config, open_app
from bot.config import ConfigError, load_config
from bot.demo import run_demo
from flows.graph import mermaid
from flows.offers import SHIPPED_OFFERS, DirectoryError, check_directory
from flows.problems import Problem
from flows.questionnaire import (
    SHIPPED_QUESTIONNAIRE,
    QuestionnaireError,
    check_questionnaire,
    load_questionnaire,
)
from flows.texts import SHIPPED_TEXTS, TextsError, check_texts
from storage.db import DatabaseError
from storage.server_secret import SecretError

OPERATOR_ERRORS = (
    ConfigError,
    QuestionnaireError,
    DirectoryError,
    TextsError,
    SecretError,
    DatabaseError,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lotse", description="Secure intake for threatened office holders."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more (never message content)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the intake in this terminal, with a built-in staff room"
    )
    demo.add_argument(
        "--data-dir", type=Path, default=Path("lotse-demo"), help="default: ./lotse-demo"
    )
    demo.add_argument(
        "--config", type=Path, help="use this configuration instead of the demo defaults"
    )

    flow = commands.add_parser("flow", help="check or draw the questionnaire").add_subparsers(
        dest="flow_command", required=True, metavar="ACTION"
    )
    check = flow.add_parser(
        "check", help="report every problem in a questionnaire and offer directory"
    )
    check.add_argument("file", nargs="?", type=Path, default=SHIPPED_QUESTIONNAIRE)
    check.add_argument("--offers", type=Path, default=SHIPPED_OFFERS)
    check.add_argument("--texts", type=Path, default=SHIPPED_TEXTS)
    graph = flow.add_parser("graph", help="print the questionnaire as a Mermaid diagram")
    graph.add_argument("file", nargs="?", type=Path, default=SHIPPED_QUESTIONNAIRE)
    graph.add_argument("--language", choices=["de", "en"])

    database = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    database.add_parser("upgrade", help="apply migrations").add_argument(
        "--config", type=Path, required=True
    )

    config = commands.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    config.add_parser("check", help="validate a configuration file").add_argument("file", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    logs.configure(logging.DEBUG if arguments.verbose else logging.WARNING)
    try:
        return _dispatch(arguments)
    except OPERATOR_ERRORS as error:
        _print_operator_error(error)
        return 1
    except KeyboardInterrupt:
        return 130


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


def _dispatch(arguments: argparse.Namespace) -> int:
    if arguments.command == "demo":
        config = (
            load_config(arguments.config) if arguments.config else demo_config(arguments.data_dir)
        )
        return asyncio.run(run_demo(config))
    if arguments.command == "flow" and arguments.flow_command == "check":
        return _flow_check(arguments.file, arguments.offers, arguments.texts)
    if arguments.command == "flow":
        print(mermaid(load_questionnaire(arguments.file), arguments.language), end="")
        return 0
    if arguments.command == "db":
        return asyncio.run(_db_upgrade(arguments.config))
    load_config(arguments.file)
    print(f"{arguments.file}: configuration is valid")
    return 0


def _flow_check(questionnaire_path: Path, offers_path: Path, texts_path: Path) -> int:
    questionnaire, problems = check_questionnaire(questionnaire_path)
    reports: list[tuple[Path, list[Problem]]] = [(questionnaire_path, problems)]
    languages = questionnaire.meta.languages if questionnaire else ["de", "en"]
    reports.append((texts_path, check_texts(texts_path, languages)[1]))
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


async def _db_upgrade(config_path: Path) -> int:
    async with open_app(load_config(config_path)):
        pass
    print("database schema is up to date")
    return 0
