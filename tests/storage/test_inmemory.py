"""The in-memory narrowing (``storage/inmemory.py``) never changes what a query returns:
after any sequence of writes, every result equals mongomock's own filter run over every
document."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mongomock.filtering import filter_applies, resolve_sort_key

from storage.client import Mongo

OID = ObjectId()
# Few distinct values, so filters often meet equal values, arrays holding them (which
# MongoDB matches element-wise), 1 == True, None and missing fields. ``user_id`` is the
# hash-indexed field; ``b`` and ``c`` go through the plain equality pass.
scalar = st.sampled_from([0, 1, 2, "a", "", True, False, OID])
array = st.lists(scalar, min_size=1, max_size=3)
value = st.one_of(scalar, array, array, st.none(), st.just({"x": 1}))
FIELDS = ["user_id", "b", "c"]
document = st.fixed_dictionaries(
    {"_id": st.integers(0, 15)}, optional={"user_id": value, "b": value, "c": value}
)
plain_filter = st.one_of(
    st.fixed_dictionaries({"user_id": scalar}),
    st.dictionaries(st.sampled_from(FIELDS), scalar, min_size=1, max_size=2),
)
id_filter = st.one_of(
    st.fixed_dictionaries({"_id": st.integers(-1, 16)}),
    st.fixed_dictionaries({"_id": st.fixed_dictionaries({"$in": st.lists(st.integers(-1, 16))})}),
)
id_range = st.dictionaries(
    st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
    st.one_of(st.integers(-1, 16), st.sampled_from(["", "a", "b"])),
    min_size=1,
    max_size=2,
).map(lambda bounds: {"_id": bounds})
combined = st.one_of(
    plain_filter,
    id_range,
    st.tuples(id_range, plain_filter).map(lambda pair: {**pair[0], **pair[1]}),
    id_filter,
    st.tuples(id_filter, plain_filter).map(lambda pair: {**pair[0], **pair[1]}),
    st.tuples(plain_filter, st.integers(0, 2)).map(
        lambda pair: {**pair[0], "c": {"$gt": pair[1]}}
    ),
)
write = st.one_of(
    st.tuples(st.just("insert"), document),
    st.tuples(st.just("set"), plain_filter, st.sampled_from(FIELDS), value),
    st.tuples(st.just("unset"), plain_filter, st.sampled_from(FIELDS)),
    st.tuples(st.just("inc"), plain_filter),
    st.tuples(st.just("replace"), id_filter, document),
    st.tuples(st.just("upsert"), plain_filter, st.sampled_from(FIELDS), scalar),
    st.tuples(st.just("delete"), plain_filter),
)


async def _write(col: Any, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "insert":
        if await col.find_one({"_id": op[1]["_id"]}) is None:
            await col.insert_one(dict(op[1]))
    elif kind == "set":
        await col.update_many(op[1], {"$set": {op[2]: op[3]}})
    elif kind == "unset":
        await col.update_many(op[1], {"$unset": {op[2]: ""}})
    elif kind == "inc":
        await col.update_many({**op[1], "n": {"$exists": False}}, {"$set": {"n": 1}})
    elif kind == "replace":
        target = await col.find_one(op[1])
        if target is not None:
            replacement = {**op[2], "_id": target["_id"]}
            await col.replace_one({"_id": target["_id"]}, replacement)
    elif kind == "upsert":
        plain = all(not isinstance(v, bool) for v in op[1].values())
        if "_id" not in op[1] and plain and await col.find_one({"_id": 99}) is None:
            await col.update_one({**op[1], "_id": 99}, {"$set": {op[2]: op[3]}}, upsert=True)
    else:
        await col.delete_many(op[1])


@settings(max_examples=300, deadline=None)
@given(
    docs=st.lists(document, max_size=12, unique_by=lambda d: d["_id"]),
    writes=st.lists(write, max_size=4),
    flt=combined,
    sort_field=st.sampled_from(["_id", *FIELDS]),
)
# an array holding the value
@example(sort_field="b", docs=[{"_id": 1, "b": [1, 2]}], writes=[], flt={"b": 1})
@example(sort_field="b", docs=[{"_id": 1, "user_id": [1, 2]}], writes=[], flt={"user_id": 2})
@example(
    sort_field="b", docs=[{"_id": 1, "b": True}, {"_id": 2, "b": 1}], writes=[], flt={"b": 1}
)
@example(sort_field="b", docs=[{"_id": 1}, {"_id": 2, "b": None}], writes=[], flt={"b": None})
# repeated ids
@example(sort_field="b", docs=[{"_id": 3}], writes=[], flt={"_id": {"$in": [3, 3, 4]}})
@example(  # an update that moves a document to another user_id
    sort_field="user_id",
    docs=[{"_id": 1, "user_id": 1}], writes=[("set", {"user_id": 1}, "user_id", 2)],
    flt={"user_id": 2},
)
@example(  # an insert after the index was built
    sort_field="user_id",
    docs=[{"_id": 1, "user_id": 1}], writes=[("insert", {"_id": 2, "user_id": 1})],
    flt={"user_id": 1},
)
@example(  # a delete, then the same _id for another user
    sort_field="user_id",
    docs=[{"_id": 1, "user_id": 1}],
    writes=[("delete", {"user_id": 1}), ("insert", {"_id": 1, "user_id": 2})],
    flt={"user_id": 2},
)
@example(  # a replacement that drops the indexed field
    sort_field="user_id",
    docs=[{"_id": 1, "user_id": 1}], writes=[("replace", {"_id": 1}, {"_id": 1, "b": 1})],
    flt={"user_id": 1},
)
async def test_narrowed_results_equal_a_full_scan(
    docs: list[dict[str, Any]], writes: list[tuple[Any, ...]], flt: Any, sort_field: str
) -> None:
    mongo = Mongo.memory("narrowing")
    col = mongo.db["things"]
    if docs:
        await col.insert_many([dict(d) for d in docs])
    # Query once before the writes, so indexes exist and have to follow the writes.
    await col.find_one({"user_id": 0})
    for op in writes:
        await _write(col, op)
    stored = mongo.db.delegate["things"]._store._documents.values()  # noqa: SLF001
    matches = [d for d in stored if filter_applies(flt, d)]
    expected = sorted(d["_id"] for d in matches)
    found = sorted([doc["_id"] async for doc in col.find(flt)])
    assert found == expected
    assert await col.count_documents(flt) == len(expected)
    # Sorted in BSON order (mongomock's sort key), whatever the field holds; documents with
    # equal keys may come in any order, as in MongoDB.
    for direction in (1, -1):
        ordered = [doc async for doc in col.find(flt).sort(sort_field, direction)]
        assert sorted(doc["_id"] for doc in ordered) == expected
        keys = [resolve_sort_key(sort_field, doc) for doc in ordered]
        assert keys == sorted(keys, reverse=direction < 0)
    await mongo.client.drop_database("narrowing")


async def test_cursors_return_every_document_once_with_skip_limit_and_rewind(
    mongo: Mongo,
) -> None:
    col = mongo.db["things"]
    await col.insert_many([{"_id": i, "n": i % 7} for i in range(500)])
    assert [d["_id"] async for d in col.find({})] == list(range(500))
    window = col.find({}).sort("_id", -1).skip(10).limit(5)
    assert [d["_id"] async for d in window] == [489, 488, 487, 486, 485]
    cursor = col.find({"n": 3}).sort("_id", 1)
    first = [d["_id"] async for d in cursor]
    cursor.rewind()
    assert [d["_id"] async for d in cursor] == first == list(range(3, 500, 7))
    assert len(await col.find({}).to_list(None)) == 500
    assert [d["_id"] async for d in col.find({"n": 3}).skip(2).limit(3)] == [17, 24, 31]
    assert [d["_id"] async for d in col.find({"_id": {"$gt": 495}}).limit(10)] == [
        496,
        497,
        498,
        499,
    ]
    assert (await col.find_one({"n": 6}, sort=[("_id", -1)]))["_id"] == 496
    assert (await col.find_one({"n": 6}, {"_id": 1}))["_id"] == 6
    assert await col.find_one({"n": 9}) is None
