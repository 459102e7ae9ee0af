"""Logical backup and restore of the bot's database (``python -m bot backup|restore``).

A backup is a directory::

    manifest.json          database, created_at, and per collection: file, count, sha256,
                           index specs (written last: its presence marks a complete backup)
    <collection>.jsonl     one document per line, MongoDB Extended JSON v2, canonical mode

Canonical Extended JSON keeps every BSON type exactly: ObjectId, int32 vs int64, Decimal128,
datetimes (UTC, millisecond precision), binary, nested documents and arrays. Restore checks
every checksum and count before it writes anything, refuses a database that already holds
documents unless forced (then it drops the collections it restores), inserts in batches and
re-creates the indexes.

The dump reads collection after collection, not one point-in-time snapshot: take it from a
stopped bot, or accept that documents written during the dump may be missing or newer.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import json_util
from bson.json_util import JSONMode, JSONOptions
from pymongo import IndexModel

_LOGGER = logging.getLogger(__name__)

FORMAT = "shiplabel-backup/1"
MANIFEST = "manifest.json"
BATCH_SIZE = 1000

DUMP_OPTIONS = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=True, tzinfo=UTC)
SPEC_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)
# Index options that are properties of the server, not of the index definition.
_SERVER_INDEX_FIELDS = frozenset({"v", "ns", "key", "name", "background"})


class BackupError(Exception):
    """The backup cannot be written or read; the message is one line for the operator."""


class RestoreRefused(BackupError):
    """The target database is not empty (and ``force`` was not given)."""


@dataclass
class CollectionEntry:
    name: str
    file: str
    count: int
    sha256: str
    indexes: list[dict[str, Any]]


@dataclass
class Manifest:
    database: str
    created_at: str
    collections: list[CollectionEntry] = field(default_factory=list)
    format: str = FORMAT

    def to_json(self) -> str:
        data = {
            "format": self.format,
            "database": self.database,
            "created_at": self.created_at,
            "collections": {
                c.name: {
                    "file": c.file,
                    "count": c.count,
                    "sha256": c.sha256,
                    "indexes": c.indexes,
                }
                for c in self.collections
            },
        }
        return json_util.dumps(data, json_options=SPEC_OPTIONS, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json_util.loads(path.read_text(encoding="utf-8"), json_options=SPEC_OPTIONS)
        except FileNotFoundError:
            raise BackupError(f"{path} is missing: not a complete backup") from None
        except (ValueError, TypeError) as exc:
            raise BackupError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"{path}: unknown backup format {data.get('format')!r}")
        entries = [
            CollectionEntry(
                name=name,
                file=str(spec["file"]),
                count=int(spec["count"]),
                sha256=str(spec["sha256"]),
                indexes=list(spec.get("indexes") or []),
            )
            for name, spec in sorted(data["collections"].items())
        ]
        return cls(str(data["database"]), str(data["created_at"]), entries)


@dataclass(frozen=True)
class RestoreReport:
    database: str
    documents: dict[str, int]
    indexes: dict[str, list[str]]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _index_specs(collection: Any) -> list[dict[str, Any]]:
    cursor = await _maybe_await(collection.list_indexes())
    specs = []
    async for index in cursor:
        if index["name"] == "_id_":
            continue
        spec: dict[str, Any] = {
            "name": index["name"],
            "key": [[str(k), v] for k, v in dict(index["key"]).items()],
        }
        spec.update({k: v for k, v in index.items() if k not in _SERVER_INDEX_FIELDS})
        specs.append(spec)
    return specs


async def _documents(collection: Any) -> AsyncIterator[dict[str, Any]]:
    async for doc in collection.find({}, batch_size=BATCH_SIZE):
        yield doc


def _safe_file_name(collection: str) -> str:
    if not collection or "/" in collection or "\\" in collection or collection.startswith("."):
        raise BackupError(f"refusing to back up a collection named {collection!r}")
    return f"{collection}.jsonl"


def _prepare_directory(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise BackupError(f"{out_dir} is not empty: choose a new directory for the backup")


async def backup_database(
    db: Any,
    out_dir: Path,
    *,
    database: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Manifest:
    """Writes every collection of ``db`` to ``out_dir`` (created; must be empty)."""
    _prepare_directory(out_dir)
    manifest = Manifest(database=database, created_at=now().isoformat())
    for name in sorted(await db.list_collection_names()):
        if name.startswith("system."):
            continue
        collection = db[name]
        file_name = _safe_file_name(name)
        digest = hashlib.sha256()
        count = 0
        with (out_dir / file_name).open("wb") as fh:
            async for doc in _documents(collection):
                text = json_util.dumps(doc, json_options=DUMP_OPTIONS, ensure_ascii=False)
                line = (text + "\n").encode("utf-8")
                digest.update(line)
                fh.write(line)
                count += 1
        indexes = await _index_specs(collection)
        manifest.collections.append(
            CollectionEntry(name, file_name, count, digest.hexdigest(), indexes)
        )
        _LOGGER.info("backed up %s: %d documents", name, count)
    (out_dir / MANIFEST).write_text(manifest.to_json() + "\n", encoding="utf-8")
    return manifest


def verify_backup(in_dir: Path) -> Manifest:
    """Checks the manifest, every file's sha256 and line count; raises ``BackupError``."""
    manifest = Manifest.load(in_dir / MANIFEST)
    for entry in manifest.collections:
        path = in_dir / _safe_file_name(entry.name)
        if entry.file != path.name:
            raise BackupError(f"manifest names {entry.file!r} for collection {entry.name!r}")
        if not path.is_file():
            raise BackupError(f"{path} is missing")
        digest = hashlib.sha256()
        lines = 0
        with path.open("rb") as fh:
            for line in fh:
                digest.update(line)
                lines += 1
        if digest.hexdigest() != entry.sha256:
            raise BackupError(f"{path}: checksum mismatch (the file is damaged or was edited)")
        if lines != entry.count:
            raise BackupError(f"{path}: {lines} documents, the manifest says {entry.count}")
    return manifest


