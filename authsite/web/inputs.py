"""Reading form and JSON bodies into plain values, refusing malformed ones with a clear 4xx."""

import json
from urllib.parse import unquote_to_bytes
from collections.abc import Iterable
from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_FORM_FIELDS = 50
TOO_MANY_FIELDS = f"The form has too many fields (at most {MAX_FORM_FIELDS}); send only the form's own fields."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Model = TypeVar("Model", bound=BaseModel)


async def read_form(request: Request, repeatable: Iterable[str] = ()) -> dict:
    """The submitted fields. A field sent twice is refused with 400, unless it
    is `repeatable` (its value is then the list); a file upload is refused too."""
    media_type = _media_type(request)
    if media_type not in FORM_TYPES:
        raise HTTPException(415, "Send the form as application/x-www-form-urlencoded.")
    # Our forms have a handful of fields; thousands are an attack on the
    # parser, refused before parsing (the body is already capped at 64 KiB).
    if media_type == FORM_TYPES[0]:
        body = await request.body()
        if body.count(b"&") >= MAX_FORM_FIELDS:
            raise HTTPException(413, TOO_MANY_FIELDS)
        if not _is_utf8_form(body):
            # The parser would quietly turn bad bytes into U+FFFD and store that.
            raise HTTPException(400, "The form is not valid UTF-8; send it as a browser would.")
    try:
        form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    except StarletteHTTPException as exc:  # Starlette's parser raises its own kind
        if "Too many fields" in str(exc.detail):
            raise HTTPException(413, TOO_MANY_FIELDS) from None
        raise
    fields: dict = {name: [] for name in repeatable}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise HTTPException(400, f"The field {name!r} must be text, not a file.")
        if name in repeatable:
            fields[name].append(value)
        elif name in fields:
            raise HTTPException(400, f"The field {name!r} was sent more than once.")
        else:
            fields[name] = value
    return fields


async def read_json(request: Request, model: type[Model]) -> Model:
    """The body validated against `model`: 415 if not JSON, 400 if unparsable, 422 per bad field."""
    require_json(request)
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise HTTPException(400, "The body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False, include_input=False)) from None


def require_json(request: Request) -> None:
    if _media_type(request) != "application/json":
        raise HTTPException(415, "Send the body as application/json.")


def _is_utf8_form(body: bytes) -> bool:
    try:
        unquote_to_bytes(body.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()
