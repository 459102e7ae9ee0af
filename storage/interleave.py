"""An in-memory database that suspends like a real one.

mongomock-motor runs every operation inside one coroutine step: a task never suspends in
a database call, so concurrent tasks never interleave at a round trip and a simulated kill
(task cancellation) can never land between two writes. PyMongo Async suspends at every
call. ``InterleavingDatabase`` wraps the in-memory database so that every collection
operation yields to the event loop before it runs and after it returns, and a cursor
yields before each batch, as a network driver does. ``Mongo.memory`` always installs it:
the tests, the demo and the benchmarks all run with it.

``on_suspend`` (optional) is called at every suspension point; the crash test uses it to
count where its kills landed.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import weakref
from collections.abc import Callable
from typing import Any

# The first batch of a MongoDB cursor holds 101 documents; later ones are bounded by size.
_BATCH = 101

SuspendHook = Callable[[str], None]


class _Suspender:
    """Shared by one database's wrappers: how many extra yields, and who to tell."""

    def __init__(self, rng: random.Random | None, on_suspend: SuspendHook | None) -> None:
        self.rng = rng
        self.on_suspend = on_suspend
        self.calls = 0
        # Tasks suspended at a database call right now, and where.
        self.inside: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, where: str) -> None:
        self.calls += 1
        if self.on_suspend is not None:
            self.on_suspend(where)
        task = asyncio.current_task()
        if task is not None:
            self.inside[task] = where
        try:
            await asyncio.sleep(0)
            if self.rng is not None:
                for _ in range(self.rng.randint(0, 2)):
                    await asyncio.sleep(0)
        finally:
            if task is not None:
                self.inside.pop(task, None)


class InterleavingCursor:
    """A find/aggregate cursor: chaining stays synchronous, reading suspends per batch."""

    def __init__(self, inner: Any, suspend: _Suspender, name: str) -> None:
        self._inner = inner
        self._suspend = suspend
        self._name = name
        self._iter: Any = None
        self._served = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def chained(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if result is self._inner:
                return self
            if inspect.isawaitable(result):
                return self._awaiting(result)
            return result

        return chained

    async def _awaiting(self, awaitable: Any) -> Any:
        await self._suspend(f"{self._name}:cursor")
        result = await awaitable
        await self._suspend(f"{self._name}:cursor")
        return result

    async def to_list(self, length: int | None = None) -> list[Any]:
        await self._suspend(f"{self._name}:to_list")
        result: list[Any] = await self._inner.to_list(length)
        await self._suspend(f"{self._name}:to_list")
        return result

    def __aiter__(self) -> InterleavingCursor:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._inner.__aiter__()
        if self._served % _BATCH == 0:
            await self._suspend(f"{self._name}:batch")
        self._served += 1
        return await self._iter.__anext__()


class InterleavingCollection:
    """Every coroutine method suspends before and after; cursors are wrapped."""

    def __init__(self, inner: Any, suspend: _Suspender) -> None:
        self._inner = inner
        self._suspend = suspend

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        where = f"{self._inner.name}.{name}"
        if inspect.iscoroutinefunction(attr):
            # Nothing is created before the first suspension, so a task cancelled there
            # leaves no coroutine behind that never ran.
            async def operation(*args: Any, **kwargs: Any) -> Any:
                await self._suspend(where)
                result = await attr(*args, **kwargs)
                await self._suspend(where)
                return result

            return operation

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return self._awaiting(where, result)
            if hasattr(result, "__aiter__"):
                return InterleavingCursor(result, self._suspend, where)
            if name == "with_options":
                return InterleavingCollection(result, self._suspend)
            return result

        return call

    async def _awaiting(self, where: str, awaitable: Any) -> Any:
        await self._suspend(where)
        result = await awaitable
        await self._suspend(where)
        return result

    def __getitem__(self, name: str) -> InterleavingCollection:
        return InterleavingCollection(self._inner[name], self._suspend)


class InterleavingDatabase:
    """Wraps an (in-memory) database handle; collections come out wrapped."""

    def __init__(
        self,
        inner: Any,
        *,
        seed: int | None = None,
        on_suspend: SuspendHook | None = None,
    ) -> None:
        self._inner = inner
        rng = random.Random(seed) if seed is not None else None
        self._suspend = _Suspender(rng, on_suspend)
        self._collections: dict[str, InterleavingCollection] = {}

    @property
    def inner(self) -> Any:
        return self._inner

    @property
    def suspensions(self) -> int:
        return self._suspend.calls

    def set_hook(self, on_suspend: SuspendHook | None) -> None:
        self._suspend.on_suspend = on_suspend

    def suspended(self) -> dict[asyncio.Task[Any], str]:
        """The tasks suspended at a database call at this instant (where: ``coll.op``)."""
        return {task: where for task, where in self._suspend.inside.items() if not task.done()}

    def __getitem__(self, name: str) -> InterleavingCollection:
        found = self._collections.get(name)
        if found is None:
            found = InterleavingCollection(self._inner[name], self._suspend)
            self._collections[name] = found
        return found

    def get_collection(self, name: str, **kwargs: Any) -> InterleavingCollection:
        if kwargs:
            return InterleavingCollection(
                self._inner.get_collection(name, **kwargs), self._suspend
            )
        return self[name]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return self._awaiting(result)
            return result

        return call

    async def _awaiting(self, awaitable: Any) -> Any:
        await self._suspend(f"{self._inner.name}:command")
        result = await awaitable
        await self._suspend(f"{self._inner.name}:command")
        return result
