"""The SQL that makes PostgreSQL record every version of a movie aggregate in `movies_movieversion` (docs/history.md):
functions and triggers, installed and removed by migration 0013_history_triggers.

No Django imports, like movies/sql.py, whose representation SQL the snapshots reuse: a version's snapshot is the API's
movie without `rating`, built by PostgreSQL at the commit of the transaction that wrote it.

- movies_movie, BEFORE UPDATE: a write of a tracked column (title, year, runtime, overview, imdb_id) that does not move
  `version` itself (a raw `UPDATE` in psql) moves it, once per transaction; `version` never moves back.
- movies_movie_genres, movies_movie_directors, movies_cast, AFTER each statement: the movies whose relations it changed
  move to their next version, unless this transaction has moved them already (the services and the importers do so in
  the same transaction, before writing relations): so `INSERT INTO movies_cast` in psql is a version too.
- movies_movie, AFTER INSERT and AFTER UPDATE of `version`, deferred to the commit: the version's entry, its snapshot
  read as the transaction leaves the aggregate (relations included), its actor from the transaction-local setting
  ACTOR_SETTING (the services set it; absent: a write made outside the application).
- movies_movie, AFTER DELETE: a `deleted` entry, the version after the last recorded one, with that one's snapshot.

"Moved in this transaction" is `version > ` the movie's last recorded version: a committed version is always recorded
(at its commit), so only an uncommitted bump of this transaction is ahead of the history. Every existing movie gets
its current version recorded when the triggers are installed (HISTORY_BACKFILL_SQL), so the rule holds from then on.
"""

from movies.sql import CAST_SQL, DIRECTORS_SQL, GENRES_SQL

# The transaction-local setting that names who writes (JSON: {"kind": "user", "id": 3, "username": "alice"}, ...).
ACTOR_SETTING = "movieapi.actor"
# Who wrote a version when no actor was set: a write made outside the application (psql, a script).
DATABASE_ACTOR = '{"kind": "database"}'
# The columns of a movie that a version tracks beside its relations (a rating or `field_sources` alone is no version).
TRACKED_COLUMNS = ("title", "year", "runtime", "overview", "imdb_id")
RELATION_TABLES = ("movies_movie_genres", "movies_movie_directors", "movies_cast")

# The set_config call that names the actor until the transaction ends (parameter: the actor as JSON); true whatever
# it sets, so a write statement can carry it in its WHERE clause (one round trip: services._conditional_update).
ACTOR_CONDITION_SQL = f"set_config('{ACTOR_SETTING}', %s, true) IS NOT NULL"
ACTOR_SET_SQL = f"SELECT set_config('{ACTOR_SETTING}', %s, true)"

_TRACKED_NEW = ", ".join(f"NEW.{column}" for column in TRACKED_COLUMNS)
_TRACKED_OLD = ", ".join(f"OLD.{column}" for column in TRACKED_COLUMNS)
# The last version recorded of the movie with id <id>, 0 if none.
_LAST_RECORDED = "coalesce((SELECT max(h.version) FROM movies_movieversion h WHERE h.movie_id = {id}), 0)"
# A snapshot reads a few rows by index, whatever the statistics say: on tables an import is filling and that were
# never analyzed, the planner took movies_person for 3,000 rows and hashed all of it for every snapshot (4.6 ms each
# at 25,000 people, instead of ~0.1 ms), and PL/pgSQL keeps that plan for the session.
# Without JIT: a plan made with those off can cost PostgreSQL's disable_cost (1e10), far over jit_above_cost, and
# every call would compile its statements with LLVM first: recording a 1,000,000-movie load's first versions did not
# end in 17 minutes, its backend's stack in LLVM's assembler (20,000 movies: 4.6 s).
_NO_JIT = "SET jit = off"
_BY_INDEX = f"SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off {_NO_JIT}"


def _snapshot(version: str, updated_at: str) -> str:
    """The snapshot of the movie row `movies_movie` (in the statement's FROM) as version `version` written at
    `updated_at` (SQL expressions)."""
    return f"""jsonb_build_object(
    'id', movies_movie.id, 'title', movies_movie.title, 'year', movies_movie.year,
    'runtime', movies_movie.runtime, 'overview', movies_movie.overview, 'imdb_id', movies_movie.imdb_id,
    'genres', to_jsonb({GENRES_SQL}),
    'directors', {DIRECTORS_SQL}::jsonb,
    'cast', {CAST_SQL}::jsonb,
    'version', {version}, 'created_at', movies_history_time(movies_movie.created_at),
    'updated_at', movies_history_time({updated_at}))"""


