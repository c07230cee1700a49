"""The change feed's positions and cursors, and a page from its statement's rows (docs/change-feed.md).

A position is an entry's (xid, id): the id of the transaction that wrote it (`pg_current_xact_id()`), then its own
id. The feed serves entries in that order, and only those written below the oldest transaction still in flight
(movies/sql.py FEED_PAGE_SQL), so no entry can ever appear behind a position already served. A cursor is the last
position served, opaque to consumers: base64url of a version byte and the two numbers.

No Django imports: bench/baseline_app.py serves the same pages without Django.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from movies.sql import FeedEntry

FEED_DEFAULT_LIMIT = 100
FEED_MAX_LIMIT = 1000
# `after=now`: a cursor at the feed's present (movies/sql.py FEED_NOW_SQL), to start following after a full read.
NOW = "now"

_FORMAT = struct.Struct(">BQQ")  # format version, xid, id
_VERSION = 1
_INT64_MAX = 2**63 - 1
# What every cursor looks like (23 characters of base64url for 17 bytes): the schema's pattern, too.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{23}$"
_CURSOR = re.compile(CURSOR_PATTERN)


class FeedPosition(NamedTuple):
    """A place in the feed: (xid, id) of the last entry served; (0, 0) is before the first entry."""

    xid: int
    id: int


START = FeedPosition(0, 0)


def now_position(xmin: int) -> FeedPosition:
    """The position after every entry written below xmin: the first page after it is the next entry committed."""
    return FeedPosition(xmin - 1, _INT64_MAX)


def encode_cursor(position: FeedPosition) -> str:
    """The opaque cursor of a position."""
    return base64.urlsafe_b64encode(_FORMAT.pack(_VERSION, *position)).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> FeedPosition:
    """The position a cursor names; ValueError if this server never issued it (any other text, format or value)."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError(cursor)
    try:
        version, xid, entry_id = _FORMAT.unpack(base64.urlsafe_b64decode(cursor + "="))
    except (binascii.Error, struct.error) as exc:
        raise ValueError(cursor) from exc
    position = FeedPosition(xid, entry_id)
    # One text per cursor: base64's unused low bits must be zero, as encode_cursor leaves them.
    if version != _VERSION or max(position) > _INT64_MAX or encode_cursor(position) != cursor:
        raise ValueError(cursor)
    return position


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page: its entries, the cursor of the next page, and whether the cursor lies behind purged history."""

    entries: list[FeedEntry]
    next: FeedPosition
    # Entries after the cursor were deleted (retention): the consumer must re-sync (410).
    gone: bool
    # The oldest transaction in flight when the page was read: entries it (or anything after it) writes come later.
    xmin: int


def feed_page(after: FeedPosition, rows: Sequence[Sequence[Any]]) -> FeedPage:
    """The page FEED_PAGE_SQL's rows make, for a request after the given position."""
    gone, xmin = bool(rows[0][0]), int(rows[0][1])
    entries = [FeedEntry._make(row[2:]) for row in rows if row[2] is not None]
    last = FeedPosition(entries[-1].xid, entries[-1].id) if entries else after
    return FeedPage(entries=entries, next=last, gone=gone, xmin=xmin)


def entry_json(entry: FeedEntry) -> dict[str, Any]:
    """An entry as the feed shows it (`at` as a datetime: the JSON renderer writes it in UTC with a Z)."""
    return {"movie": entry.movie_id, "version": entry.version, "kind": entry.kind, "at": entry.at}
