"""A login's database work: two trips to the database around the password hash, none during it.

Issue 6: six ORM transactions per login cost more CPU than the page-serving loop could spare
during a login storm. These tests pin the shape that fixed it (authsite/logins.py)."""

import threading

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import col, select

from authsite import passwords
from authsite.db import each_statement_committed
from authsite.logins import LoginRequest
from authsite.models import AuthEvent, ThrottleHit, utcnow
from support import PASSWORD, form_token, log_in, statements_sent

WRONG_PASSWORD = "not the password at all"


@pytest.fixture
def settings(make_settings):
    return make_settings(login_max_failures=2)


class Trips:
    """How often the site went to the database (`Database.run`), and how many trips were
    under way whenever a password was being verified."""

    def __init__(self):
        self.count = 0
        self.under_way = 0
        self.under_way_while_hashing: list[int] = []


@pytest.fixture
def trips(site, monkeypatch) -> Trips:
    seen = Trips()
    real_run, real_verify, real_dummy = site.database.run, site.hasher.verify, site.hasher.dummy_verify

    async def counted_run(work):
        seen.count += 1
        seen.under_way += 1
        try:
            return await real_run(work)
        finally:
            seen.under_way -= 1

    async def watched_verify(password, stored_hash):
        seen.under_way_while_hashing.append(seen.under_way)
        return await real_verify(password, stored_hash)

    async def watched_dummy(password):
        seen.under_way_while_hashing.append(seen.under_way)
        return await real_dummy(password)

    monkeypatch.setattr(site.database, "run", counted_run)
    monkeypatch.setattr(site.hasher, "verify", watched_verify)
    monkeypatch.setattr(site.hasher, "dummy_verify", watched_dummy)
    return seen


def events_of(run_db, kind: str) -> list[AuthEvent]:
    async def read(db):
        return list((await db.exec(select(AuthEvent).where(AuthEvent.kind == kind).order_by(col(AuthEvent.id)))).all())

    return run_db(read)


def test_a_login_is_two_trips_to_the_database_and_none_while_hashing(client, user, trips):
    assert log_in(client).status_code == 303

    assert trips.count == 2
    assert trips.under_way_while_hashing == [0]


def test_a_wrong_password_is_two_trips_as_well(client, user, trips):
    assert log_in(client, password=WRONG_PASSWORD).status_code == 401

    assert trips.count == 2
    assert trips.under_way_while_hashing == [0]


def test_an_unknown_name_costs_the_same_trips_and_one_hash(client, user, trips):
    assert log_in(client, username="nobody", password=WRONG_PASSWORD).status_code == 401

    assert trips.count == 2
    assert trips.under_way_while_hashing == [0]


def test_a_login_writes_all_its_rate_limit_rows_in_one_statement_and_counts_them_in_one(client, site, user):
    form = form_token(client)  # the page's own reads stay out of the count
    with statements_sent(site) as sent:
        response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf_token": form})
    assert response.status_code == 303
    on_hits = [sql.split()[0].upper() for sql, _ in sent if "throttle_hit" in sql]
    # Reserved (one INSERT of both buckets' rows), counted (one SELECT), given back (one DELETE).
    assert on_hits == ["INSERT", "SELECT", "DELETE"], on_hits


def test_a_throttled_login_is_one_trip_and_no_hash(client, user, trips):
    for _ in range(2):
        assert log_in(client, password=WRONG_PASSWORD).status_code == 401
    trips.count, trips.under_way_while_hashing = 0, []

    assert log_in(client).status_code == 429

    assert trips.count == 1
    assert trips.under_way_while_hashing == []


def test_each_outcome_is_audited_once(client, user, run_db):
    assert log_in(client, password=WRONG_PASSWORD).status_code == 401
    assert log_in(client).status_code == 303

    [failed] = events_of(run_db, "login_failed")
    [succeeded] = events_of(run_db, "login")
    assert failed.detail == {"reason": "bad_password", "via": "form"}
    assert failed.user_id == succeeded.user_id == user.id
    assert succeeded.detail == {"via": "form", "new_device": True}  # this browser had not signed in before


def test_a_login_whose_password_changed_while_it_hashed_fails_and_says_why(client, user, site, run_db, monkeypatch):
    real_verify = site.hasher.verify

    async def verify_while_the_password_changes(password, stored_hash):
        outcome = await real_verify(password, stored_hash)
        changed = passwords.CONTEXT.hash("a different password chosen meanwhile")
        await site.database.run(lambda conn: conn.execute(
            user.__table__.update().where(user.__table__.c.id == user.id).values(password_hash=changed)
        ))
        return outcome

    monkeypatch.setattr(site.hasher, "verify", verify_while_the_password_changes)

    assert log_in(client).status_code == 401
    [failed] = events_of(run_db, "login_failed")
    assert failed.detail["reason"] == "password_changed"
    assert events_of(run_db, "login") == []


