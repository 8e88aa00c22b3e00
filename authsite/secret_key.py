import os
import secrets
from pathlib import Path

from authsite.files import PRIVATE_FILE_MODE, make_private_dir, warn_if_shared

KEY_FILE_NAME = "secret_key"
KEY_BYTES = 32


def load_or_create_secret_key(data_dir: Path) -> str:
    """The key kept in `<data_dir>/secret_key`, made once with mode 0600 if missing."""
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        make_private_dir(data_dir)
        _write_once(path, secrets.token_urlsafe(KEY_BYTES))
    else:
        warn_if_shared(path)
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds a key shorter than 32 characters; delete it to make a new one")
    return key


def _write_once(path: Path, key: str) -> None:
    # Several workers may start at once: each writes a private temp file and
    # links it into place; os.link fails if another worker won, and everyone
    # then reads the one key that landed.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
