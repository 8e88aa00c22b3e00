"""authsite's own stylesheet and scripts: read once at start, served from memory.

Each file has two addresses. The one pages link to carries a hash of the content
(`/static/authsite.3f9c2a1d7b.css`): it can never name other bytes, so browsers keep it
for a year without asking again, and a new release simply links to a new name. The plain
name (`/static/authsite.css`) stays for anyone who linked it by hand: browsers revalidate it
with its ETag. Text is gzipped once here, not per request. Starlette's StaticFiles streams
from disk and does neither; these are a few small files, so memory is the cheaper place.
"""

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from authsite import compression

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
HASH_CHARS = 10
CONTENT_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    digest: str


class StaticAssets:
    def __init__(self, folder: Path, *, url_prefix: str):
        self.url_prefix = url_prefix.rstrip("/")
        self._by_name: dict[str, tuple[Asset, str]] = {}  # served name -> (asset, Cache-Control)
        self._hashed_name: dict[str, str] = {}
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            asset = _load(path)
            hashed = f"{path.stem}.{asset.digest}{path.suffix}"
            self._hashed_name[path.name] = hashed
            self._by_name[hashed] = (asset, IMMUTABLE)
            self._by_name[path.name] = (asset, REVALIDATE)

    def url(self, name: str) -> str:
        """The address a page links to: the content-hashed one (plain, for a file we do not have)."""
        return f"{self.url_prefix}/{self._hashed_name.get(name, name)}"

    def route(self) -> Route:
        return Route(self.url_prefix + "/{name}", self.answer, methods=["GET"], name="authsite-static")

    async def answer(self, request: Request) -> Response:
        found = self._by_name.get(request.path_params["name"])
        if found is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        asset, cache_control = found
        body, etag, headers = asset.body, f'"{asset.digest}"', {"cache-control": cache_control}
        if asset.gzipped is not None:
            headers["vary"] = "accept-encoding"
            if compression.accepts_gzip(request.headers.get("accept-encoding")):
                # Other bytes, so another ETag: a cache never answers one encoding's check with the other's.
                body, etag, headers["content-encoding"] = asset.gzipped, f'"{asset.digest}-gzip"', "gzip"
        headers["etag"] = etag
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type=asset.content_type)


def _load(path: Path) -> Asset:
    body = path.read_bytes()
    content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    is_text = content_type.startswith("text/") or content_type in ("application/json", "image/svg+xml")
    gzipped = compression.compress(body) if is_text and compression.worth_compressing(body) else None
    return Asset(body=body, gzipped=gzipped, content_type=content_type,
                 digest=hashlib.sha256(body).hexdigest()[:HASH_CHARS])


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
