"""RFC 9110 entity tags: the If-Match / If-None-Match lists, parsed by the grammar and compared strongly or weakly.

    If-Match      = "*" / #entity-tag            (section 13.1.1)
    If-None-Match = "*" / #entity-tag            (section 13.1.2)
    entity-tag    = [ "W/" ] DQUOTE *etagc DQUOTE
    etagc         = %x21 / %x23-7E / obs-text    (so a tag may hold commas: splitting on "," is wrong)

A header that does not follow the grammar is a 400 naming the header (docs/concurrency.md says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from movieapi.errors import MalformedPrecondition

# WSGI hands header values over as latin-1 text, so obs-text (bytes 0x80-0xFF) arrives as U+0080-U+00FF.
# One `#element` list item: optional whitespace, an optional tag (empty items are allowed, RFC 9110 5.6.1), optional
# whitespace, then a comma or the end. Matched item by item with possessive whitespace, so a long hostile header
# costs linear time (one pattern for the whole list backtracks polynomially on a run of blanks).
_ITEM = re.compile(r'[ \t]*+(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*+")[ \t]*+)?(,|\Z)')


# The same grammar as one ECMA-262 pattern, for the OpenAPI schema's If-Match / If-None-Match parameters (a client
# or fuzzer then knows which values are 400); test_conditional checks that it accepts exactly what the parser does.
_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
ENTITY_TAG_LIST_PATTERN = rf"^(?:[ \t]*\*[ \t]*|(?:[ \t]*(?:{_TAG}[ \t]*)?,)*[ \t]*(?:{_TAG}[ \t]*)?)$"


@dataclass(frozen=True)
class EntityTag:
    """One listed tag: its opaque part with the quotes, and whether it was marked weak."""

    opaque: str
    weak: bool


ANY: Literal["*"] = "*"


def parse_entity_tags(header_name: str, value: str) -> list[EntityTag] | Literal["*"]:
    """The tags a conditional header lists, or `*`; MalformedPrecondition (400) if it is neither."""
    if value.strip(" \t") == ANY:
        return ANY
    tags: list[EntityTag] = []
    position = 0
    while True:
        item = _ITEM.match(value, position)
        if item is None:
            raise MalformedPrecondition(
                f"{header_name} is neither `*` nor a comma-separated list of entity tags. An entity tag is quoted, "
                'optionally marked weak: "abc" or W/"abc". Send the ETag header\'s value exactly as the server gave it.'
            )
        weak, opaque, separator = item.groups()
        if opaque is not None:
            tags.append(EntityTag(opaque=opaque, weak=weak is not None))
        if not separator:
            return tags
        position = item.end()


def strong_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """If-Match's comparison: `*`, or the same opaque tag with neither side weak (our ETags are all strong)."""
    return tags == ANY or any(not tag.weak and tag.opaque == etag for tag in tags)


def weak_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """If-None-Match's comparison: `*`, or the same opaque tag whether or not either side is weak."""
    return tags == ANY or any(tag.opaque == etag for tag in tags)


def only_weak_match(tags: list[EntityTag] | Literal["*"], etag: str) -> bool:
    """The tag is listed, but only as weak: the likely mistake behind an If-Match that fails (worth saying so)."""
    return tags != ANY and not strong_match(tags, etag) and weak_match(tags, etag)