def test_a_login_request_never_shows_its_password():
    # It travels to the database thread; a traceback or a log line may print it.
    request = LoginRequest(username="alice", password="correct horse battery staple")

    assert "correct horse" not in repr(request)
    assert "correct horse" not in str(request)


# Database.run, which the trips above go through

def hits(run_db) -> list[str]:
    async def read(db):
        return list((await db.exec(select(ThrottleHit.bucket).order_by(col(ThrottleHit.id)))).all())

    return run_db(read)


def add_hit(conn, bucket: str) -> None:
    conn.execute(insert(ThrottleHit.__table__).values(bucket=bucket, created_at=utcnow()))


def test_a_unit_of_work_is_committed_when_it_returns(client, site, run_db):
    client.portal.call(site.database.run, lambda conn: add_hit(conn, "kept"))

    assert hits(run_db) == ["kept"]


def test_a_unit_of_work_that_raises_leaves_nothing_it_had_not_committed(client, site, run_db):
    def half_done(conn):
        add_hit(conn, "committed first")
        conn.commit()
        add_hit(conn, "never committed")
        raise RuntimeError("gave up half way")

    with pytest.raises(RuntimeError, match="gave up half way"):
        client.portal.call(site.database.run, half_done)

    assert hits(run_db) == ["committed first"]


@pytest.mark.sqlite_only
def test_on_sqlite_a_unit_of_work_runs_off_the_event_loop_on_a_tuned_connection(client, site):
    def look(conn):
        pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "foreign_keys", "busy_timeout")}
        return threading.current_thread().name, pragmas

    loop_thread = client.portal.call(_current_thread_name)
    thread, pragmas = client.portal.call(site.database.run, look)

    assert thread != loop_thread
    assert pragmas["journal_mode"] == "wal" and pragmas["foreign_keys"] == 1 and pragmas["busy_timeout"] > 0


async def _current_thread_name() -> str:
    return threading.current_thread().name


# Statements committed one by one (authsite/db.py: each_statement_committed), where a login's
# rate-limit rows and audit events need no transaction around them (issue 18: fewer round trips).


def test_in_an_autocommit_block_each_statement_is_committed_as_it_runs(client, site, run_db):
    def add_then_give_up(conn):
        with each_statement_committed(conn):
            add_hit(conn, "committed as it ran")
            raise RuntimeError("gave up after it")

    with pytest.raises(RuntimeError, match="gave up after it"):
        client.portal.call(site.database.run, add_then_give_up)

    assert hits(run_db) == ["committed as it ran"]


def test_after_an_autocommit_block_statements_are_in_a_transaction_again(client, site, run_db):
    def block_then_more(conn):
        with each_statement_committed(conn):
            add_hit(conn, "in the block")
        add_hit(conn, "after it, never committed")
        raise RuntimeError("gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        client.portal.call(site.database.run, block_then_more)

    assert hits(run_db) == ["in the block"]


def test_an_autocommit_block_inside_an_open_transaction_changes_nothing(client, site, run_db):
    def in_a_transaction(conn):
        add_hit(conn, "opened the transaction")
        with each_statement_committed(conn):
            add_hit(conn, "still in it")
        raise RuntimeError("gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        client.portal.call(site.database.run, in_a_transaction)

    assert hits(run_db) == []


def test_a_statement_that_fails_in_an_autocommit_block_is_the_error_raised(client, site, run_db):
    def bad_statement(conn):
        with each_statement_committed(conn):
            add_hit(conn, "before the bad one")
            conn.execute(text("SELECT no_such_column FROM throttle_hit"))

    with pytest.raises((ProgrammingError, OperationalError)):  # Postgres says the first, SQLite the second
        client.portal.call(site.database.run, bad_statement)

    assert hits(run_db) == ["before the bad one"]
    client.portal.call(site.database.run, lambda conn: add_hit(conn, "the next unit works"))
    assert hits(run_db) == ["before the bad one", "the next unit works"]


def test_a_connection_lost_in_an_autocommit_block_is_not_reopened_on_the_way_out(client, site):
    """Switching a lost connection back out of autocommit would open a new one first, waiting on
    a database that is just then failing to answer; the lost one is discarded instead."""
    engine = site.database.run_engine

    def lost(context):
        if "no_such_column" in str(context.statement):
            context.is_disconnect = True  # as a dropped connection or a timeout is treated

    def still_the_lost_one_after_the_block(conn) -> bool:
        try:
            with each_statement_committed(conn):
                conn.execute(text("SELECT no_such_column FROM throttle_hit"))
        except (ProgrammingError, OperationalError):
            return conn.invalidated
        raise AssertionError("the statement should have failed")

    event.listen(engine, "handle_error", lost)
    try:
        assert client.portal.call(site.database.run, still_the_lost_one_after_the_block) is True
    finally:
        event.remove(engine, "handle_error", lost)
