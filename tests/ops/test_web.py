"""``WebServer``: liveness never depends on dependencies; readiness names what fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.logging import SecretRedactor
from bot.web import Check, CheckFailed, WebServer

STANDARD = ("mongo", "poller_lease", "telegram_polling", "job_scheduler")


class Switches:
    """One switch per check; a test flips one to make exactly that check fail."""

    def __init__(self) -> None:
        self.state: dict[str, str] = dict.fromkeys(STANDARD, "ok")

    def check(self, name: str) -> Check:
        async def run() -> str | bool | None:
            mode = self.state[name]
            if mode == "false":
                return False
            if mode == "raise":
                raise CheckFailed(f"{name} is down")
            if mode == "error":
                raise ConnectionError("connection refused")
            if mode == "hang":
                await asyncio.sleep(5)
            return f"{name} fine"

        return run


@pytest.fixture
def switches() -> Switches:
    return Switches()


@pytest.fixture
async def server(switches: Switches) -> AsyncIterator[WebServer]:
    srv = WebServer(
        "127.0.0.1",
        0,
        checks={name: switches.check(name) for name in STANDARD},
        check_timeout=0.2,
        max_body_bytes=1024,
    )

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response({"received": len(body)})

    srv.add_route("POST", "/callbacks/test", echo)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def get(srv: WebServer, path: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.get(srv.url + path) as resp:
        text = await resp.text()
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body, text


async def test_ready_when_every_check_passes(server: WebServer) -> None:
    assert server.port != 0
    status, body, _ = await get(server, "/readyz")
    assert status == 200
    assert body["status"] == "ready" and body["failing"] == []
    assert set(body["checks"]) == set(STANDARD)
    assert body["checks"]["mongo"] == {
        "ok": True,
        "detail": "mongo fine",
        "duration_ms": body["checks"]["mongo"]["duration_ms"],
    }


@pytest.mark.parametrize("name", STANDARD)
@pytest.mark.parametrize("mode", ["false", "raise", "error", "hang"])
async def test_each_failing_check_makes_readyz_503_naming_it(
    server: WebServer, switches: Switches, name: str, mode: str
) -> None:
    switches.state[name] = mode
    status, body, _ = await get(server, "/readyz")
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["failing"] == [name]
    detail = body["checks"][name]["detail"]
    expected = {
        "false": "check failed",
        "raise": f"{name} is down",
        "error": "ConnectionError: connection refused",
        "hang": "timed out after 0.2s",
    }[mode]
    assert detail == expected
    assert all(body["checks"][other]["ok"] for other in STANDARD if other != name)


async def test_several_failures_are_all_named(server: WebServer, switches: Switches) -> None:
    switches.state["mongo"] = "hang"
    switches.state["job_scheduler"] = "raise"
    status, body, _ = await get(server, "/readyz")
    assert status == 503
    assert sorted(body["failing"]) == ["job_scheduler", "mongo"]


async def test_healthz_does_not_run_the_checks(server: WebServer, switches: Switches) -> None:
    switches.state.update(dict.fromkeys(STANDARD, "hang"))
    status, body, _ = await asyncio.wait_for(get(server, "/healthz"), timeout=1.0)
    assert (status, body) == (200, {"status": "alive"})


async def test_metrics_serves_prometheus_text(server: WebServer, switches: Switches) -> None:
    switches.state["poller_lease"] = "false"
    await get(server, "/readyz")
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'bot_readiness_check_ok{check="poller_lease"} 0.0' in text
    assert 'bot_readiness_check_ok{check="mongo"} 1.0' in text
    assert "python_gc_objects_collected_total" in text  # the default registry


async def test_routes_and_body_limit(server: WebServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/callbacks/test", data=b"x" * 100) as resp:
            assert resp.status == 200
            assert await resp.json() == {"received": 100}
        async with session.post(server.url + "/callbacks/test", data=b"x" * 5000) as resp:
            assert resp.status == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 1000

        # No Content-Length (chunked): aiohttp's client_max_size still stops it.
        async with session.post(server.url + "/callbacks/test", data=chunks()) as resp:
            assert resp.status == 413
        async with session.get(server.url + "/nope") as resp:
            assert resp.status == 404


async def test_routes_cannot_be_added_after_start(server: WebServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response()

    with pytest.raises(RuntimeError, match="after the web server started"):
        server.add_route("POST", "/late", handler)


async def test_check_details_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = SecretRedactor()
    redactor.set_secrets(["mongodb-password-123"])
    monkeypatch.setattr("bot.web.redactor", redactor)

    async def leaky() -> None:
        raise ConnectionError("auth failed for mongodb-password-123")

    srv = WebServer("127.0.0.1", 0, checks={"mongo": leaky})
    [outcome] = await srv.evaluate()
    assert not outcome.ok
    assert "mongodb-password-123" not in outcome.detail
    assert "[REDACTED]" in outcome.detail


async def test_sync_checks_and_late_registration() -> None:
    srv = WebServer("127.0.0.1", 0)
    flag = {"ok": True}
    probe: Callable[[], bool] = lambda: flag["ok"]  # noqa: E731
    srv.add_check("flag", probe)
    await srv.start()
    try:
        assert (await get(srv, "/readyz"))[0] == 200
        flag["ok"] = False
        status, body, _ = await get(srv, "/readyz")
        assert status == 503 and body["failing"] == ["flag"]
    finally:
        await srv.stop()
    assert not srv.running
