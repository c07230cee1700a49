"""Raw SQL of the project's cross-cutting pieces; the catalogue's is in movies/sql.py.

Constants are named `*_SQL`, functions that build a statement `*_sql()`. No Django imports.
"""

# ---- rate limits: the PostgreSQL store (movieapi.throttle_stores.PostgresStore) ----------------

THROTTLE_TABLE = "movieapi_throttle_counter"
# Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog: the creators queue on this lock first
# (parameter: THROTTLE_TABLE).
THROTTLE_CREATE_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(%s))"
# UNLOGGED: counters need no crash safety or replication, and skipping the WAL makes each write cheap.
# Created on first use rather than by a migration: it is not a model, and rate limits must not
# depend on the migration order of the catalogue app.
THROTTLE_CREATE_SQL = """
CREATE UNLOGGED TABLE IF NOT EXISTS movieapi_throttle_counter (
    key text PRIMARY KEY,
    hits integer NOT NULL,
    expires_at timestamptz NOT NULL
)
"""
# Lock every bucket of the request (in key order, so concurrent requests cannot deadlock), opening a
# new window where the old one has ended, and read the counts; the row locks make check-then-count
# in the same transaction atomic.
THROTTLE_LOCK_SQL = """
INSERT INTO movieapi_throttle_counter AS c (key, hits, expires_at)
SELECT key, 0, clock_timestamp() + make_interval(secs => win)
FROM unnest(%(keys)s::text[], %(windows)s::int[]) AS i(key, win) ORDER BY key
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN c.expires_at <= clock_timestamp() THEN 0 ELSE c.hits END,
    expires_at = CASE WHEN c.expires_at <= clock_timestamp() THEN excluded.expires_at ELSE c.expires_at END
RETURNING c.key, c.hits, ceil(extract(epoch FROM c.expires_at - clock_timestamp()) * 1000)::bigint
"""
THROTTLE_COUNT_SQL = "UPDATE movieapi_throttle_counter SET hits = hits + 1 WHERE key = ANY(%(keys)s::text[])"
# Give back one hit in each live bucket (a successful admin log-in does not count against its limits).
THROTTLE_RELEASE_SQL = """
UPDATE movieapi_throttle_counter SET hits = hits - 1
WHERE key = ANY(%(keys)s::text[]) AND hits > 0 AND expires_at > clock_timestamp()
"""
THROTTLE_PURGE_SQL = "DELETE FROM movieapi_throttle_counter WHERE expires_at < clock_timestamp() - interval '1 minute'"


# ---- permissions (movieapi.authentication: PermissionBackend, a write's token statement) ----------

# Every "app_label.codename" the user holds, directly or through a group (all of them for a superuser).
PERMISSIONS_SQL = """
SELECT ct.app_label || '.' || p.codename
FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
WHERE %(superuser)s
   OR p.id IN (SELECT up.permission_id FROM auth_user_user_permissions up WHERE up.user_id = %(user)s)
   OR p.id IN (SELECT gp.permission_id FROM auth_group_permissions gp
               JOIN auth_user_groups ug ON ug.group_id = gp.group_id WHERE ug.user_id = %(user)s)
"""


# ---- registration (movieapi.auth.user_register) --------------------------------------------------

# Two registrations of one username or email queue on this transaction-scoped lock (parameter: the key's hash).
REGISTRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"


# ---- Idempotency-Key (movieapi.idempotency; the table is movies.models.IdempotencyKey) -------------

# How long a duplicate waits for the request that holds its key, for this transaction only (parameter: e.g. "1000ms");
# then back to the session's setting, so that nothing else in the create is cut short by it.
IDEMPOTENCY_WAIT_SQL = "SELECT set_config('lock_timeout', %s, true)"
IDEMPOTENCY_WAIT_END_SQL = "SET LOCAL lock_timeout TO DEFAULT"
# Claim the caller's key: a new row, or an expired one taken over. A key another transaction has inserted and not
# committed blocks this statement until that one ends (the unique index), so of concurrent duplicates one claims
# and the others then find its committed answer, or claim the key themselves if it rolled back. No row comes back
# when the key is held by an answer that has not expired (the row is then locked until this transaction ends).
IDEMPOTENCY_CLAIM_SQL = """
INSERT INTO idempotency_key AS k (caller, key, fingerprint, created_at)
VALUES (%(caller)s, %(key)s, %(fingerprint)s, now())
ON CONFLICT (caller, key) DO UPDATE SET
    fingerprint = excluded.fingerprint, created_at = excluded.created_at, status = NULL, headers = NULL, body = NULL
    WHERE k.created_at <= now() - make_interval(hours => %(lifetime_hours)s)
RETURNING k.id
"""
# The answer a held key already has (the headers as JSON text: Django's driver leaves jsonb undecoded anyway).
IDEMPOTENCY_STORED_SQL = """
SELECT fingerprint, status, coalesce(headers, '{}')::text, body FROM idempotency_key WHERE caller = %s AND key = %s
"""
# The answer, written by the transaction that claimed the key, before it commits (parameters: status, headers as
# JSON, body, id).
IDEMPOTENCY_ANSWER_SQL = "UPDATE idempotency_key SET status = %s, headers = %s::jsonb, body = %s WHERE id = %s"
# Delete expired keys, oldest first, at most %(limit)s of them.
IDEMPOTENCY_PURGE_SQL = """
DELETE FROM idempotency_key WHERE id = ANY(ARRAY(
    SELECT id FROM idempotency_key WHERE created_at <= now() - make_interval(hours => %(lifetime_hours)s)
    ORDER BY created_at LIMIT %(limit)s
))
"""


# ---- read replicas (movieapi.replicas; docs/replicas.md) ---------------------------------------------------------

# The primary's WAL position once a write request's transactions have committed, as a number of bytes. The insert
# position, not pg_current_wal_lsn() (what has been written out): with synchronous_commit off a commit record may not
# be written out yet, and a replica must not count as having replayed a write it has not received.
PRIMARY_WAL_POSITION_SQL = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
# What a replica has replayed (bytes; NULL if it is not in recovery, i.e. no replica) and how far behind it is: 0 when
# it has replayed all it received and its WAL receiver runs; else (replay behind, or no receiver: cut off from the
# primary) the time since the last transaction it replayed committed on the primary, NULL if none since it started.
# A receiver whose primary went silent still counts until wal_receiver_timeout ends it (docs/replicas.md, limits).
REPLICA_STATE_SQL = """
SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AND EXISTS (SELECT FROM pg_stat_wal_receiver)
            THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 END
"""
