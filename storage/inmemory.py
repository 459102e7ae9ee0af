"""Faster queries for the in-memory database (``MONGO_URL=mongomock://``).

mongomock answers every query by running its full filter interpreter over every document
of the collection, so a lookup by ``_id`` costs as much as a collection scan and the demo,
the tests and the benchmarks slow down as data grows. This installs a narrowing step in
front of the interpreter, in this order:

1. a filter on ``_id`` (one value, or ``$in`` a list of values) goes straight to those
   documents;
2. a filter with plain equality on an indexed field (``INDEXED_FIELDS``: ``user_id``, which
   the application never changes after insert) takes the documents from a hash index of
   that field, as MongoDB would from its index;
3. a filter with plain equality on other ``int``/``str``/``bool``/``ObjectId`` fields first
   keeps the documents whose values are equal (or are arrays, which MongoDB matches
   element-wise), in one cheap pass.

mongomock's own ``filter_applies`` decides every match, so results are unchanged: the step
only skips documents that cannot match, and for a filter made only of plain equalities it
accepts without asking mongomock a document whose fields hold values of the same type,
equal to the filter's. The hash index follows every insert,
replacement and delete of the store; an update that writes an indexed field (or a
replacement or pipeline update, which may) drops the index, and the next query rebuilds it.
A range on ``_id`` keeps the documents whose ``_id`` is inside it (or not comparable with
it). A sort on one field whose values all have one type (``int`` or ``str``) sorts on the
values themselves. The patch also makes reading a cursor linear and copies only the
documents a ``limit`` keeps (see ``_cursor_next``), which ``find_one`` now always sets.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator
from typing import Any

from bson import ObjectId
from mongomock.helpers import make_datetime_timezone_aware_in_document as _untyped_tz_aware

_MISSING = object()
_SCALARS = (int, str, bool, ObjectId)
INDEXED_FIELDS = ("user_id",)
_INDEX_ATTR = "_shipbot_indexes"
_installed = False
_tz_aware: Any = _untyped_tz_aware


def _plain(value: Any) -> bool:
    return isinstance(value, _SCALARS)


class _FieldIndex:
    """Document ids by the value of one top-level field. Values that cannot be keys
    (arrays, sub-documents) are kept apart and are candidates for every value."""

    def __init__(self, field: str, documents: dict[Any, Any]) -> None:
        self.field = field
        self.buckets: dict[Hashable, dict[Any, None]] = {}
        self.others: dict[Any, None] = {}
        self.where: dict[Any, object] = {}
        for key, doc in documents.items():
            self.add(key, doc)

    def add(self, key: Any, doc: Any) -> None:
        value = doc.get(self.field, _MISSING) if isinstance(doc, dict) else _MISSING
        if value is _MISSING:
            return
        if _plain(value):
            self.buckets.setdefault(value, {})[key] = None
            self.where[key] = value
        else:
            self.others[key] = None
            self.where[key] = self.others

    def remove(self, key: Any) -> None:
        value = self.where.pop(key, _MISSING)
        if value is _MISSING:
            return
        if value is self.others:
            self.others.pop(key, None)
            return
        bucket = self.buckets.get(value)  # type: ignore[arg-type]
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self.buckets[value]  # type: ignore[arg-type]

    def keys(self, value: Hashable) -> list[Any]:
        return [*self.buckets.get(value, ()), *self.others]


def _indexes(store: Any) -> dict[str, _FieldIndex] | None:
    indexes: dict[str, _FieldIndex] | None = store.__dict__.get(_INDEX_ATTR)
    return indexes


def _index(store: Any, field: str) -> _FieldIndex:
    indexes = _indexes(store)
    if indexes is None:
        indexes = store.__dict__[_INDEX_ATTR] = {}
    index = indexes.get(field)
    if index is None:
        index = indexes[field] = _FieldIndex(field, store._documents)  # noqa: SLF001
    return index


def _drop_indexes(store: Any) -> None:
    store.__dict__.pop(_INDEX_ATTR, None)


def _writes_indexed_field(update: Any) -> bool:
    """True when an update may change an indexed field of the documents it touches."""
    if not isinstance(update, dict):
        return True  # an aggregation pipeline: may write anything
    for operator, fields in update.items():
        if not operator.startswith("$") or not isinstance(fields, dict):
            return True  # a replacement document
        names = list(fields)
        if operator == "$rename":
            names += [str(v) for v in fields.values()]
        for name in names:
            if name.split(".", 1)[0] in INDEXED_FIELDS:
                return True
    return False


_COMPARE = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _range(condition: Any) -> list[tuple[Any, Any]] | None:
    """``{"$gt": 5, "$lte": 9}`` on ``int`` or ``str`` bounds as (compare, bound) pairs."""
    if not isinstance(condition, dict) or not condition:
        return None
    bounds = []
    for operator, bound in condition.items():
        if operator not in _COMPARE or type(bound) not in (int, str):
            return None
        bounds.append((_COMPARE[operator], bound))
    return bounds


def _bracket(value: Any) -> type | None:
    """The group of types MongoDB compares with each other here: numbers, or strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int
    if isinstance(value, str):
        return str
    return None


