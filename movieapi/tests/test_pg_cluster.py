"""pg_cluster: a primary and a streaming replica start, lag on demand, and leave nothing behind."""

from __future__ import annotations

import os

import pytest

from movieapi.tests.pg_cluster import PgCluster, PgServer, PgUnavailable


def _cluster() -> PgCluster:
    try:
        return PgCluster()
    except PgUnavailable as error:
        pytest.skip(str(error))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_replica_streams_pauses_and_catches_up() -> None:
    with _cluster() as cluster:
        primary = cluster.start_primary()
        replica = cluster.start_replica()
        assert replica.value("SELECT pg_is_in_recovery()") is True
        primary.query("CREATE TABLE t (x int)")
        primary.query("INSERT INTO t VALUES (1)")
        replica.wait_replayed(primary.current_lsn())
        assert replica.value("SELECT count(*) FROM t") == 1

        replica.pause_replay()
        primary.query("INSERT INTO t VALUES (2)")
        assert primary.value("SELECT count(*) FROM t") == 2
        assert replica.value("SELECT count(*) FROM t") == 1  # received, not applied
        replica.resume_replay()
        replica.wait_replayed(primary.current_lsn())
        assert replica.value("SELECT count(*) FROM t") == 2


def test_close_removes_processes_and_folder_even_when_the_block_raises() -> None:
    servers: list[PgServer] = []
    cluster = _cluster()

    def fail_midway() -> None:
        with cluster:
            servers.extend([cluster.start_primary(), cluster.start_replica()])
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_midway()
    assert cluster.base_dir is None
    assert not any(_alive(server.process.pid) for server in servers)
    assert not servers[0].data_dir.exists()


def test_a_server_that_cannot_start_says_why_and_is_cleaned_up() -> None:
    cluster = _cluster()
    with cluster:
        primary = cluster.start_primary()
        folder = cluster.folder
        with pytest.raises(RuntimeError, match="exited at start"):
            cluster.start_replica(port=primary.port)  # the primary holds that port
    assert not folder.exists()
    assert not _alive(primary.process.pid)
