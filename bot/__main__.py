"""Command line: ``python -m bot run|demo|check-config|ensure-indexes|backup|restore|…``.

``python -m bot --help`` lists every command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from bot.settings import ConfigError, Settings, load_settings, production_problems

EXIT_CONFIG = 2
EXIT_REFUSED = 1


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _configure_logging(settings: Settings, fmt: str | None = None) -> None:
    from bot.logging import configure_logging

    configure_logging(
        level=settings.logging.level,
        fmt=fmt or settings.logging.format,
        secrets=settings.secrets.values(),
    )


def cmd_check_config(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    print(json.dumps(settings.redacted(), indent=2, ensure_ascii=False))
    # What `run` would refuse (the same lines); this command only shows them.
    for problem in production_problems(settings):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    try:
        settings.secrets.require("TELEGRAM_BOT_TOKEN", "MONGO_URL")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problems = production_problems(settings, allow_memory=bool(args.allow_memory))
    if problems:
        more = len(problems) - 1
        tail = f" (and {more} more: python -m bot check-config lists them)" if more else ""
        print(f"refused: {problems[0]}{tail}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings)
    from bot.application import build_application, build_storage
    from bot.runner import StartupFailed, StartupRetry, run_until_signalled
    from bot.sentry import init_sentry
    from storage.indexes import IndexConflict

    dsn = settings.secrets.sentry_dsn
    init_sentry(dsn.get_secret_value() if dsn else None, settings.secrets.values())

    assert settings.secrets.mongo_url is not None
    storage = build_storage(settings, settings.secrets.mongo_url.get_secret_value())
    application = build_application(settings, storage)
    startup = settings.startup
    retry = StartupRetry(
        initial_delay=startup.retry_initial_seconds,
        max_delay=startup.retry_max_seconds,
        max_attempts=startup.max_attempts,
    )
    try:
        asyncio.run(
            run_until_signalled(
                application, poll_timeout=settings.telegram.poll_timeout, startup=retry
            )
        )
    except IndexConflict as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except StartupFailed as exc:
        # Exit 1 after an outage outlasted the retries: supervisord starts it again.
        print(f"start-up failed: {exc}", file=sys.stderr)
        return EXIT_CONFIG if exc.config_error else EXIT_REFUSED
    return 0


def cmd_ensure_indexes(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    try:
        settings.secrets.require("MONGO_URL")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings)
    from bot.application import build_storage

    assert settings.secrets.mongo_url is not None
    storage = build_storage(settings, settings.secrets.mongo_url.get_secret_value())

    from pymongo.errors import PyMongoError

    from storage.indexes import IndexConflict

    async def main() -> None:
        try:
            await storage.start()
        finally:
            await storage.close()

    try:
        asyncio.run(main())
    except IndexConflict as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except PyMongoError as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        print(f"ensure-indexes failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_REFUSED
    print("indexes ensured")
    return 0


def cmd_audit_ledger(args: argparse.Namespace) -> int:
    """Checks balance == sum(ledger) for every user; exit 1 on any mismatch."""
    settings = _settings_or_exit()
    try:
        settings.secrets.require("MONGO_URL")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings)
    from bot.application import build_storage

    assert settings.secrets.mongo_url is not None
    storage = build_storage(settings, settings.secrets.mongo_url.get_secret_value())

    from bot.audit import run_audit

    return asyncio.run(run_audit(storage, repair=not args.no_repair))


def cmd_delete_user_data(args: argparse.Namespace) -> int:
    """Erases one customer's personal data (see ``bot/privacy_cli.py``); 1 when refused."""
    settings = _settings_or_exit()
    url = _mongo_url_or_exit(settings)
    _configure_logging(settings)
    from bot.application import build_storage
    from bot.privacy_cli import run_deletion

    storage = build_storage(settings, url)
    return asyncio.run(
        run_deletion(settings, storage, args.user_id, confirm=bool(args.yes), actor=args.by)
    )


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _configure_logging(settings, fmt="console")
    from bot.demo import run_demo

    return asyncio.run(run_demo(settings, verbose=bool(args.verbose)))


