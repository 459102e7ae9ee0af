"""Every index the application relies on; ``ensure_indexes`` is idempotent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel

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
            # /stats: top-ups by method and the success rate over a period
            IndexModel([("status", ASCENDING), ("paid_at", ASCENDING)], name="status_paid_at"),
            IndexModel([("created_at", ASCENDING)], name="created_at"),
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
            IndexModel([("created_at", ASCENDING)], name="created_at"),
            # /stats: labels sold, revenue and cost over a period
            IndexModel([("status", ASCENDING), ("purchased_at", ASCENDING)],
                       name="status_purchased_at"),
        ],
        "templates": [
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
    """Creates missing indexes; safe to run at every start. Returns the names ensured."""
    names: list[str] = []
    for collection, models in index_models(options).items():
        created = await db[collection].create_indexes(models)
        names.extend(f"{collection}.{name}" for name in created)
    _LOGGER.info("indexes ensured: %d", len(names))
    return names
