"""`serve`: check the settings, start the site once to report on it, then hand it to uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from authsite.cli.failures import BadSetting
from authsite.cli.runner import check_data_dir, run_to_end
from authsite.cli.start_messages import files_a_start_makes, start_messages

if TYPE_CHECKING:
    from authsite.config import Settings


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import logging.config

    import uvicorn

    from authsite.logs import logging_config
    from authsite.start_checks import listen_problem

    check_data_dir(settings)
    if problem := listen_problem(settings.host, settings.port):
        raise BadSetting(problem)
    config = logging_config(settings.log_level)
    logging.config.dictConfig(config)
    # Start once before serving so a bad database URL, key file or admin
    # password ends in one clear line rather than a server traceback; this
    # also migrates the schema before any worker starts.
    run_to_end(settings, _start_and_stop_site(settings))
    from authsite import serving

    # Each worker sizes its hashing processes by how many workers share the machine (passwords.py).
    os.environ["WEB_CONCURRENCY"] = str(args.workers)
    uvicorn.run(
        **serving.uvicorn_options(settings, workers=args.workers), log_config=config, log_level=settings.log_level
    )
    return 0


async def _start_and_stop_site(settings: Settings) -> None:
    from authsite.app import AuthSite
    from authsite.passwords import PasswordHasher

    missing = [path for path in files_a_start_makes(settings) if not path.exists()]
    site = AuthSite(settings)
    # This start serves no page: an admin's password (AUTHSITE_ADMIN_*) is hashed in a thread
    # rather than in a worker process started for this one moment.
    site.hasher = PasswordHasher(in_processes=False)
    try:
        await site.start()
        for line in await start_messages(settings, site, created=[path for path in missing if path.exists()]):
            print(line, flush=True)
    finally:
        await site.stop()