_T = TypeVar("_T")


def _mongo_url_or_exit(settings: Settings) -> str:
    try:
        settings.secrets.require("MONGO_URL")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    assert settings.secrets.mongo_url is not None
    return settings.secrets.mongo_url.get_secret_value()


def _with_database(
    settings: Settings, database: str | None, work: Callable[[Any, str], Awaitable[_T]]
) -> _T:
    """Connects inside a fresh event loop, runs ``work(db, name)``, closes the client."""
    from storage.client import Mongo, MongoOptions

    url = _mongo_url_or_exit(settings)
    name = database or settings.mongo.database
    options = MongoOptions(
        database=name, server_selection_timeout_ms=settings.mongo.server_selection_timeout_ms
    )

    async def main() -> _T:
        mongo = Mongo.connect(url, options)
        try:
            return await work(mongo.db, name)
        finally:
            await mongo.close()

    return asyncio.run(main())


def cmd_backup(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _configure_logging(settings)
    from bot.backup import BackupError, backup_database, summary

    out = Path(args.out)
    try:
        manifest = _with_database(
            settings, args.database, lambda db, name: backup_database(db, out, database=name)
        )
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"backup written to {out}: {summary(manifest)}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _configure_logging(settings)
    from bot.backup import BackupError, RestoreRefused, restore_database, verify_backup

    source = Path(args.dir)
    try:
        verify_backup(source)  # before connecting: a damaged backup never touches the DB
        report = _with_database(
            settings,
            args.database,
            lambda db, _: restore_database(db, source, force=bool(args.force)),
        )
    except RestoreRefused as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    total = sum(report.documents.values())
    print(f"restored {total} documents into {len(report.documents)} collections from {source}")
    return 0


# ------------------------------------------------------------------ configuration reference

REFERENCE_BEGIN = "<!-- BEGIN config-reference (generated: python -m bot config-reference) -->"
REFERENCE_END = "<!-- END config-reference -->"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (tuple, list, set, frozenset):
        inner = args[0] if args else Any
        return f"list of {_type_name(inner)}"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " | ".join(json.dumps(m.value) for m in tp)
    if tp is type(None):
        return "null"
    if getattr(tp, "__name__", "") == "SecretStr":
        return "secret"
    if isinstance(tp, type) and hasattr(tp, "model_fields"):
        fields = ", ".join(
            f"{name}: {_type_name(f.annotation)}" for name, f in tp.model_fields.items()
        )
        return f"{{{fields}}}"
    return getattr(tp, "__name__", str(tp))


def _constraints(metadata: list[Any]) -> str:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = []
    for item in metadata:
        for attr, symbol in symbols.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        min_length = getattr(item, "min_length", None)
        if min_length is not None:
            parts.append(f"min length {min_length}")
    return ", ".join(parts)


def _default(value: Any) -> str:
    from pydantic_core import PydanticUndefined, to_jsonable_python

    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, Decimal):
        return f"`{value}`"
    return f"`{json.dumps(to_jsonable_python(value), ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_reference(settings_cls: type[Settings] = Settings) -> str:
    """Markdown reference of every setting: name, env var, type, default, constraints."""
    from pydantic import BaseModel

    from bot.settings import Secrets

    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    delimiter = str(settings_cls.model_config.get("env_nested_delimiter", "__"))
    sections: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], path: list[str]) -> None:
        for name, info in model.model_fields.items():
            if info.exclude:
                continue
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, [*path, name])
                continue
            key = ".".join([*path, name])
            env = prefix + delimiter.join(p.upper() for p in [*path, name])
            default = _default(info.get_default(call_default_factory=True))
            row = (
                f"| `{key}` | `{env}` | {_cell(_type_name(annotation))} "
                f"| {_cell(default)} | {_cell(_constraints(info.metadata))} |"
            )
            sections.setdefault(path[0] if path else "(top level)", []).append(row)

    walk(settings_cls, [])
    lines = [
        "Precedence: environment variable, then `config.yaml`, then the default. Lists and",
        "mappings are given as JSON in environment variables, e.g.",
        f"`{prefix}ADMINS='[{{\"user_id\": 123, \"role\": \"owner\"}}]'`.",
        "",
    ]
    header = ["| setting | environment variable | type | default | constraints |",
              "|---|---|---|---|---|"]
    for section, rows in sections.items():
        lines += [f"#### `{section}`", "", *header, *rows, ""]
    lines += [
        "#### Secrets (environment only, never in `config.yaml`)",
        "",
        "| environment variable | type |",
        "|---|---|",
    ]
    for info in Secrets.model_fields.values():
        lines.append(f"| `{info.validation_alias}` | {_cell(_type_name(info.annotation))} |")
    return "\n".join(lines).rstrip() + "\n"


