"""Edge cases against tiny hand-written servers: secret redaction, redirects that must
not carry the API key, and errors hidden inside 2xx envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from providers.errors import ProviderRejected, ProviderResponseError
from providers.payments.oxapay import OxaPayClient
from providers.shipping.shipstation import ShipStationClient
from tests.providers.conftest import SleepRecorder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECRET = "TEST_super_secret_key_value_42"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[list[tuple[str, str, Handler]]], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: list[tuple[str, str, Handler]]) -> str:
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_echoed_key_is_redacted(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
) -> None:
    async def echo(request: web.Request) -> web.Response:
        key = request.headers["API-Key"]
        return web.json_response(
            {
                "request_id": "r",
                "errors": [{"error_code": "invalid_field_value", "message": f"bad key {key}"}],
            },
            status=400,
        )

    base = await serve([("GET", "/v2/carriers", echo)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        with pytest.raises(ProviderRejected) as excinfo:
            await client.list_carriers()
    finally:
        await client.close()
    text = str(excinfo.value) + repr(excinfo.value)
    assert SECRET not in text and "***" in text


async def test_cross_origin_redirect_drops_the_key(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
) -> None:
    seen: list[str | None] = []
    pdf = b"%PDF-1.4\n%%EOF\n"

    async def file(request: web.Request) -> web.Response:
        seen.append(request.headers.get("API-Key"))
        return web.Response(body=pdf, content_type="application/pdf")

    cdn = await serve([("GET", "/file.pdf", file)])
    cdn = cdn.replace("127.0.0.1", "localhost")  # another origin, same socket

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request.headers.get("API-Key"))
        raise web.HTTPFound(location=f"{cdn}/file.pdf")

    base = await serve([("GET", "/v2/downloads/6/t/label.pdf", redirect)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        body = await client.download_label_pdf(f"{base}/v2/downloads/6/t/label.pdf")
    finally:
        await client.close()
    assert body == pdf
    assert seen == [SECRET, None]


async def test_non_pdf_download_is_refused(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    base = await serve([("GET", "/x.pdf", html)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        with pytest.raises(ProviderResponseError):
            await client.download_label_pdf(f"{base}/x.pdf")
    finally:
        await client.close()


async def test_oxapay_error_inside_a_200_envelope(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
) -> None:
    calls: list[int] = []

    async def envelope(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:  # a server error reported in-band: retried
            return web.json_response(
                {"data": {}, "message": "try later", "error": {}, "status": 503, "version": "1"}
            )
        return web.json_response(
            {
                "data": {},
                "message": "Validation error",
                "error": {"type": "validation_error", "key": "track_id", "message": "bad id"},
                "status": 400,
                "version": "1.0.0",
            }
        )

    base = await serve([("GET", "/v1/payment/{track_id}", envelope)])
    client = OxaPayClient(base, "k" * 20, sleep=SleepRecorder())
    try:
        with pytest.raises(ProviderRejected) as excinfo:
            await client.get_payment("123")
    finally:
        await client.close()
    assert excinfo.value.field == "track_id" and excinfo.value.status == 400
    assert len(calls) == 2


async def test_malformed_json_is_a_response_error(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    base = await serve([("GET", "/v2/carriers", garbage)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        with pytest.raises(ProviderResponseError):
            await client.list_carriers()
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("file_format", "layout"), [("pdf", "4x6"), ("pdf", "letter"), ("png", "4x6"), ("zpl", "4x6")]
)
async def test_label_request_body_carries_format_and_layout(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
    file_format: str,
    layout: str,
) -> None:
    bodies: list[dict[str, object]] = []

    async def create(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        base = f"http://{request.host}/v2/downloads/6/t/label-1"
        return web.json_response(
            {
                "label_id": "se-1",
                "status": "completed",
                "tracking_number": "9400",
                "label_format": file_format,
                "label_layout": layout,
                "label_download": {"href": f"{base}.{file_format}", "pdf": f"{base}.pdf"},
            }
        )

    base = await serve([("POST", "/v2/labels/rates/se-r1", create)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        label = await client.create_label_from_rate(
            "se-r1", label_format=file_format, label_layout=layout
        )
    finally:
        await client.close()
    assert bodies == [
        {
            "label_format": file_format,
            "label_layout": layout,
            "label_download_type": "url",
            "validate_address": "no_validation",
        }
    ]
    assert label.label_format == file_format and label.label_layout == layout
    assert label.file_url is not None and label.file_url.endswith(f"label-1.{file_format}")
    assert dict(label.downloads)["pdf"].endswith("label-1.pdf")


async def test_label_format_checked_before_buying() -> None:
    client = ShipStationClient("http://127.0.0.1:9", lambda: SECRET)
    try:
        for file_format, layout in (("zpl", "letter"), ("png", "letter"), ("gif", "4x6")):
            with pytest.raises(ValueError):
                await client.create_label_from_rate(
                    "se-r1", label_format=file_format, label_layout=layout
                )
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("file_format", "body", "ok"),
    [
        ("zpl", b"^XA^FDhi^FS^XZ\n", True),
        ("zpl", b"CT~~CD,~CC^~CT~\n^XA^FDhi^FS^XZ", True),
        ("zpl", b"%PDF-1.4 not zpl", False),
        ("zpl", b"^XA unterminated", False),
        ("png", b"\x89PNG\r\n\x1a\nrest", True),
        ("png", b"<html>", False),
        ("pdf", b"\x89PNG\r\n\x1a\n", False),
    ],
)
async def test_download_checks_the_file_format(
    serve: Callable[[list[tuple[str, str, Handler]]], Awaitable[str]],
    file_format: str,
    body: bytes,
    ok: bool,
) -> None:
    async def file(_: web.Request) -> web.Response:
        return web.Response(body=body)

    base = await serve([("GET", "/v2/downloads/6/t/label", file)])
    client = ShipStationClient(base, lambda: SECRET)
    try:
        if ok:
            assert await client.download_label(f"{base}/v2/downloads/6/t/label", file_format)
        else:
            with pytest.raises(ProviderResponseError):
                await client.download_label(f"{base}/v2/downloads/6/t/label", file_format)
    finally:
        await client.close()
