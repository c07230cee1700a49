"""What the catalogue's services refuse, as the domain says it: no HTTP status here.

The API answers each with a problem (movieapi/errors.py `problem_for`), the admin with a message; the message of
each error says what to do next, and the same text is the problem's `detail`.
"""

from __future__ import annotations

from movies.sql import MovieRow


class CatalogueError(Exception):
    """A write or read the catalogue refuses; str() is the message for the person who asked."""

    default_message = "The catalogue refused this request."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        """The message, as given or the class's default."""
        return str(self.args[0])


class MovieNotFound(CatalogueError):
    default_message = "No such movie."


class RatingNotFound(CatalogueError):
    default_message = "You have not rated this movie."


class VersionConflict(CatalogueError):
    """A versioned write or delete based on a version that is no longer current."""

    default_message = "The movie was changed by someone else since the version you based this write on."

    def __init__(
        self, message: str | None = None, *, current_version: int, current_row: MovieRow | None = None
    ) -> None:
        """current_row: the movie's representation row as the failed write found it, when the
        write read it: the API answers its ETag beside `current_version`, so the client can retry without a GET."""
        super().__init__(message)
        self.current_version = current_version
        self.current_row = current_row


class StillReferenced(CatalogueError):
    """A genre or person that movies still name: removing them silently would bypass those movies' versions."""


class ImdbIdTaken(CatalogueError):
    """Another movie already has this IMDb id (the database's unique constraint said so)."""

    field = "imdb_id"
    default_message = "Another movie already has this IMDb id."


class AccountGone(CatalogueError):
    """The user was deleted while their request ran."""

    default_message = "This account no longer exists."


class RevertImpossible(CatalogueError):
    """A revert that cannot be written: the version is not recorded, or genres or people it names are gone."""

    default_message = "This movie cannot be reverted to that version."

    def __init__(self, message: str | None = None, *, errors: dict[str, list[str]]) -> None:
        """errors: what stands in the way, by field (`to_version`, `genres`, `directors`, `cast`)."""
        super().__init__(message)
        self.errors = errors


class FeedHistoryGone(CatalogueError):
    """History after a change-feed cursor has been purged (retention): following on would skip changes."""

    default_message = (
        "Changes after this cursor are no longer kept (HISTORY_RETENTION_DAYS), so following on would miss some: "
        "re-sync. Take a fresh cursor with GET /api/v1/changes/?after=now, then read the catalogue "
        "(GET /api/v1/movies/), then follow the feed from that cursor."
    )
