from support import log_in


def test_login_then_me(client, user):
    assert log_in(client).status_code == 303
    assert client.get("/api/me").json()["username"] == "alice"