def _in_range(value: Any, bounds: list[tuple[Any, Any]]) -> bool:
    """False only for a value that compares with the bounds (a number with numbers, a string
    with strings) and is outside them; anything else is left to mongomock."""
    for compare, bound in bounds:
        if _bracket(value) is _bracket(bound) and not compare(value, bound):
            return False
    return True


def _simple_sort(sort: Any) -> tuple[str | None, bool]:
    """(field, descending) for a sort on one top-level field; (None, False) otherwise."""
    if isinstance(sort, dict):
        sort = list(sort.items())
    if not sort or len(sort) != 1:
        return None, False
    field, direction = sort[0]
    if not isinstance(field, str) or field.startswith("$") or "." in field:
        return None, False
    return field, direction < 0


def _pure_equality(flt: dict[str, Any]) -> bool:
    """A filter of top-level fields, each equal to an ``int``/``str``/``bool``/``ObjectId``."""
    return all(not key.startswith("$") and "." not in key and _plain(v) for key, v in flt.items())


def _equal(flt: dict[str, Any], doc: Any) -> bool:
    """True when ``doc`` certainly matches a pure-equality filter: every field holds a value
    of the very same type and equal to it (so ``True`` never stands for ``1``). False only
    means "ask mongomock" (arrays, other numeric types, missing fields)."""
    for key, value in flt.items():
        found = doc.get(key, _MISSING)
        if type(found) is not type(value) or found != value:
            return False
    return True