async def non_empty_collections(db: Any) -> list[str]:
    names = []
    for name in sorted(await db.list_collection_names()):
        if not name.startswith("system.") and await db[name].count_documents({}, limit=1):
            names.append(name)
    return names


def _index_model(spec: dict[str, Any]) -> IndexModel:
    options = {k: v for k, v in spec.items() if k not in _SERVER_INDEX_FIELDS}
    keys = [(str(k), v) for k, v in spec["key"]]
    return IndexModel(keys, name=spec["name"], **options)


async def restore_database(db: Any, in_dir: Path, *, force: bool = False) -> RestoreReport:
    """Verifies the backup, then restores its documents and indexes into ``db``."""
    manifest = verify_backup(in_dir)
    busy = await non_empty_collections(db)
    if busy and not force:
        shown = ", ".join(busy[:5]) + (" …" if len(busy) > 5 else "")
        raise RestoreRefused(
            f"the database is not empty ({shown}); stop the bot and use --force to replace "
            "the collections in the backup"
        )
    documents: dict[str, int] = {}
    indexes: dict[str, list[str]] = {}
    for entry in manifest.collections:
        collection = db[entry.name]
        if force:
            await collection.drop()
        batch: list[dict[str, Any]] = []
        with (in_dir / entry.file).open("r", encoding="utf-8") as fh:
            for line in fh:
                batch.append(json_util.loads(line, json_options=DUMP_OPTIONS))
                if len(batch) >= BATCH_SIZE:
                    await collection.insert_many(batch, ordered=True)
                    batch = []
        if batch:
            await collection.insert_many(batch, ordered=True)
        created: list[str] = []
        if entry.indexes:
            created = list(
                await collection.create_indexes([_index_model(s) for s in entry.indexes])
            )
        documents[entry.name] = entry.count
        indexes[entry.name] = created
        _LOGGER.info(
            "restored %s: %d documents, %d indexes", entry.name, entry.count, len(created)
        )
    return RestoreReport(manifest.database, documents, indexes)


def summary(manifest: Manifest) -> str:
    total = sum(c.count for c in manifest.collections)
    return json.dumps(
        {
            "database": manifest.database,
            "collections": len(manifest.collections),
            "documents": total,
        }
    )
