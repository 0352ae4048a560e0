"""Create (idempotently) everything the Couchbase record store needs.

One bucket, one scope, the collections in :data:`backend.store.couchbase.COLLECTIONS` and
the GSI indexes in :data:`INDEXES`. Every step tolerates "already exists", so running it
again (a deployment, a CI job, a developer) changes nothing. Run it with
``python -m infra.couchbase`` (settings from ``CRMSYNC_COUCHBASE_*``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from couchbase.auth import PasswordAuthenticator
from couchbase.cluster import Cluster
from couchbase.exceptions import (
    BucketAlreadyExistsException,
    CollectionAlreadyExistsException,
    CouchbaseException,
    QueryIndexAlreadyExistsException,
    ScopeAlreadyExistsException,
)
from couchbase.management.buckets import BucketType, CreateBucketSettings
from couchbase.options import ClusterOptions, QueryOptions

from backend.store.config import StoreConfig
from backend.store.couchbase import COLLECTIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Index:
    """A GSI index: its name, its collection and what follows ``ON <keyspace>``."""

    name: str
    collection: str
    keys: str


INDEXES: tuple[Index, ...] = (
    # The change feed: records by every channel they are in or recently left, then seq.
    Index("crmsync_feed", "records", "(DISTINCT ARRAY c FOR c IN feed END, seq)"),
    # Bootstrap snapshots: live members of a channel in sequence order. (An index named
    # crmsync_members, keyed by entity and id, served an older snapshot order; a cluster
    # provisioned before may drop it.)
    Index(
        "crmsync_members_by_seq",
        "records",
        "(DISTINCT ARRAY c FOR c IN channels END, seq) WHERE deleted = false",
    ),
    # Reconciliation: every record of an entity in id order.
    Index("crmsync_entity_ids", "records", "(entity, id)"),
    Index("crmsync_tombstones", "records", "(at_ms) WHERE deleted = true"),
    Index("crmsync_removals", "records", "(DISTINCT ARRAY v FOR v IN OBJECT_VALUES(removed) END)"),
    Index("crmsync_device_results", "changesets", "(device_id, seq)"),
    Index("crmsync_changeset_age", "changesets", "(at_ms)"),
    Index("crmsync_conflicts", "conflicts", "(created_ms DESC, status, owner)"),
    Index("crmsync_audit", "audit", "(META().id DESC, entity, record_id)"),
    Index("crmsync_state_keys", "state", "(META().id)"),
)


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What a provisioning run created (empty tuples: everything already existed)."""

    bucket_created: bool
    scope_created: bool
    collections_created: tuple[str, ...]
    indexes_created: tuple[str, ...]


def keyspace(config: StoreConfig, collection: str) -> str:
    """The N1QL keyspace of a collection: ```bucket`.`scope`.`collection```."""
    return f"`{config.couchbase_bucket}`.`{config.couchbase_scope}`.`{collection}`"


def index_statements(config: StoreConfig, primary_indexes: bool = False) -> list[tuple[str, str]]:
    """``(name, CREATE INDEX ...)`` for every index, ``IF NOT EXISTS`` (Couchbase 7.1+).

    Args:
        config: Names the bucket and scope.
        primary_indexes: Also create a primary index on each collection (tests use them
            to empty collections; production does not need them).
    """
    out = [
        (
            ix.name,
            f"CREATE INDEX `{ix.name}` IF NOT EXISTS ON {keyspace(config, ix.collection)}{ix.keys}",
        )
        for ix in INDEXES
    ]
    if primary_indexes:
        out += [
            (f"#primary:{c}", f"CREATE PRIMARY INDEX IF NOT EXISTS ON {keyspace(config, c)}")
            for c in COLLECTIONS
        ]
    return out