def _candidates(store: Any, flt: dict[str, Any]) -> list[Any] | None:
    """Documents that may match, or ``None`` when the filter gives no shortcut."""
    documents = store._documents  # noqa: SLF001
    if "_id" in flt:
        wanted = flt["_id"]
        if _plain(wanted):
            doc = documents.get(wanted)
            return [] if doc is None else [doc]
        if (
            isinstance(wanted, dict)
            and list(wanted) == ["$in"]
            and isinstance(wanted["$in"], list | tuple)
            and all(_plain(v) for v in wanted["$in"])
        ):
            found_docs = (documents.get(v) for v in dict.fromkeys(wanted["$in"]))
            return [doc for doc in found_docs if doc is not None]
        bounds = _range(wanted)
        if bounds is not None:
            return [doc for doc in documents.values() if _in_range(doc.get("_id"), bounds)]
    for field in INDEXED_FIELDS:
        if field in flt and _plain(flt[field]):
            keys = _index(store, field).keys(flt[field])
            return [documents[key] for key in keys if key in documents]
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
    from mongomock.store import CollectionStore

    filter_applies: Any = untyped_filter_applies
    original: Any = Collection._iter_documents  # noqa: SLF001

    def iter_documents(self: Any, flt: Any) -> Iterator[Any]:
        if isinstance(flt, dict) and flt and not self._store.is_empty:  # noqa: SLF001
            docs = _candidates(self._store, flt)  # noqa: SLF001
            if docs is not None:
                if _pure_equality(flt):
                    return (doc for doc in docs if _equal(flt, doc) or filter_applies(flt, doc))
                return (doc for doc in docs if filter_applies(flt, doc))
        result: Iterator[Any] = original(self, flt)
        return result

    original_update: Any = Collection._update  # noqa: SLF001

    def update(self: Any, spec: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original_update(self, spec, document, *args, **kwargs)
        finally:
            # After, not before: the update's own query may have (re)built the index.
            if _writes_indexed_field(document):
                _drop_indexes(self._store)  # noqa: SLF001

    def find_one(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        if filter is None:
            filter = {}  # noqa: A001
        if not isinstance(filter, dict):
            filter = {"_id": filter}  # noqa: A001
        # The first match only: mongomock would copy every match out of the store first.
        return next(self.find(filter, *args, **kwargs).limit(1), None)

    original_dataset: Any = Collection._get_dataset  # noqa: SLF001

    def get_dataset(self: Any, spec: Any, sort: Any, fields: Any, as_class: Any) -> Any:
        field, reverse = _simple_sort(sort)
        if field is None:
            yield from original_dataset(self, spec, sort, fields, as_class)
            return
        docs = list(self._iter_documents(spec))  # noqa: SLF001
        kinds = {type(doc.get(field, _MISSING)) for doc in docs}
        if len(kinds) > 1 or not kinds <= {int, str}:
            yield from original_dataset(self, spec, sort, fields, as_class)
            return
        # One field holding values of one type: Python's order is BSON's, and both sorts
        # are stable, so the result is mongomock's, without its per-document sort key.
        docs.sort(key=lambda doc: doc[field], reverse=reverse)
        for doc in docs:
            yield self._copy_only_fields(doc, fields, as_class)  # noqa: SLF001

    original_set: Any = CollectionStore.__setitem__
    original_del: Any = CollectionStore.__delitem__
    original_drop: Any = CollectionStore.drop

    def set_document(self: Any, key: Any, value: Any) -> None:
        original_set(self, key, value)
        for index in (_indexes(self) or {}).values():
            index.remove(key)
            index.add(key, value)

    def delete_document(self: Any, key: Any) -> None:
        original_del(self, key)
        for index in (_indexes(self) or {}).values():
            index.remove(key)

    def drop(self: Any) -> None:
        _drop_indexes(self)
        original_drop(self)

    Collection._iter_documents = iter_documents  # type: ignore[method-assign]  # noqa: SLF001
    Collection._update = update  # type: ignore[method-assign]  # noqa: SLF001
    Collection.find_one = find_one  # type: ignore[method-assign]
    Collection._get_dataset = get_dataset  # type: ignore[method-assign]  # noqa: SLF001
    CollectionStore.__setitem__ = set_document  # type: ignore[method-assign]
    CollectionStore.__delitem__ = delete_document  # type: ignore[method-assign]
    CollectionStore.drop = drop  # type: ignore[method-assign]
    Cursor.__next__ = Cursor.next = _cursor_next  # type: ignore[method-assign]
    _installed = True


def _cursor_next(self: Any) -> Any:
    """mongomock's ``Cursor.__next__`` slices the whole result list (skip and limit) again
    for every document it returns, so reading a cursor of N documents costs O(N²): 100,000
    stored sessions took many minutes to load. The window is taken once per pass instead
    (options cannot change once a cursor is iterated; ``rewind`` starts a new pass)."""
    emitted = self._emitted  # noqa: SLF001
    window = self.__dict__.get("_shipbot_window")
    if emitted == 0 or window is None:
        window = _window(self)
        self.__dict__["_shipbot_window"] = window
    if emitted >= len(window):
        raise StopIteration
    self._emitted = emitted + 1  # noqa: SLF001
    return window[emitted]


def _window(cursor: Any) -> list[Any]:
    """The documents a pass returns. With a limit only ``skip + limit`` documents are copied
    out of the store (mongomock copies every match, then slices): listing a broadcast's
    audience 200 users at a time copied every remaining user for each batch."""
    limit = cursor._limit  # noqa: SLF001
    if not limit or cursor._results:  # noqa: SLF001 - no limit, or mongomock's own results
        window: list[Any] = cursor._compute_results(with_limit_and_skip=True)  # noqa: SLF001
        return window
    skip = cursor._skip or 0  # noqa: SLF001
    docs = itertools.islice(cursor._factory(), skip, skip + abs(limit))  # noqa: SLF001
    if cursor.collection.codec_options.tz_aware:
        return [_tz_aware(doc) for doc in docs]
    return list(docs)
