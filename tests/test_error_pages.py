"""The standalone site's error pages: one clear title, and a message that does not contradict it."""

import re

import pytest

from support import log_in


def heading_and_message(html: str) -> tuple[str, str]:
    main = html[html.index("<main"):]
    heading = re.search(r"<h1>(.*?)</h1>", main, re.S).group(1).strip()
    message = re.search(r"</h1>\s*<p>(.*?)</p>", main, re.S).group(1).strip()
    return heading, message


@pytest.mark.parametrize("path", ["/no/such/page", "/auth/nothing-here"])
def test_an_unknown_address_says_page_not_found_and_nothing_contradictory(client, path):
    response = client.get(path)

    assert response.status_code == 404
    heading, message = heading_and_message(response.text)
    assert heading == "Page not found"
    assert "<title>Page not found ·" in response.text
    assert "Not Found" not in response.text
    assert "no page at this address" in message


def test_a_404_with_its_own_reason_keeps_it_under_the_same_title(client, make_user):
    make_user("ada", scopes=("authenticated", "admin"))
    log_in(client, "ada")

    response = client.get("/admin/users/999999")

    assert response.status_code == 404
    assert heading_and_message(response.text) == ("Page not found", "No such user.")


def test_the_api_still_answers_json_for_an_unknown_address(client):
    response = client.get("/api/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
