"""The in-memory narrowing (``storage/inmemory.py``) never changes what a query returns:
every result equals mongomock's own filter run over every document."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mongomock.filtering import filter_applies

from storage.client import Mongo

OID = ObjectId()
# Few distinct values, so filters often meet equal values, arrays holding them (which
# MongoDB matches element-wise), 1 == True, None and missing fields.
scalar = st.sampled_from([0, 1, 2, "a", "", True, False, OID])
array = st.lists(scalar, min_size=1, max_size=3)
value = st.one_of(scalar, array, array, st.none(), st.just({"x": 1}))
document = st.fixed_dictionaries(
    {"_id": st.integers(0, 15)}, optional={"a": value, "b": value, "c": value}
)
plain_filter = st.one_of(
    st.fixed_dictionaries({"a": scalar}),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), scalar, min_size=1, max_size=2),
)
id_filter = st.one_of(
    st.fixed_dictionaries({"_id": st.integers(-1, 16)}),
    st.fixed_dictionaries({"_id": st.fixed_dictionaries({"$in": st.lists(st.integers(-1, 16))})}),
)
combined = st.one_of(
    plain_filter,
    id_filter,
    st.tuples(id_filter, plain_filter).map(lambda pair: {**pair[0], **pair[1]}),
    st.tuples(plain_filter, st.integers(0, 2)).map(
        lambda pair: {**pair[0], "c": {"$gt": pair[1]}}
    ),
)


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(document, max_size=12, unique_by=lambda d: d["_id"]), flt=combined)
@example(docs=[{"_id": 1, "a": [1, 2]}], flt={"a": 1})  # an array holding the value
@example(docs=[{"_id": 1, "a": True}, {"_id": 2, "a": 1}], flt={"a": 1})  # True == 1 in Python
@example(docs=[{"_id": 1}, {"_id": 2, "a": None}], flt={"a": None})  # not narrowed: None
@example(docs=[{"_id": 3}], flt={"_id": {"$in": [3, 3, 4]}})  # repeated ids, once
async def test_narrowed_results_equal_a_full_scan(docs: list[dict[str, Any]], flt: Any) -> None:
    mongo = Mongo.memory("narrowing")
    col = mongo.db["things"]
    if docs:
        await col.insert_many([dict(d) for d in docs])
    expected = sorted(d["_id"] for d in docs if filter_applies(flt, d))
    found = sorted([doc["_id"] async for doc in col.find(flt)])
    assert found == expected
    assert await col.count_documents(flt) == len(expected)
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
