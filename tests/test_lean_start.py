"""A worker loads what it needs when it needs it: Alembic only when a migration is due, zxcvbn's
word lists only when a password is set, the second factors' libraries (cryptography, pyotp, segno,
webauthn: about 10 MB together) only when a code or secret is handled, the User-Agent parser only
when a device is named (issue 6's and issue 18's memory targets, bench/RESULTS.md)."""

import subprocess
import sys
import textwrap

import pytest

START_AND_REPORT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from authsite import Settings, create_app

    settings = Settings(_env_file=None, data_dir=Path(sys.argv[1]), database_url=sys.argv[2],
                        secret_key="k" * 40)
    site = create_app(settings).state.authsite

    async def start_and_stop():
        await site.start()
        await site.stop()

    asyncio.run(start_and_stop())
    loaded = {name.split(".")[0] for name in sys.modules}
    print(" ".join(sorted(loaded & {"alembic", "zxcvbn", "cryptography", "pyotp", "segno", "webauthn", "cbor2", "ua_parser"})))
    """
)


@pytest.fixture
def start_a_worker(tmp_path, database_url):
    def start() -> set[str]:
        result = subprocess.run(
            [sys.executable, "-c", START_AND_REPORT, str(tmp_path / "data"), database_url],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    return start


def test_the_first_start_migrates_with_alembic(start_a_worker):
    assert "alembic" in start_a_worker()


def test_a_start_on_an_up_to_date_database_does_not_load_alembic(start_a_worker):
    start_a_worker()
    assert "alembic" not in start_a_worker()


def test_a_worker_that_has_set_no_password_has_not_loaded_zxcvbn(start_a_worker):
    assert "zxcvbn" not in start_a_worker()


def test_a_worker_that_has_met_no_second_factor_has_not_loaded_their_libraries(start_a_worker):
    assert start_a_worker().isdisjoint({"cryptography", "pyotp", "segno", "webauthn", "cbor2"})


def test_the_strength_check_still_refuses_a_common_password(client):
    from authsite import rules

    assert rules.password_problem("password1234") is not None
    assert rules.password_problem("correct horse battery staple orbit") is None


def test_a_worker_that_has_named_no_device_has_not_loaded_the_user_agent_parser(start_a_worker):
    assert "ua_parser" not in start_a_worker()
