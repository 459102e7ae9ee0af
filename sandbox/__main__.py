"""``python -m sandbox``: the offline stand-ins as one standalone process.

Starts the Bot API emulator, the fake ShipStation and the fake OxaPay on 127.0.0.1 and
prints how to point ``python -m bot run --allow-memory`` at them. Stop with Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from sandbox.oxapay import FakeOxaPay
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import BotApiEmulator

DEFAULT_TOKEN = "123456:SANDBOX-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # noqa: S105 - a fake token
OXAPAY_KEY = "sandbox-oxapay-merchant-key"
SHIPSTATION_TEST_KEY = "TEST_sandbox_shipstation_key"


async def main(args: argparse.Namespace) -> None:
    emulator = BotApiEmulator(args.token, rate_limits=not args.no_rate_limits)
    await emulator.start(args.host, args.telegram_port)
    shipstation = FakeShipStation(instant=args.instant)
    await shipstation.start(args.host, args.shipstation_port)
    oxapay = FakeOxaPay(merchant_api_key=OXAPAY_KEY, instant=args.instant)
    await oxapay.start(args.host, args.oxapay_port)
    print("Sandbox running (Ctrl+C to stop):")
    print(f"  Bot API emulator  {emulator.url}   (control API under /_control)")
    print(f"  fake ShipStation  {shipstation.base_url}")
    print(f"  fake OxaPay       {oxapay.base_url}")
    print("\nRun the bot against it in another terminal:")
    print(f"  export TELEGRAM_BOT_TOKEN='{args.token}' MONGO_URL='mongomock://'")
    print(f"  export SHIPBOT_TELEGRAM__BASE_URL='{emulator.base_url}'")
    print(f"  export SHIPBOT_TELEGRAM__BASE_FILE_URL='{emulator.base_file_url}'")
    print(f"  export SHIPBOT_SHIPPING__BASE_URL='{shipstation.base_url}'")
    print(f"  export SHIPSTATION_TEST_API_KEY='{SHIPSTATION_TEST_KEY}'")
    print(f"  export SHIPBOT_PAYMENTS__OXAPAY__BASE_URL='{oxapay.base_url}'")
    print(f"  export OXAPAY_MERCHANT_API_KEY='{OXAPAY_KEY}'")
    print("  python -m bot run --allow-memory")
    print(f"\nWrite as a user: curl -s -X POST {emulator.url}/_control/users/1001/messages "
          "-H 'Content-Type: application/json' -d '{\"text\": \"/start\"}'")
    print(f"Read the replies: curl -s '{emulator.url}/_control/chats/1001/messages?wait=5'",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await oxapay.stop()
        await shipstation.stop()
        await emulator.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--telegram-port", type=int, default=8081)
    parser.add_argument("--shipstation-port", type=int, default=8082)
    parser.add_argument("--oxapay-port", type=int, default=8083)
    parser.add_argument("--instant", action="store_true", help="fakes answer with no latency")
    parser.add_argument("--no-rate-limits", action="store_true")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
