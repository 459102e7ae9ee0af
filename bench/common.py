"""Shared set-up for the benchmarks: the production application on the offline sandbox."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import AdminEntry, Role, Secrets, Settings, load_settings
from sandbox.shipstation import FakeShipStation

ADMIN_ID = 999_000_001
# Typed as the carrier knows them (ZIP+4): the address check (on, as in config.yaml) runs
# and verifies them, so the flow has no "did you mean" question.
SENDER = "Jane Doe\n500 W 5th Ave Suite 200\nNew York, NY 10001-0263\n(212) 555-0123"
RECIPIENT = "John Smith, 123 Main St Apt 4, Springfield, IL 62704-2424"


@dataclass
class Table:
    rows: list[tuple[str, str, str]]

    def add(self, bench: str, metric: str, value: str) -> None:
        self.rows.append((bench, metric, value))

    def render(self) -> str:
        widths = [
            max(len(r[i]) for r in [("benchmark", "metric", "value"), *self.rows])
            for i in range(3)
        ]
        line = "+".join("-" * (w + 2) for w in widths)
        out = [
            line,
            "| "
            + " | ".join(
                h.ljust(w) for h, w in zip(("benchmark", "metric", "value"), widths, strict=True)
            )
            + " |",
            line,
        ]
        for row in self.rows:
            out.append(
                "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
            )
        out.append(line)
        return "\n".join(out)


def bench_settings(carrier_url: str, *, overall_max_rate: float = 0) -> Settings:
    logging.getLogger().setLevel(logging.ERROR)
    base = load_settings()
    return base.model_copy(
        update={
            "admins": (AdminEntry(user_id=ADMIN_ID, role=Role.OWNER),),
            "telegram": base.telegram.model_copy(update={"overall_max_rate": overall_max_rate}),
            "flood": base.flood.model_copy(update={"max_updates": 10_000}),
            "web": base.web.model_copy(update={"port": 0}),
            "shipping": base.shipping.model_copy(update={"base_url": carrier_url}),
            "secrets": Secrets.model_construct(
                telegram_bot_token=None,
                mongo_url=None,
                shipstation_test_api_key=SecretStr("TEST_bench"),
            ),
        }
    )


async def start_shop(
    *, rate_limits: bool = False, overall_max_rate: float = 0
) -> tuple[BotHarness, FakeShipStation]:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    harness = BotHarness(
        bench_settings(carrier.base_url, overall_max_rate=overall_max_rate),
        rate_limits=rate_limits,
    )
    await harness.start()
    return harness, carrier
