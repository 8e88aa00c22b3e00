"""The console rule of conftest.py holds: what it must catch, it catches."""

import pytest

pytestmark = pytest.mark.sqlite_only
FOREIGN_IMAGE = "document.body.insertAdjacentHTML('beforeend', '<img alt=\"\" src=\"https://example.invalid/x.png\">')"


def forget(watch) -> None:
    """This test made the problem on purpose; the teardown check must not fail it."""
    watch.console_errors.clear()
    watch.csp_violations.clear()


def test_a_csp_violation_is_caught(page, watch):
    page.goto("/")

    page.evaluate(FOREIGN_IMAGE)
    page.wait_for_function("window.__cspViolations.length > 0")

    assert any(p.startswith("CSP violation: img-src blocked https://example.invalid/x.png") for p in watch.problems())
    forget(watch)


def test_an_error_status_the_test_did_not_expect_is_caught(page, watch):
    response = page.goto("/no-such-page")

    assert response.status == 404
    assert any("status of 404" in p for p in watch.problems()), watch.console_errors
    forget(watch)


def test_an_expected_error_status_is_allowed_only_for_a_page_that_had_it(page, watch):
    watch.expect_status(404)

    page.goto("/no-such-page")

    assert watch.problems() == []
    watch.console_errors.append(("Failed to load resource: the server responded with a status of 404 (Not Found)",
                                 "http://127.0.0.1/some-other-page"))
    assert len(watch.problems()) == 1
    forget(watch)
