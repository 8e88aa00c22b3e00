"""A login on Postgres in few round trips, and a pool that still heals itself.

Every round trip to Postgres is a turn of the event loop through SQLAlchemy and asyncpg, on the
same core that serves pages: a login used to cost 25 of them, and a login storm doubled the page's
p99 on Postgres (issue 18, bench/RESULTS.md). The app reaches Postgres through a relay that counts
the app's writes (tests/relay.py), each one a round trip."""

import asyncio

import pytest
from sqlalchemy.engine import make_url

from relay import PausableRelay
from support import PASSWORD

pytestmark = pytest.mark.postgres_only

# A stranger's login, in two trips to the database that each check their pooled connection first
# (one ping each). Before the hash, three statements each committed on its own: the account's row,
# both rate-limit buckets' rows (committed before they are counted), the count of both buckets.
# After it, one transaction (BEGIN, the stamp, the session, the reservations given back, COMMIT) and
# the audit event on its own.
LOGIN_ROUND_TRIPS = 11
# A wrong password: the same first trip; then the reservations settled as failures, and the event.
FAILED_LOGIN_ROUND_TRIPS = 7


@pytest.fixture
def relay(database_url):
    url = make_url(database_url)
    relay = PausableRelay((url.host, url.port))
    yield relay
    relay.close()


@pytest.fixture
def settings(make_settings, database_url, relay):
    relayed = make_url(database_url).set(host="127.0.0.1", port=relay.port)
    return make_settings(database_url=relayed.render_as_string(hide_password=False))


def api_log_in(client):
    client.cookies.clear()  # a stranger each time: no session to replace, no device cookie
    return client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})


def round_trips_of(relay, action) -> int:
    before = relay.sent
    action()
    return relay.sent - before


def test_a_login_costs_at_most_eleven_round_trips_to_postgres(client, user, relay):
    for _ in range(3):  # the statements are prepared on the connection once
        assert api_log_in(client).status_code == 200
    trips = round_trips_of(relay, lambda: api_log_in(client))
    assert trips <= LOGIN_ROUND_TRIPS, f"a login took {trips} round trips to Postgres"


def test_a_wrong_password_costs_at_most_seven_round_trips(client, user, relay):
    def fail():
        client.cookies.clear()
        assert client.post("/api/auth/login", json={"username": "alice", "password": "not it"}).status_code == 401

    for _ in range(2):
        api_log_in(client)
    fail()  # the statements are prepared on the connection once
    trips = round_trips_of(relay, fail)
    assert trips <= FAILED_LOGIN_ROUND_TRIPS, f"a failed login took {trips} round trips to Postgres"


def test_a_pooled_connection_is_checked_in_one_round_trip(client, user, site, relay):
    async def check_out():
        async with site.database.engine.connect() as conn:
            await conn.close()

    assert api_log_in(client).status_code == 200  # the pool now holds an open connection
    assert round_trips_of(relay, lambda: client.portal.call(check_out)) == 1


def test_a_login_after_postgres_dropped_the_sites_connections_still_succeeds(client, user, database_url):
    assert api_log_in(client).status_code == 200
    asyncio.run(_drop_other_connections(database_url))
    response = api_log_in(client)
    assert response.status_code == 200, response.text


def test_a_login_after_postgres_dropped_the_connections_twice_in_a_row_still_succeeds(client, user, database_url):
    for _ in range(2):
        asyncio.run(_drop_other_connections(database_url))
        assert api_log_in(client).status_code == 200


async def _drop_other_connections(database_url: str) -> None:
    """As a Postgres restart, or an idle timeout, does to the site's pooled connections."""
    import asyncpg

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        # pg_terminate_backend only signals: wait until the backends have gone.
        for _ in range(100):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity"
                                       " WHERE datname = current_database() AND pid <> pg_backend_pid()"):
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def test_a_login_succeeds_when_the_pooled_connections_check_keeps_failing(client, user, monkeypatch):
    """A pooled connection that fails its check is replaced, and a connection just opened is not
    checked again: the request goes on on the new one instead of failing with a 500."""
    import asyncpg

    assert api_log_in(client).status_code == 200  # the pool holds a connection now
    real_execute = asyncpg.Connection.execute

    async def check_times_out(self, query, *args, **kwargs):
        if query == "SELECT 1":
            raise TimeoutError("no answer to the check")
        return await real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", check_times_out)
    response = api_log_in(client)
    assert response.status_code == 200, response.text
