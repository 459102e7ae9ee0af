"""The worker process of the order benchmark: ``python -m bench.worker``.

The production application — the same ``build_application`` and runner as
``python -m bot run`` — polling the Bot API emulator of the benchmark process, with the
database from ``MONGO_URL`` (in-memory when unset). Before it reports ready it gives every
benchmark customer an account with a balance, so each can pay for one label. On SIGTERM it
runs ``audit-ledger``, prints one JSON line and stops like the real worker.
``BENCH_PROFILE=<file>`` writes a cProfile of the worker to that file.

Lines on stdout: ``{"ready": true}`` once polling, then ``{"audit_checked": N,
"audit_mismatches": M, ...}`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import uuid

from bench.common import bench_settings
from bot.application import build_application, build_storage
from bot.runner import start_application, stop_application
from services.clock import utc_now

BALANCE_CENTS = 10_000


async def main(args: argparse.Namespace) -> None:
    settings = bench_settings(args.carrier_url)
    url = os.environ.get("MONGO_URL") or "mongomock://"
    database = settings.mongo.database
    if not url.startswith("mongomock://"):
        database = f"shiplabel_bench_{uuid.uuid4().hex[:8]}"  # never a real shop's data
    settings = settings.model_copy(
        update={
            "telegram": settings.telegram.model_copy(
                update={
                    "base_url": f"{args.telegram_url}/bot",
                    "base_file_url": f"{args.telegram_url}/file/bot",
                    "connection_pool_size": args.pool,
                }
            ),
            "mongo": settings.mongo.model_copy(update={"database": database}),
        }
    )
    storage = build_storage(settings, url)
    application = build_application(settings, storage, token=args.token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await start_application(application, poll_timeout=settings.telegram.poll_timeout)
    repos = application.bot_data.require_storage()
    now = utc_now()
    for uid in range(args.first_user, args.first_user + args.customers):
        await repos.users.register(
            uid, language="en", username=None, first_name=f"C{uid}", now=now
        )
        await repos.ledger.apply(
            user_id=uid, amount_cents=BALANCE_CENTS, kind="topup", key=f"bench:{uid}", now=now
        )
    print(json.dumps({"ready": True}), flush=True)
    await stop.wait()
    checked, mismatches = await repos.ledger.audit(repair=False)
    labels = await repos.mongo.db["orders"].count_documents({"status": "purchased"})
    print(
        json.dumps(
            {"audit_checked": checked, "audit_mismatches": len(mismatches), "labels": labels}
        ),
        flush=True,
    )
    await stop_application(application)
    if not url.startswith("mongomock://"):
        with contextlib.suppress(Exception):
            await repos.mongo.client.drop_database(database)


def _run(args: argparse.Namespace) -> None:
    target = os.environ.get("BENCH_PROFILE")  # a path: profile the worker (cProfile) into it
    if not target:
        asyncio.run(main(args))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(main(args))
    finally:
        profiler.disable()
        profiler.dump_stats(target)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--telegram-url", required=True, help="the emulator, without /bot")
    parser.add_argument("--carrier-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--first-user", type=int, required=True)
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--pool", type=int, default=8, help="Bot API connection pool size")
    _run(parser.parse_args())


if __name__ == "__main__":
    cli()
