"""A strict JSON parser: objects only, no NaN, no duplicate keys, no stack overflow on deep nesting."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

_MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300  # 0 means no limit: keep the default's bound


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _bounded_int(text: str) -> int:
    """An integer literal, refusing one longer than Python converts (sys.get_int_max_str_digits(), 4300) with a
    message for the client: Python's own tells the caller to call sys.set_int_max_str_digits()."""
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise ParseError(f"The body has an integer of {digits} digits; no field takes more than 19 (a 64-bit integer).")
    return int(text)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


class StrictJSONParser(BaseParser):
    """Parse `application/json` request bodies into a dict, refusing anything else with 400."""

    media_type = "application/json"

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        """Decode the body as one UTF-8 JSON object."""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not valid UTF-8 (byte {exc.start}).") from exc
        try:
            data = json.loads(
                text, parse_constant=_reject_constant, parse_int=_bounded_int, object_pairs_hook=_no_duplicate_keys
            )
        except RecursionError as exc:
            raise ParseError("The JSON body is nested too deeply.") from exc
        except ValueError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}.") from exc
        if not isinstance(data, dict):
            raise ParseError(f"The body must be a JSON object, not {type(data).__name__}.")
        return data