def provision_sync(
    config: StoreConfig,
    *,
    ram_quota_mb: int = 512,
    replicas: int = 1,
    primary_indexes: bool = False,
    ready_timeout: float = 60.0,
) -> ProvisionReport:
    """Create the bucket, scope, collections and indexes that are missing.

    Args:
        config: Where and as whom to connect, and the bucket and scope names.
        ram_quota_mb: Memory quota of the bucket if it has to be created.
        replicas: Replicas of the bucket if it has to be created (0 on a one-node
            development cluster: transactions write with majority durability, which one
            node cannot give for a bucket with replicas).
        primary_indexes: Also create primary indexes (for tests).
        ready_timeout: How long to wait for the cluster and a new bucket to be usable.

    Returns:
        What was created.

    Raises:
        CouchbaseException: the cluster refused a step for another reason than "exists".
    """
    if not config.couchbase_url or not config.couchbase_username:
        raise ValueError("couchbase_url and couchbase_username are required")
    auth = PasswordAuthenticator(config.couchbase_username, config.couchbase_password or "")
    cluster = Cluster.connect(config.couchbase_url, ClusterOptions(auth))
    try:
        cluster.wait_until_ready(timedelta(seconds=ready_timeout))
        bucket_created = _create_bucket(cluster, config, ram_quota_mb, replicas)
        bucket = cluster.bucket(config.couchbase_bucket)
        bucket.wait_until_ready(timedelta(seconds=ready_timeout))
        manager = bucket.collections()
        scope_created = _retry(
            lambda: _create_scope(manager, config.couchbase_scope), ready_timeout
        )
        created = []
        for name in COLLECTIONS:
            step = functools.partial(_create_collection, manager, config.couchbase_scope, name)
            if _retry(step, ready_timeout):
                created.append(name)
        indexes = []
        existing = _index_names(cluster, config)
        for name, statement in index_statements(config, primary_indexes):
            if name in existing:
                continue
            _retry(functools.partial(_run, cluster, statement), ready_timeout)
            indexes.append(name)
            log.info("created index %s", name)
        return ProvisionReport(bucket_created, scope_created, tuple(created), tuple(indexes))
    finally:
        cluster.close()


def _create_bucket(cluster: Cluster, config: StoreConfig, ram_quota_mb: int, replicas: int) -> bool:
    settings = CreateBucketSettings(
        name=config.couchbase_bucket,
        bucket_type=BucketType.COUCHBASE,
        ram_quota_mb=ram_quota_mb,
        num_replicas=replicas,
    )
    try:
        cluster.buckets().create_bucket(settings)
        log.info("created bucket %s", config.couchbase_bucket)
        return True
    except BucketAlreadyExistsException:
        return False


def _create_scope(manager: object, scope: str) -> bool:
    try:
        manager.create_scope(scope)  # type: ignore[attr-defined]
        log.info("created scope %s", scope)
        return True
    except ScopeAlreadyExistsException:
        return False


def _create_collection(manager: object, scope: str, name: str) -> bool:
    try:
        manager.create_collection(scope, name)  # type: ignore[attr-defined]
        log.info("created collection %s.%s", scope, name)
        return True
    except CollectionAlreadyExistsException:
        return False


def _index_names(cluster: Cluster, config: StoreConfig) -> set[str]:
    rows = cluster.query(
        "SELECT RAW name FROM system:indexes WHERE bucket_id = $bucket AND scope_id = $scope",
        QueryOptions(
            named_parameters={"bucket": config.couchbase_bucket, "scope": config.couchbase_scope}
        ),
    )
    return {str(r) for r in rows.rows()}


def _run(cluster: Cluster, statement: str) -> bool:
    with contextlib.suppress(QueryIndexAlreadyExistsException):
        cluster.query(statement).execute()
    return True


def _retry(step: Callable[[], bool], timeout: float) -> bool:
    """Run ``step`` until it stops failing with a transient error (a bucket warming up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return step()
        except (
            BucketAlreadyExistsException,
            ScopeAlreadyExistsException,
            CollectionAlreadyExistsException,
        ):
            return False
        except CouchbaseException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
