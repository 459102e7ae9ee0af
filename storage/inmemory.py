"""Faster queries for the in-memory database (``MONGO_URL=mongomock://``).

mongomock answers every query by running its full filter interpreter over every document
of the collection, so a lookup by ``_id`` costs as much as a collection scan and the demo,
the tests and the benchmarks slow down as data grows. This installs a narrowing step in
front of the interpreter: a filter on ``_id`` goes straight to that document, and a filter
with plain equality on ``int``/``str``/``bool``/``ObjectId`` fields first keeps only the
documents whose values are equal (or are arrays, which MongoDB matches element-wise).
mongomock's own ``filter_applies`` still decides every match, so results are unchanged:
the step only skips documents that cannot match.
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
    if "_id" in flt and _plain(flt["_id"]):
        doc = store._documents.get(flt["_id"])  # noqa: SLF001
        return [] if doc is None else [doc]
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
    from mongomock.collection import Collection
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
    _installed = True
