"""The JSON API: log in, log out, who am I, for scripts and single-page apps."""

import pytest

from support import PASSWORD

SECRET_GUESS = "my very secret guess"


def api_log_in(client, username="alice", password=PASSWORD, **extra):
    return client.post("/api/auth/login", json={"username": username, "password": password, **extra})


def test_api_login_answers_the_user_and_sets_the_cookie(client, user):
    response = api_log_in(client)

    assert response.status_code == 200
    body = response.json()["user"]
    assert body["username"] == "alice"
    assert body["id"] == user.id
    assert "authenticated" in body["scopes"]
    assert "session" in response.cookies


def test_api_login_cookie_opens_pages_too(client, user):
    api_log_in(client)

    assert "alice" in client.get("/").text


def test_api_login_with_a_wrong_password_gets_401_detail(client, user):
    response = api_log_in(client, password=SECRET_GUESS)

    assert response.status_code == 401
    assert response.json()["detail"]
    assert SECRET_GUESS not in response.text
    assert "session" not in response.cookies


def test_api_login_with_an_unknown_user_gets_the_same_answer_as_a_wrong_password(client, user):
    unknown = api_log_in(client, username="nobody")
    wrong = api_log_in(client, password="not the password")

    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_api_login_matches_usernames_case_insensitively(client, user):
    assert api_log_in(client, username="ALICE").status_code == 200


@pytest.mark.parametrize(
    ("body", "bad_fields"),
    [
        ({}, {"username", "password"}),
        ({"username": "alice"}, {"password"}),
        ({"password": SECRET_GUESS}, {"username"}),
        ({"username": 42, "password": SECRET_GUESS}, {"username"}),
        ({"username": "alice", "password": ["a", SECRET_GUESS]}, {"password"}),
        ({"username": "alice", "password": SECRET_GUESS, "remember": "perhaps"}, {"remember"}),
    ],
    ids=["empty", "no-password", "no-username", "username-number", "password-list", "remember-not-bool"],
)
def test_api_login_with_missing_or_mistyped_fields_gets_422_per_field(client, user, body, bad_fields):
    response = client.post("/api/auth/login", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {entry["loc"][-1] for entry in detail} == bad_fields
    assert all(entry["msg"] for entry in detail)
    # The password must never come back, not even as "the input you sent".
    assert SECRET_GUESS not in response.text


def test_api_login_refuses_a_non_json_content_type_with_415(client, user):
    response = client.post(
        "/api/auth/login", data={"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 415
    assert "session" not in response.cookies


def test_api_login_refuses_json_sent_as_text_plain_with_415(client, user):
    response = client.post(
        "/api/auth/login",
        content=b'{"username": "alice", "password": "correct horse battery"}',
        headers={"content-type": "text/plain"},
    )

    assert response.status_code == 415
    assert "session" not in response.cookies


def test_api_login_accepts_json_with_a_charset(client, user):
    response = client.post(
        "/api/auth/login",
        content=b'{"username": "alice", "password": "correct horse battery"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"username": "alice"', b"\xff\xfe"], ids=["garbage", "empty", "truncated", "not-utf8"])
def test_api_login_with_invalid_json_gets_400(client, user, body):
    response = client.post("/api/auth/login", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.json()["detail"]


def test_api_logout_answers_204_and_ends_the_session(client, user):
    api_log_in(client)
    token = client.cookies["session"]

    response = client.post("/api/auth/logout", json={})

    assert response.status_code == 204
    assert client.get("/api/me").status_code == 401
    client.cookies.set("session", token)
    assert client.get("/api/me").status_code == 401


def test_api_logout_needs_json(client, user):
    api_log_in(client)

    response = client.post("/api/auth/logout", data={"x": "y"})

    assert response.status_code == 415
    assert client.get("/api/me").status_code == 200


def test_me_tells_a_logged_in_user_who_they_are(client, make_user):
    alice = make_user(scopes=("authenticated", "reports"))
    api_log_in(client)

    response = client.get("/api/me")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == alice.id
    assert body["username"] == "alice"
    assert body["scopes"] == ["authenticated", "reports"]


def test_me_never_includes_a_password_hash(client, user):
    api_log_in(client)

    response = client.get("/api/me")

    assert not any("password" in key for key in response.json())
    assert "$argon2" not in response.text
    assert user.password_hash not in response.text


def test_me_for_an_anonymous_caller_is_401_json(client):
    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]
    assert "location" not in response.headers


def test_api_logout_without_a_body_or_a_content_type_answers_204_and_ends_the_session(client, user):
    api_log_in(client)

    response = client.post("/api/auth/logout")

    assert response.status_code == 204
    assert client.get("/api/me").status_code == 401


def test_api_logout_with_a_body_that_is_not_json_is_still_415(client, user):
    api_log_in(client)

    response = client.post("/api/auth/logout", content=b"x=y")

    assert response.status_code == 415
    assert client.get("/api/me").status_code == 200


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/auth/login", "post", {"200", "202", "400", "401", "403", "413", "415", "422", "429", "503"}),
        ("/api/auth/mfa", "post", {"200", "400", "401", "403", "413", "415", "422", "429", "503"}),
        ("/api/auth/confirm", "post", {"204", "400", "401", "403", "413", "415", "422", "429", "503"}),
        ("/api/auth/logout", "post", {"204", "400", "403", "413", "415", "422", "503"}),
        ("/api/me", "get", {"200", "401", "403", "503"}),
    ],
)
def test_the_openapi_document_lists_every_status_a_route_answers(app, path, method, statuses):
    operation = app.openapi()["paths"][path][method]

    assert set(operation["responses"]) == statuses
    for status, answer in operation["responses"].items():
        if status not in ("204",):
            assert "application/json" in answer["content"], status


def test_the_openapi_document_marks_the_logout_body_optional(app):
    assert app.openapi()["paths"]["/api/auth/logout"]["post"]["requestBody"]["required"] is False