FUNCTIONS_SQL = f"""
-- A time as the API writes it (DRF, UTC with a Z): microseconds only when there are any, as Python's isoformat.
CREATE FUNCTION movies_history_time(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0
    THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$$;

-- The movie ($1) as the API shows it, without its rating, as its version $2 written at $3; NULL if it is gone.
-- PL/pgSQL, not SQL: it keeps the statement's plan for the session (a SQL function's body is planned at every call).
CREATE FUNCTION movies_history_snapshot(bigint, integer, timestamptz) RETURNS jsonb LANGUAGE plpgsql STABLE
  {_BY_INDEX} AS $$
BEGIN
  RETURN (SELECT {_snapshot("$2", "$3")}
  FROM movies_movie WHERE movies_movie.id = $1);
END
$$;

-- Who writes, from the transaction-local setting.
CREATE FUNCTION movies_history_actor() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('{ACTOR_SETTING}', true), '')::jsonb, '{DATABASE_ACTOR}'::jsonb)
$$;

-- BEFORE UPDATE of a movie whose version does not move forward: refused if it moves back; moved if a tracked column
-- changes (the columns are compared here, not in the trigger's WHEN, which would tie them to it: a migration could not
-- change their types).
CREATE FUNCTION movies_history_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.version < OLD.version THEN
    RAISE EXCEPTION 'movie %: its version cannot move back from % to %', OLD.id, OLD.version, NEW.version
      USING ERRCODE = 'check_violation',
            HINT = 'Leave version out: the database moves it when a tracked column changes.';
  END IF;
  IF ({_TRACKED_NEW}) IS DISTINCT FROM ({_TRACKED_OLD})
     AND OLD.version <= {_LAST_RECORDED.format(id="OLD.id")} THEN  -- not moved yet by this transaction
    NEW.version := OLD.version + 1;
    NEW.updated_at := statement_timestamp();
  END IF;
  RETURN NEW;
END
$$;

-- AFTER each statement on a relation table: the next version of each movie it touched and this transaction has not
-- moved yet. Those are locked first and checked again: a concurrent writer's version may have committed meanwhile.
CREATE FUNCTION movies_history_relations() RETURNS trigger LANGUAGE plpgsql {_NO_JIT} AS $$
DECLARE
  ids bigint[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    ids := ARRAY(SELECT DISTINCT movie_id FROM new_rows);
  ELSIF TG_OP = 'DELETE' THEN
    ids := ARRAY(SELECT DISTINCT movie_id FROM old_rows);
  ELSE
    ids := ARRAY(SELECT movie_id FROM new_rows UNION SELECT movie_id FROM old_rows);
  END IF;
  IF cardinality(ids) = 0 THEN
    RETURN NULL;
  END IF;
  ids := ARRAY(SELECT m.id FROM movies_movie m
               WHERE m.id = ANY(ids) AND m.version <= {_LAST_RECORDED.format(id="m.id")} ORDER BY m.id);
  IF cardinality(ids) = 0 THEN
    RETURN NULL;
  END IF;
  PERFORM 1 FROM movies_movie WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
  UPDATE movies_movie m SET version = m.version + 1, updated_at = statement_timestamp()
   WHERE m.id = ANY(ids) AND m.version <= {_LAST_RECORDED.format(id="m.id")};
  RETURN NULL;
END
$$;

-- At the commit (deferred): the entry of the version this row event made, the aggregate as the transaction leaves it
-- (and of every version it skipped, when a raw UPDATE moved `version` by more than one: the history has no gaps).
-- The snapshot's statement is written out here rather than calling movies_history_snapshot: one level of function
-- call and SPI less on every write.
CREATE FUNCTION movies_history_record() RETURNS trigger LANGUAGE plpgsql {_BY_INDEX} AS $$
DECLARE
  snap jsonb;
BEGIN
  SELECT {_snapshot("NEW.version", "NEW.updated_at")} INTO snap FROM movies_movie WHERE movies_movie.id = NEW.id;
  IF snap IS NULL THEN  -- deleted later in this transaction: its deletion entry follows the last recorded version
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    -- A movie created, deleted and created again under the same id in one transaction: one entry, its last state.
    INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid)
    VALUES (NEW.id, NEW.version, 'created', NEW.updated_at, movies_history_actor(), snap,
            pg_current_xact_id()::text::bigint)
    ON CONFLICT (movie_id, version) DO NOTHING;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM movies_movieversion h WHERE h.movie_id = NEW.id
                                 AND h.version = NEW.version AND h.xid = pg_current_xact_id()::text::bigint) THEN
      RAISE EXCEPTION 'movie %: this id has a history already (a deleted movie''s id is never reused)', NEW.id
        USING ERRCODE = 'unique_violation', HINT = 'Let the sequence choose the id of a new movie.';
    END IF;
  ELSE
    INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid)
    SELECT NEW.id, v, 'updated', NEW.updated_at, movies_history_actor(), jsonb_set(snap, '{{version}}', to_jsonb(v)),
           pg_current_xact_id()::text::bigint
      FROM generate_series(OLD.version + 1, NEW.version) AS v
    ON CONFLICT (movie_id, version) DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;

-- AFTER DELETE of a movie: `deleted`, the version after the last recorded one, with its snapshot (a movie created in
-- this same transaction has none: nobody saw it, nothing is recorded).
CREATE FUNCTION movies_history_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid)
  SELECT OLD.id, h.version + 1, 'deleted', statement_timestamp(), movies_history_actor(), h.snapshot,
         pg_current_xact_id()::text::bigint
    FROM movies_movieversion h WHERE h.movie_id = OLD.id ORDER BY h.version DESC LIMIT 1;
  RETURN NULL;
END
$$;
"""  # noqa: S608 (constant SQL)


