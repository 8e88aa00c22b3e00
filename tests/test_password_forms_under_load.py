"""Someone hammers the forms that judge a new password (a reset link, the account page) with
passwords that are slow to judge: logged-in pages keep their pace, because the judging runs
away from the event loop, and the tries on one link or one account are limited."""

import statistics
import threading
import time

import httpx2
import pytest

from authsite import resets
from support import PASSWORD, csrf_from, running_site

# zxcvbn's cost grows quickly with repetition and length: this one takes tens of milliseconds.
SLOW_TO_JUDGE = "1" * 72
NEW_PASSWORD = "new password 456"
SAMPLES = 40
HAMMERS = 3


@pytest.fixture
def alice(make_user):
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def reset_token(alice, run_db) -> str:
    return run_db(lambda db: resets.create_reset_token(db=db, user=alice))


def choose_password(browser, token: str, password: str = NEW_PASSWORD):
    form = csrf_from(browser.get(f"/auth/reset/{token}").text)
    return browser.post(f"/auth/reset/{token}", data={"password": password, "password_confirm": password,
                                                         "csrf_token": form})


def change_password(browser, new: str, current: str = PASSWORD):
    form = csrf_from(browser.get("/account").text)
    return browser.post("/account/password", data={"current_password": current, "new_password": new,
                                                    "new_password_confirm": new, "csrf_token": form})


@pytest.fixture
def server(tmp_path, database_url):
    """`python run.py` on a free loopback port; sign-ups unlimited, so the form can be hammered."""
    with running_site(tmp_path, database_url, signup_max_per_ip="1000000") as (url, _):
        yield url


def sign_up(browser: httpx2.Client, username: str, password: str) -> httpx2.Response:
    token = csrf_from(browser.get("/auth/register").text)
    data = {"username": username, "password": password, "password_confirm": password, "csrf_token": token}
    return browser.post("/auth/register", data=data)


def page_times(browser: httpx2.Client, until=lambda: True) -> list[float]:
    """Latencies of SAMPLES logged-in page requests or more, until `until()` holds (60 s at most)."""
    times, deadline = [], time.monotonic() + 60
    while len(times) < SAMPLES or (not until() and time.monotonic() < deadline):
        started = time.perf_counter()
        assert browser.get("/api/me").status_code == 200
        times.append(time.perf_counter() - started)
        time.sleep(0.01)
    return times


def test_a_logged_in_page_keeps_its_pace_while_strangers_hammer_a_password_form(server):
    with httpx2.Client(base_url=server, timeout=30) as reader:
        assert sign_up(reader, "alice", PASSWORD).status_code == 303
        calm = statistics.median(page_times(reader))
        stop = threading.Event()
        sent = []

        def hammer(number: int) -> None:
            with httpx2.Client(base_url=server, timeout=30) as attacker:
                token = csrf_from(attacker.get("/auth/register").text)
                form = {"username": f"mallory{number}", "password": SLOW_TO_JUDGE,
                        "password_confirm": SLOW_TO_JUDGE, "csrf_token": token}
                while not stop.is_set():
                    assert attacker.post("/auth/register", data=form).status_code == 400
                    sent.append(1)

        hammers = [threading.Thread(target=hammer, args=(i,)) for i in range(HAMMERS)]
        for thread in hammers:
            thread.start()
        try:
            time.sleep(0.3)
            # Measured for as long as it takes the hammers to be judged a few times each.
            busy = statistics.median(page_times(reader, until=lambda: len(sent) >= 2 * HAMMERS))
        finally:
            stop.set()
            for thread in hammers:
                thread.join(timeout=60)

    assert len(sent) >= 2 * HAMMERS
    # Judged on the event loop, each password held every page for its whole length (about ten
    # times the calm median here); judged in a process of its own, pages keep their pace.
    assert busy / calm < 4, (calm, busy, len(sent))


def test_tries_on_one_reset_link_are_limited(client, site, reset_token, alice):
    tries = site.limits.new_password.max_hits
    for _ in range(tries):
        assert choose_password(client, reset_token, SLOW_TO_JUDGE).status_code == 400

    response = choose_password(client, reset_token)

    assert response.status_code == 429
    assert response.headers["retry-after"].isdigit()
    assert "Too many attempts" in response.text


def test_tries_on_the_account_password_form_are_limited(logged_in_client, site):
    tries = site.limits.new_password.max_hits
    for _ in range(tries):
        assert change_password(logged_in_client, SLOW_TO_JUDGE).status_code == 400

    response = change_password(logged_in_client, NEW_PASSWORD)

    assert response.status_code == 429
    assert response.headers["retry-after"].isdigit()
    assert "Too many attempts" in response.text
