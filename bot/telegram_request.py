"""A PTB ``BaseRequest`` on aiohttp, which the worker already uses everywhere else.

PTB's default transport is httpx. Profiling the order benchmark showed httpx/httpcore's
connection-pool bookkeeping as the largest CPU cost per Bot API call; aiohttp does the same
work for a fraction of it (docs/PERFORMANCE.md). Behaviour matches ``HTTPXRequest``:
the same timeouts (connect/read/write/pool), multipart uploads (other calls send their
parameters as a JSON body, which the Bot API accepts for every method),
``TimedOut`` and ``NetworkError`` on failures. Error messages never include the URL, which
carries the bot token.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.metrics import TELEGRAM_CALLS

_JSON = {"Content-Type": "application/json"}


class AiohttpRequest(BaseRequest):
    __slots__ = (
        "_connect_timeout",
        "_limit",
        "_media_write_timeout",
        "_pool_timeout",
        "_read_timeout",
        "_session",
        "_write_timeout",
    )

    def __init__(
        self,
        *,
        connection_pool_size: int = 8,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 10.0,
        write_timeout: float | None = 10.0,
        pool_timeout: float | None = 5.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._limit = connection_pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        params = request_data.json_parameters if request_data else None
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = (
            self._connect_timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout
        )
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write = self._write_timeout if not files else self._media_write_timeout
        else:
            write = write_timeout
        # aiohttp has no separate write timeout: the socket-read timeout starts after the
        # body is sent, so the write allowance is added to the total instead.
        total = None
        if read is not None and write is not None and connect is not None:
            total = read + write + connect + (pool or 0)
        acquire = None if pool is None and connect is None else (pool or 0) + (connect or 0)
        timeout = aiohttp.ClientTimeout(
            total=total, connect=acquire, sock_connect=connect, sock_read=read
        )
        body: Any
        headers: dict[str, str] | None = None
        if files:
            form = aiohttp.FormData()
            for name, value in (params or {}).items():
                form.add_field(name, value)
            for name, part in files.items():
                filename, content, mimetype = _file_part(part)
                form.add_field(name, content, filename=filename, content_type=mimetype)
            body = form
        elif request_data is not None and request_data.parameters:
            # A JSON body (the Bot API accepts it for every call without files): cheaper
            # to build than aiohttp's form encoding, which was a tenth of each call's cost.
            body = json.dumps(request_data.parameters, ensure_ascii=False).encode()
            headers = _JSON
        else:
            body = None
        api_method = url.rsplit("/", 1)[-1]
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as res:
                payload = await res.read()
        except TimeoutError as err:
            TELEGRAM_CALLS.labels(method=api_method, result="timeout").inc()
            raise TimedOut from err
        except aiohttp.ClientError as err:
            TELEGRAM_CALLS.labels(method=api_method, result="network_error").inc()
            # No URL in the message: it contains the bot token.
            raise NetworkError(f"aiohttp.{err.__class__.__name__}") from err
        TELEGRAM_CALLS.labels(method=api_method, result=str(res.status)).inc()
        return res.status, payload


def _file_part(part: Any) -> tuple[str | None, bytes, str | None]:
    if isinstance(part, tuple):
        if len(part) == 3:
            return part[0], part[1], part[2]
        if len(part) == 2:
            return part[0], part[1], None
    return None, part, None