def _relation_triggers() -> str:
    statements = []
    for table in RELATION_TABLES:
        for event, transitions in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            statements.append(
                f"CREATE TRIGGER movies_history_{event.lower()} AFTER {event} ON {table}"
                f" REFERENCING {transitions} FOR EACH STATEMENT EXECUTE FUNCTION movies_history_relations();"
            )
    return "\n".join(statements)


TRIGGERS_SQL = f"""
CREATE TRIGGER movies_history_bump BEFORE UPDATE ON movies_movie FOR EACH ROW
  WHEN (NEW.version <= OLD.version)
  EXECUTE FUNCTION movies_history_bump();
CREATE CONSTRAINT TRIGGER movies_history_created AFTER INSERT ON movies_movie
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION movies_history_record();
CREATE CONSTRAINT TRIGGER movies_history_updated AFTER UPDATE ON movies_movie
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version)
  EXECUTE FUNCTION movies_history_record();
CREATE TRIGGER movies_history_deleted AFTER DELETE ON movies_movie FOR EACH ROW
  EXECUTE FUNCTION movies_history_delete();
{_relation_triggers()}
"""

INSTALL_SQL = FUNCTIONS_SQL + TRIGGERS_SQL


# Every history trigger, as (table, trigger).
HISTORY_TRIGGERS = (
    *((table, f"movies_history_{event}") for table in RELATION_TABLES for event in ("insert", "update", "delete")),
    *(("movies_movie", f"movies_history_{name}") for name in ("bump", "created", "updated", "deleted")),
)

UNINSTALL_SQL = "\n".join(
    [
        *(f"DROP TRIGGER IF EXISTS {trigger} ON {table};" for table, trigger in HISTORY_TRIGGERS),
        *(
            f"DROP FUNCTION IF EXISTS movies_history_{name};"
            for name in ("record", "delete", "relations", "bump", "actor", "snapshot", "time")
        ),
    ]
)


def bulk_load_triggers_sql(*, enabled: bool) -> str:
    """The history's triggers paused (enabled=False) or resumed, for this transaction only (ALTER TABLE is
    transactional), around a bulk load that records its movies' versions itself with BULK_LOAD_HISTORY_SQL.

    Only `generate_movies` does this: its bulk path drops and rebuilds the loaded tables' indexes and constraints in
    the load's transaction, which PostgreSQL refuses while deferred trigger events are pending on the table, and a
    snapshot per movie without those indexes would read whole tables. It takes SHARE ROW EXCLUSIVE locks on the
    tables first, so no other transaction writes them while their triggers are off."""
    action = "ENABLE" if enabled else "DISABLE"
    return "\n".join(f"ALTER TABLE {table} {action} TRIGGER {trigger};" for table, trigger in HISTORY_TRIGGERS)


def _record_current_versions(where: str, actor: str) -> str:
    """Record the current version of the movies `where` selects, as written by `actor` (SQL expressions)."""
    return f"""
INSERT INTO movies_movieversion (movie_id, version, kind, at, actor, snapshot, xid)
SELECT id, version, CASE WHEN version = 1 THEN 'created' ELSE 'updated' END, updated_at, {actor},
       movies_history_snapshot(id, version, updated_at), pg_current_xact_id()::text::bigint
  FROM movies_movie {where} ORDER BY id
"""  # noqa: S608 (constant SQL)


# Entries older than the horizon (parameter: the horizon's time), never a movie's latest one (the triggers number the
# next version after it, and it is what a client holding the movie can diff against).
PURGE_SQL = """
DELETE FROM movies_movieversion v
 WHERE v.at < %s
   AND v.version < (SELECT max(l.version) FROM movies_movieversion l WHERE l.movie_id = v.movie_id)
"""

# Every movie's current version, recorded when the triggers are installed: its history starts there.
HISTORY_BACKFILL_SQL = _record_current_versions("", f"'{DATABASE_ACTOR}'::jsonb")
# The movies a bulk load added (id > %s) with its triggers paused, their versions recorded at once (set-based: one
# statement instead of a deferred trigger call per movie) by the transaction's actor, as the triggers would.
BULK_LOAD_HISTORY_SQL = _record_current_versions("WHERE id > %s", "movies_history_actor()")