def replace_reference_block(document: str, reference: str) -> str:
    begin = document.find(REFERENCE_BEGIN)
    end = document.find(REFERENCE_END)
    if begin < 0 or end < begin:
        raise ValueError("the document has no config-reference markers")
    head = document[: begin + len(REFERENCE_BEGIN)]
    return f"{head}\n{reference}{document[end:]}"


def cmd_config_reference(args: argparse.Namespace) -> int:
    reference = config_reference()
    target = Path(args.write or args.check) if (args.write or args.check) else None
    if target is None:
        print(reference, end="")
        return 0
    current = target.read_text(encoding="utf-8")
    updated = replace_reference_block(current, reference)
    if args.check:
        if updated != current:
            print(
                f"{target}: the configuration reference is out of date; run "
                f"python -m bot config-reference --write {target}",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        return 0
    target.write_text(updated, encoding="utf-8")
    print(f"updated the configuration reference in {target}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="ShipLabel Bot worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bot (long polling)")
    run.add_argument(
        "--allow-memory",
        action="store_true",
        help="accept MONGO_URL=mongomock:// (in-memory: nothing persists; trials only)",
    )
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="run the offline demo against the sandbox")
    demo.add_argument("--verbose", action="store_true", help="show the bot's logs too")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("check-config", help="print the effective settings").set_defaults(
        func=cmd_check_config
    )
    sub.add_parser("ensure-indexes", help="create MongoDB indexes").set_defaults(
        func=cmd_ensure_indexes
    )
    audit = sub.add_parser("audit-ledger", help="check balance == sum(ledger) for all users")
    audit.add_argument(
        "--no-repair", action="store_true", help="do not apply pending entries first"
    )
    audit.set_defaults(func=cmd_audit_ledger)
    delete = sub.add_parser(
        "delete-user-data", help="erase a customer's personal data (keeps accounting)"
    )
    delete.add_argument("user_id", type=int, help="the customer's Telegram user id")
    delete.add_argument("--yes", action="store_true", help="do it (default: report only)")
    delete.add_argument("--by", type=int, default=0, help="actor recorded in the audit")
    delete.set_defaults(func=cmd_delete_user_data)
    backup = sub.add_parser("backup", help="dump every collection to a directory")
    backup.add_argument("--out", required=True, help="new (or empty) directory to write")
    backup.add_argument("--database", help="database name (default: mongo.database)")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup directory")
    restore.add_argument("dir", help="directory written by `backup`")
    restore.add_argument("--database", help="database name (default: mongo.database)")
    restore.add_argument(
        "--force", action="store_true", help="replace the collections of a non-empty database"
    )
    restore.set_defaults(func=cmd_restore)
    reference = sub.add_parser(
        "config-reference", help="print the configuration reference (Markdown)"
    )
    group = reference.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DOC", help="replace the generated block in DOC")
    group.add_argument("--check", metavar="DOC", help="exit 1 if the block in DOC is stale")
    reference.set_defaults(func=cmd_config_reference)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
