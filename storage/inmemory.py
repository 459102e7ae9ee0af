"""Faster queries for the in-memory database (``MONGO_URL=mongomock://``).

mongomock answers every query by running its full filter interpreter over every document
of the collection, so a lookup by ``_id`` costs as much as a collection scan and the demo,
the tests and the benchmarks slow down as data grows. This installs a narrowing step in
front of the interpreter: a filter on ``_id`` (one value or ``$in`` a list of values) goes
straight to those documents, and a filter
with plain equality on ``int``/``str``/``bool``/``ObjectId`` fields first keeps only the
documents whose values are equal (or are arrays, which MongoDB matches element-wise).
mongomock's own ``filter_applies`` still decides every match, so results are unchanged:
the step only skips documents that cannot match. It also makes reading a cursor linear
(see ``_cursor_next``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bson import ObjectId

_MISSING = object()
_SCALARS = (int, str, bool, ObjectId)
_installed = False


def _plain(value: Any) -> bool:
    return isinstance(value, _SCALARS)


def _candidates(store: Any, flt: dict[str, Any]) -> list[Any] | None:
    """Documents that may match, or ``None`` when the filter gives no shortcut."""
    if "_id" in flt:
        wanted = flt["_id"]
        if _plain(wanted):
            doc = store._documents.get(wanted)  # noqa: SLF001
            return [] if doc is None else [doc]
        if (
            isinstance(wanted, dict)
            and list(wanted) == ["$in"]
            and isinstance(wanted["$in"], list | tuple)
            and all(_plain(v) for v in wanted["$in"])
        ):
            docs = (store._documents.get(v) for v in dict.fromkeys(wanted["$in"]))  # noqa: SLF001
            return [doc for doc in docs if doc is not None]
    equalities = [
        (key, value)
        for key, value in flt.items()
        if not key.startswith("$") and "." not in key and _plain(value)
    ]
    if not equalities:
        return None
    out = []
    for doc in store.documents:
        for key, value in equalities:
            found = doc.get(key, _MISSING)
            if found != value and not isinstance(found, list):
                break
        else:
            out.append(doc)
    return out


def install() -> None:
    """Patches mongomock's collection scan once per process (idempotent)."""
    global _installed  # noqa: PLW0603 - a process-wide library patch, applied once
    if _installed:
        return
    from mongomock.collection import Collection, Cursor
    from mongomock.filtering import filter_applies as untyped_filter_applies

    filter_applies: Any = untyped_filter_applies
    original: Any = Collection._iter_documents  # noqa: SLF001

    def iter_documents(self: Any, flt: Any) -> Iterator[Any]:
        if isinstance(flt, dict) and flt and not self._store.is_empty:  # noqa: SLF001
            docs = _candidates(self._store, flt)  # noqa: SLF001
            if docs is not None:
                return (doc for doc in docs if filter_applies(flt, doc))
        result: Iterator[Any] = original(self, flt)
        return result

    Collection._iter_documents = iter_documents  # type: ignore[method-assign]  # noqa: SLF001
    Cursor.__next__ = Cursor.next = _cursor_next  # type: ignore[method-assign]
    _installed = True


def _cursor_next(self: Any) -> Any:
    """mongomock's ``Cursor.__next__`` slices the whole result list (skip and limit) again
    for every document it returns, so reading a cursor of N documents costs O(N²): 100,000
    stored sessions took many minutes to load. The slice is taken once per pass instead
    (options cannot change once a cursor is iterated; ``rewind`` starts a new pass)."""
    emitted = self._emitted  # noqa: SLF001
    window = self.__dict__.get("_shipbot_window")
    if emitted == 0 or window is None:
        window = self._compute_results(with_limit_and_skip=True)  # noqa: SLF001
        self.__dict__["_shipbot_window"] = window
    if emitted >= len(window):
        raise StopIteration
    self._emitted = emitted + 1  # noqa: SLF001
    return window[emitted]
