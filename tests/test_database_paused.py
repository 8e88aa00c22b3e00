"""A Postgres that stops answering (as under `kill -STOP`) costs a visitor a few seconds and a 503
with Retry-After, never a request that hangs; once it answers again, so does the site.

The app reaches Postgres through a relay the test can pause (tests/relay.py), so the shared
test cluster is never signalled."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as NoAnswer

import httpx2
import pytest
from sqlalchemy.engine import make_url

from relay import PausableRelay
from support import PASSWORD, form_token, log_in

pytestmark = pytest.mark.postgres_only

# Far above the few seconds the site may wait for its database, far below the 130 s the review
# waited in vain.
ANSWER_BOUND_SECONDS = 15
TRY_AGAIN = "Try again in a moment"
CONCURRENT_VISITORS = 30


@pytest.fixture
def relay(database_url):
    url = make_url(database_url)
    relay = PausableRelay((url.host, url.port))
    yield relay
    relay.close()


@pytest.fixture
def settings(make_settings, database_url, relay):
    """The site's database is the test database, reached through the relay."""
    return make_settings(database_url=relayed_url(database_url, relay))


def relayed_url(database_url: str, relay: PausableRelay) -> str:
    return make_url(database_url).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)


@pytest.fixture
def postgres_paused(relay):
    """Pause the database for the rest of the test (it answers again at teardown)."""
    relay.pause()
    yield relay
    relay.resume()


def answered(request, *, within: float = ANSWER_BOUND_SECONDS):
    """`request()`'s response, or a test failure if none came within `within` seconds."""
    pool = ThreadPoolExecutor(max_workers=1)
    started = time.monotonic()
    try:
        response = pool.submit(request).result(timeout=within)
    except NoAnswer:
        pytest.fail(f"no answer in {within} s")
    finally:
        pool.shutdown(wait=False)  # a hung request is freed when the relay resumes at teardown
    response.elapsed_seconds = time.monotonic() - started
    return response


def assert_json_503(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert TRY_AGAIN in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


def assert_html_503(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert TRY_AGAIN in response.text
    assert int(response.headers["retry-after"]) > 0


def test_a_logged_in_api_call_gets_the_json_503_while_postgres_is_paused(logged_in_client, postgres_paused):
    assert_json_503(answered(lambda: logged_in_client.get("/api/me")))


def test_the_account_page_gets_the_503_page_while_postgres_is_paused(logged_in_client, postgres_paused):
    assert_html_503(answered(lambda: logged_in_client.get("/account")))


def test_an_api_login_gets_the_json_503_while_postgres_is_paused(client, user, postgres_paused):
    login = {"username": "alice", "password": PASSWORD}

    assert_json_503(answered(lambda: client.post("/api/auth/login", json=login)))


def test_a_login_form_gets_the_503_page_while_postgres_is_paused(client, user, relay):
    token = form_token(client)
    relay.pause()
    try:
        response = answered(
            lambda: client.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
        )
    finally:
        relay.resume()

    assert_html_503(response)


def test_a_crowd_of_visitors_all_get_their_503_in_time_while_postgres_is_paused(
    client, logged_in_client, site, postgres_paused
):
    # More waiting requests than either pool has connections: nobody may queue without end.
    cookies = {"session": logged_in_client.cookies["session"]}

    async def crowd():
        transport = httpx2.ASGITransport(app=client.app)
        async with (
            httpx2.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies) as visitor,
            httpx2.AsyncClient(transport=transport, base_url="http://testserver") as stranger,
        ):
            visits = [visitor.get("/api/me") for _ in range(CONCURRENT_VISITORS)]
            logins = [stranger.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
                      for _ in range(CONCURRENT_VISITORS // 3)]
            return await asyncio.gather(*visits, *logins)

    responses = answered(lambda: Responses(client.portal.call(crowd)))

    assert [r.status_code for r in responses] == [503] * len(responses)
    for response in responses:
        assert_json_503(response)


class Responses(list):
    """A list of responses that `answered` can stamp with the time they took."""


def test_once_postgres_answers_again_so_does_the_site(logged_in_client, relay):
    relay.pause()
    try:
        assert answered(lambda: logged_in_client.get("/api/me")).status_code == 503
    finally:
        relay.resume()

    me = answered(lambda: logged_in_client.get("/api/me"))
    account = answered(lambda: logged_in_client.get("/account"))
    logged_in_client.cookies.clear()
    login = answered(lambda: log_in(logged_in_client))

    assert me.status_code == 200, me.text
    assert account.status_code == 200
    assert login.status_code == 303, login.text
