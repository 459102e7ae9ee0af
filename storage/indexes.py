"""Every index the application relies on; ``ensure_indexes`` is idempotent.

Start-up compares the indexes a collection has (``index_information()``) with the ones this
release needs, before it changes anything (``plan_indexes``):

* missing → created;
* same keys, only ``expireAfterSeconds`` differs (a changed ``sessions.purge_grace_seconds``,
  or a plain index that should now be a TTL index) → ``collMod``, which changes it in place;
* anything else (other keys under the same name, the same keys under another name, another
  ``unique``/``sparse``/… option, a TTL index where none is wanted) → ``IndexConflict``, one
  line naming the index and the command that fixes it; nothing is changed.

Creating an index again with other options is what a server refuses (code 85
IndexOptionsConflict / 86 IndexKeySpecsConflict): without this plan the worker would
crash-loop at start-up. docs/RUNBOOKS.md, "Index conflict at start-up", has the procedure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING, IndexModel
from pymongo.errors import OperationFailure

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexOptions:
    session_purge_grace_seconds: int = 86400
    # mongomock applies TTL indexes by scanning every document on every access, which
    # makes each query O(collection size); the in-memory mode creates them as plain
    # indexes and a job purges expired documents as MongoDB's TTL monitor would.
    ttl_monitor: bool = True


def _ttl(options: IndexOptions, seconds: int) -> dict[str, int]:
    return {"expireAfterSeconds": seconds} if options.ttl_monitor else {}


def index_models(options: IndexOptions) -> dict[str, list[IndexModel]]:
    return {
        "users": [
            IndexModel([("username", ASCENDING)], name="username"),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
            IndexModel([("last_seen_at", ASCENDING)], name="last_seen_at"),
        ],
        "sessions": [
            IndexModel(
                [("expires_at", ASCENDING)],
                name="expires_at_ttl",
                **_ttl(options, options.session_purge_grace_seconds),
            ),
        ],
        "processed_updates": [
            IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", **_ttl(options, 0)),
        ],
        # Fetched, not yet handled updates expire with the processed_updates retention.
        "inbox": [
            IndexModel([("expires_at", ASCENDING)], name="expires_at_ttl", **_ttl(options, 0)),
        ],
        "ledger": [
            IndexModel(
                [("user_id", ASCENDING), ("seq", ASCENDING)], name="user_seq_unique", unique=True
            ),
            IndexModel([("kind", ASCENDING), ("created_at", ASCENDING)], name="kind_created"),
        ],
        "payments": [
            # Always present ("pending:<id>" until the provider's reference is known), so a
            # plain unique index works on every backend; mongomock ignores partial indexes.
            IndexModel([("provider_key", ASCENDING)], name="provider_key_unique", unique=True),
            IndexModel(
                [("provider", ASCENDING), ("provider_ref", ASCENDING)], name="provider_ref"
            ),
            IndexModel([("order_id", ASCENDING)], name="order_id_unique", unique=True),
            IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING)], name="user_created"),
            IndexModel([("status", ASCENDING), ("created_at", ASCENDING)], name="status_created"),
            # /payments card: the latest card payments
            IndexModel(
                [("provider", ASCENDING), ("created_at", ASCENDING)], name="provider_created"
            ),
            # /stats: top-ups by method and the success rate over a period
            IndexModel([("status", ASCENDING), ("paid_at", ASCENDING)], name="status_paid_at"),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
            # Repair sweeps: a notice or a further credit left unfinished, a Stars refund
            # whose outcome is unknown (both fields are null on almost every payment).
            IndexModel([("followup_at", ASCENDING)], name="followup_at"),
            IndexModel([("refund_started_at", ASCENDING)], name="refund_started_at"),
        ],
        "orders": [
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING), ("created_at", -1)],
                       name="user_status_created"),
            IndexModel([("status", ASCENDING), ("purchase_started_at", ASCENDING)],
                       name="status_purchase_started"),
            # failed orders between the transition and the compensation credit (repair)
            IndexModel([("compensation_pending", ASCENDING), ("failed_at", ASCENDING)],
                       name="compensation_pending", sparse=True),
            IndexModel([("tracking_number", ASCENDING)], name="tracking_number", sparse=True),
            IndexModel([("label_id", ASCENDING)], name="label_id", sparse=True),
            IndexModel([("bulk_job_id", ASCENDING), ("bulk_row", ASCENDING)],
                       name="bulk_job_row", sparse=True),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
            # /stats: labels sold, revenue and cost over a period
            IndexModel([("status", ASCENDING), ("purchased_at", ASCENDING)],
                       name="status_purchased_at"),
            # the tracking job: labels whose next check is due (absent once tracking ends)
            IndexModel([("tracking_due_at", ASCENDING)], name="tracking_due_at", sparse=True),
        ],
        "templates": [
            IndexModel([("user_id", ASCENDING), ("name_key", ASCENDING)],
                       name="user_name_unique", unique=True),
            # One default sender per user: only the default carries default_key (= user_id).
            IndexModel([("default_key", ASCENDING)], name="default_sender_unique",
                       unique=True, sparse=True),
        ],
        "parcel_presets": [
            IndexModel([("user_id", ASCENDING), ("name_key", ASCENDING)],
                       name="user_name_unique", unique=True),
        ],
        "refunds": [
            IndexModel([("order_id", ASCENDING)], name="order_unique", unique=True),
            IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)],
                       name="status_next_attempt"),
            IndexModel([("user_id", ASCENDING), ("created_at", -1)], name="user_created"),
            IndexModel([("announced_at", ASCENDING)], name="announced_at", sparse=False),
            # /stats: refunds requested and credited over a period
            IndexModel([("status", ASCENDING), ("credited_at", ASCENDING)],
                       name="status_credited_at"),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
        ],
        "outbox": [
            # Every message has a dedup_key (a random one when no deduplication is wanted).
            IndexModel([("dedup_key", ASCENDING)], name="dedup_key_unique", unique=True),
            IndexModel(
                [("delivered_at", ASCENDING), ("failed_at", ASCENDING), ("next_attempt_at", 1)],
                name="due",
            ),
        ],
        # Admin console: /audit, broadcasts (one delivery per user, claimed by status).
        "audit": [IndexModel([("at", ASCENDING)], name="at")],
        # Bulk jobs: the purchase job's sweep, /user; rows are orders found by their job.
        "bulk_jobs": [
            IndexModel([("status", ASCENDING), ("_id", ASCENDING)], name="status_id"),
            IndexModel([("user_id", ASCENDING), ("_id", -1)], name="user_id_desc"),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
        ],
        "broadcasts": [
            IndexModel([("status", ASCENDING), ("confirmed_at", ASCENDING)],
                       name="status_confirmed"),
        ],
        "broadcast_deliveries": [
            IndexModel(
                [("broadcast_id", ASCENDING), ("status", ASCENDING), ("user_id", ASCENDING)],
                name="broadcast_status_user",
            ),
        ],
    }


async def ensure_indexes(db: Any, options: IndexOptions) -> list[str]:
    """Creates missing indexes and applies TTL changes; safe to run at every start.

    Raises ``IndexConflict`` (one line) before changing anything when an existing index
    differs in a way only an operator should resolve. Returns the names created or changed.
    """
    models = index_models(options)
    plan = await plan_indexes(db, options, models=models)
    conflicts = [change for change in plan if change.action == "conflict"]
    if conflicts:
        raise IndexConflict(_conflict_line(conflicts))
    names: list[str] = []
    for change in plan:
        if change.action == "collmod":
            await _collmod(db, change)
            names.append(change.qualified_name)
    for collection, collection_models in models.items():
        wanted = {c.name for c in plan if c.collection == collection and c.action == "create"}
        missing = [m for m in collection_models if m.document["name"] in wanted]
        if not missing:
            continue
        try:
            await db[collection].create_indexes(missing)
        except OperationFailure as exc:
            if exc.code in _CONFLICT_CODES:
                raise IndexConflict(
                    f"index conflict on {collection} (code {exc.code}: "
                    f"{_first_line(exc)}); compare db.{collection}.getIndexes() with "
                    f"storage/indexes.py, drop the differing index and run "
                    f"python -m bot ensure-indexes"
                ) from None
            raise
        names.extend(f"{collection}.{m.document['name']}" for m in missing)
    _LOGGER.info(
        "indexes ensured: %d created or changed, %d unchanged",
        len(names),
        sum(len(m) for m in models.values()) - len(names),
    )
    return names


# ------------------------------------------------------------------ the plan

# IndexOptionsConflict, IndexKeySpecsConflict: what a server answers to an index created
# again with other options or keys.
_CONFLICT_CODES = (85, 86)
# Parts of an index description that are not options of the index itself.
_NOT_OPTIONS = frozenset({"v", "key", "name", "ns", "background"})
# Options whose absence means false.
_FLAGS = frozenset({"unique", "sparse", "hidden"})
_TTL = "expireAfterSeconds"
_FIX_TAIL = "then run python -m bot ensure-indexes"


class IndexConflict(Exception):
    """An existing index differs from the one this release needs; the message is one line
    naming the index and the command that fixes it."""


@dataclass(frozen=True)
class IndexChange:
    collection: str
    name: str
    action: Literal["create", "collmod", "conflict"]
    detail: str = ""
    current_ttl: int | None = None
    wanted_ttl: int | None = None
    fix: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.collection}.{self.name}"

    def collmod_command(self) -> dict[str, Any]:
        return {
            "collMod": self.collection,
            "index": {"name": self.name, _TTL: self.wanted_ttl},
        }

    def collmod_shell(self) -> str:
        return (
            f'db.runCommand({{collMod: "{self.collection}", index: {{name: "{self.name}", '
            f"{_TTL}: {self.wanted_ttl}}}}})"
        )


async def plan_indexes(
    db: Any, options: IndexOptions, *, models: Mapping[str, list[IndexModel]] | None = None
) -> list[IndexChange]:
    """What ``ensure_indexes`` would do, read from ``index_information()``; changes nothing."""
    plan: list[IndexChange] = []
    for collection, collection_models in (models or index_models(options)).items():
        existing: Mapping[str, Mapping[str, Any]] = await db[collection].index_information()
        for model in collection_models:
            change = _compare(collection, model.document, existing)
            if change is not None:
                plan.append(change)
    return plan


def _compare(
    collection: str, wanted: Mapping[str, Any], existing: Mapping[str, Mapping[str, Any]]
) -> IndexChange | None:
    name = str(wanted["name"])
    keys = _keys(wanted["key"])
    current = existing.get(name)
    if current is None:
        for other, info in existing.items():
            if _keys(info["key"]) == keys:
                return IndexChange(
                    collection,
                    name,
                    "conflict",
                    detail=f"its keys {_show_keys(keys)} are already indexed as {other!r}",
                    fix=f'db.{collection}.dropIndex("{other}"), {_FIX_TAIL}',
                )
        return IndexChange(collection, name, "create")
    drop = f'db.{collection}.dropIndex("{name}"), {_FIX_TAIL}'
    if _keys(current["key"]) != keys:
        return IndexChange(
            collection,
            name,
            "conflict",
            detail=(
                f"exists with keys {_show_keys(_keys(current['key']))}, "
                f"this release needs {_show_keys(keys)}"
            ),
            fix=drop,
        )
    have, want = _options(current), _options(wanted)
    differing = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    if not differing:
        return None
    if differing == [_TTL] and want.get(_TTL) is not None:
        return IndexChange(
            collection,
            name,
            "collmod",
            current_ttl=have.get(_TTL),
            wanted_ttl=want[_TTL],
        )
    shown = ", ".join(f"{k} {_shown(have.get(k))} → {_shown(want.get(k))}" for k in differing)
    return IndexChange(
        collection,
        name,
        "conflict",
        detail=f"exists with other options ({shown})",
        fix=drop,
    )


def _keys(spec: Any) -> list[tuple[str, Any]]:
    items = spec.items() if hasattr(spec, "items") else spec
    return [(str(field), _direction(direction)) for field, direction in items]


def _direction(value: Any) -> Any:
    # A server may report 1.0 for an index created as 1 by an older driver.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value)


def _show_keys(keys: list[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{field}: {direction}" for field, direction in keys) + "}"


def _options(description: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in description.items():
        if key in _NOT_OPTIONS:
            continue
        if key in _FLAGS:
            if value:
                options[key] = True
        elif key == _TTL:
            options[key] = int(value)
        else:
            options[key] = value
    return options


def _conflict_line(conflicts: list[IndexChange]) -> str:
    first = conflicts[0]
    line = f"index conflict: {first.qualified_name} {first.detail}; fix: {first.fix}"
    if len(conflicts) > 1:
        others = ", ".join(c.qualified_name for c in conflicts[1:])
        line += f" (also differing: {others}; see docs/RUNBOOKS.md)"
    return line


async def _collmod(db: Any, change: IndexChange) -> None:
    try:
        await db.command(change.collmod_command())
    except OperationFailure as exc:
        raise IndexConflict(
            f"index {change.qualified_name}: collMod to {_TTL}={change.wanted_ttl} was "
            f"refused ({_first_line(exc)}); fix: run {change.collmod_shell()} as a database "
            f"admin, or db.{change.collection}.dropIndex(\"{change.name}\"), {_FIX_TAIL}"
        ) from None
    _LOGGER.warning(
        "index %s: %s %s → %s (collMod)",
        change.qualified_name,
        _TTL,
        change.current_ttl,
        change.wanted_ttl,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
