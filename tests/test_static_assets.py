"""The stylesheet and scripts: linked by a content-hashed address a browser keeps for a year,
gzipped for browsers that take it, and pages gzipped too."""

import gzip
import re

import pytest

from authsite.compression import accepts_gzip
from authsite.static_assets import StaticAssets
from authsite.templating import resource_dir

STYLESHEET = (resource_dir("static") / "authsite.css").read_bytes()
NO_GZIP = {"accept-encoding": "identity"}


def stylesheet_url(client) -> str:
    page = client.get("/auth/login")
    [url] = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    return url


def test_pages_link_the_stylesheet_by_a_hash_of_its_content(client):
    assert re.fullmatch(r"/static/authsite\.[0-9a-f]{10}\.css", stylesheet_url(client))


def test_the_hashed_stylesheet_is_kept_for_a_year_without_asking_again(client):
    response = client.get(stylesheet_url(client), headers=NO_GZIP)

    assert response.status_code == 200
    assert response.content == STYLESHEET
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "text/css; charset=utf-8"


def test_the_stylesheet_is_gzipped_for_a_browser_that_accepts_it(client):
    response = client.get(stylesheet_url(client), headers={"accept-encoding": "gzip, deflate, br"})

    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "accept-encoding"
    assert int(response.headers["content-length"]) < len(STYLESHEET) / 2
    assert response.content == STYLESHEET  # the client undid the gzip


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", "br", ""])
def test_the_stylesheet_is_sent_plain_to_a_client_that_refuses_gzip(client, accept):
    response = client.get(stylesheet_url(client), headers={"accept-encoding": accept})

    assert "content-encoding" not in response.headers
    assert response.content == STYLESHEET


def test_the_plain_address_still_works_and_is_checked_again_each_time(client):
    response = client.get("/static/authsite.css", headers=NO_GZIP)

    assert response.content == STYLESHEET
    assert response.headers["cache-control"] == "no-cache"
    again = client.get("/static/authsite.css", headers={**NO_GZIP, "if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_the_gzipped_stylesheet_has_its_own_etag(client):
    plain = client.get("/static/authsite.css", headers=NO_GZIP).headers["etag"]
    zipped = client.get("/static/authsite.css", headers={"accept-encoding": "gzip"}).headers["etag"]

    assert plain != zipped
    stale = client.get("/static/authsite.css", headers={"accept-encoding": "gzip", "if-none-match": plain})
    assert stale.status_code == 200


@pytest.mark.parametrize("path", ["/static/missing.css", "/static/authsite.0000000000.css", "/static/..%2Fpyproject.toml",
                                  "/static/", "/static/.hidden"])
def test_anything_else_under_static_is_not_found(client, path):
    assert client.get(path).status_code == 404


def test_a_changed_file_gets_a_new_address(tmp_path):
    (tmp_path / "site.css").write_text("body { color: black; }")
    before = StaticAssets(tmp_path, url_prefix="/static").url("site.css")
    (tmp_path / "site.css").write_text("body { color: navy; }")
    after = StaticAssets(tmp_path, url_prefix="/static").url("site.css")

    assert before != after
    assert before.startswith("/static/site.") and before.endswith(".css")


def test_a_page_is_gzipped_for_a_browser_that_accepts_it(client):
    response = client.get("/auth/login", headers={"accept-encoding": "gzip"})

    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"]
    assert "<form" in response.text


def test_a_page_is_sent_plain_to_a_client_that_does_not_ask_for_gzip(client):
    response = client.get("/auth/login", headers=NO_GZIP)

    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)


def test_a_gzipped_page_is_the_page_in_gzip_with_its_length_right(client):
    with client.stream("GET", "/auth/login", headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())

    assert int(response.headers["content-length"]) == len(raw)
    assert b"<form" in gzip.decompress(raw)


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip", True), ("gzip, deflate, br, zstd", True), ("br;q=1.0, gzip;q=0.8", True), ("*", True),
    ("x-gzip", True), ("GZIP", True), ("gzip;q=0", False), ("gzip;q=0.0, br", False), ("*;q=0", False),
    ("identity", False), ("", False), (None, False), ("gzip;q=abc", False), ("br, *;q=0.1", True),
])
def test_accept_encoding_is_read_with_its_quality_values(header, accepted):
    assert accepts_gzip(header) is accepted
