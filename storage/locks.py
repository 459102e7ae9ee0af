"""``locks``: leases with fencing tokens (who may poll Telegram).

One document per lease, e.g. ``{_id: "poller", holder, token, expires_at}``. Every change
is a single conditional ``find_one_and_update``, so two instances racing for the lease are
serialised by MongoDB and at most one of them wins:

* **acquire** matches only a lease that is absent (upsert), expired, released, or already
  held by the same holder; it sets the holder and expiry and increments ``token``.
* **renew** matches only the current holder *with the same token*: an instance whose lease
  expired and was taken by another one (the token moved on) can never extend it again.
* **release** clears the holder and expires the lease at once; the document (and with it
  the token counter) stays, so tokens only ever increase.

The collection must NOT have a TTL index: deleting the document would restart the token
at 1 and break the fencing guarantee. Times come from the caller (``now``), like in the
other repositories, so tests control the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

COLLECTION = "locks"
POLLER_LEASE = "poller"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    token: int
    expires_at: datetime


@dataclass(frozen=True)
class LeaseState:
    """The stored document as seen by anyone (for diagnostics and readiness details)."""

    name: str
    holder: str | None
    token: int
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now


class LocksRepo:
    def __init__(self, db: Any) -> None:
        self.col = db[COLLECTION]

    async def acquire(
        self, name: str, holder: str, *, now: datetime, ttl: timedelta
    ) -> Lease | None:
        """Takes the lease if nobody holds it; ``None`` while another holder's is valid."""
        try:
            doc = await self.col.find_one_and_update(
                {
                    "_id": name,
                    "$or": [{"expires_at": {"$lte": now}}, {"holder": holder}],
                },
                {
                    "$set": {
                        "holder": holder,
                        "expires_at": now + ttl,
                        "acquired_at": now,
                        "renewed_at": now,
                    },
                    "$inc": {"token": 1},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # The document exists and the filter did not match: someone else holds it.
            return None
        return _lease(doc)

    async def renew(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease | None:
        """Extends the lease; ``None`` when it was released or taken over (token changed)."""
        doc = await self.col.find_one_and_update(
            {"_id": lease.name, "holder": lease.holder, "token": lease.token},
            {"$set": {"expires_at": now + ttl, "renewed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _lease(doc)

    async def release(self, lease: Lease, *, now: datetime) -> bool:
        """Gives the lease up so a standby can take it at once; False if no longer ours."""
        doc = await self.col.find_one_and_update(
            {"_id": lease.name, "holder": lease.holder, "token": lease.token},
            {"$set": {"holder": None, "expires_at": now, "released_at": now}},
        )
        return doc is not None

    async def state(self, name: str) -> LeaseState | None:
        doc = await self.col.find_one({"_id": name})
        if doc is None:
            return None
        return LeaseState(
            name=name,
            holder=doc.get("holder"),
            token=int(doc.get("token") or 0),
            expires_at=doc.get("expires_at"),
        )


def _lease(doc: dict[str, Any]) -> Lease:
    return Lease(
        name=str(doc["_id"]),
        holder=str(doc["holder"]),
        token=int(doc["token"]),
        expires_at=doc["expires_at"],
    )
