"""Command line: ``python -m bot run|demo|check-config|ensure-indexes``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from bot.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


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
    return 0


def cmd_run(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    try:
        settings.secrets.require("TELEGRAM_BOT_TOKEN", "MONGO_URL")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings)
    from bot.application import build_application, build_storage
    from bot.runner import run_until_signalled

    assert settings.secrets.mongo_url is not None
    storage = build_storage(settings, settings.secrets.mongo_url.get_secret_value())
    application = build_application(settings, storage)
    asyncio.run(run_until_signalled(application, poll_timeout=settings.telegram.poll_timeout))
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

    async def main() -> None:
        await storage.start()
        await storage.close()

    asyncio.run(main())
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


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _configure_logging(settings, fmt="console")
    from bot.demo import run_demo

    return asyncio.run(run_demo(settings, verbose=bool(args.verbose)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="ShipLabel Bot worker")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot (long polling)").set_defaults(func=cmd_run)
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
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
