"""The catalogue: movies, genres, people, credits and users' ratings.

PostgreSQL enforces every rule that must always hold (checks, uniqueness, foreign keys);
the bounds live in movies/rules.py, which serializers, the admin and the importers read too.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.search import SearchConfig, SearchVector, SearchVectorField
from django.db import models
from django.db.models import Case, F, Func, Q, Value, When
from django.db.models.functions import Cast, Lower, Round

from movies.rules import (
    DB_MAX_YEAR,
    IMDB_ID_LENGTH,
    IMDB_NAME_RE,
    IMDB_TITLE_RE,
    MAX_CHARACTER_LENGTH,
    MAX_GENRE_NAME_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RUNTIME,
    MAX_SLUG_LENGTH,
    MAX_TITLE_LENGTH,
    MIN_YEAR,
    SLUG_RE,
)
from movies.sql import NAME_SEARCH_CONFIG, OVERVIEW_SEARCH_CONFIG, TITLE_SEARCH_CONFIG, UNACCENT_FUNCTION


def match_key(expression: str) -> Func:
    """`movies_match_key(<column>)`: the SQL function (migration 0009) that titles and names are matched by."""
    return Func(F(expression), function="movies_match_key", output_field=models.TextField())


def unaccented(expression: Any) -> Func:
    """The text without its accents (`Léon` -> `Leon`), through the IMMUTABLE wrapper the trigram indexes are built
    on (migration 0008): a search compares unaccented texts, so it is accent-blind and still indexed. A plain Func
    (not a subclass), so that migrations and indexes see the same expression."""
    return Func(expression, function=UNACCENT_FUNCTION, output_field=models.TextField())


def words_of(expression: Any, config: str) -> Func:
    """`to_tsvector(config, expression)` exactly as indexed: Django's SearchVector would wrap the expression in
    COALESCE, which no expression index matches."""
    return Func(SearchConfig(config), expression, function="to_tsvector", output_field=SearchVectorField())


class Genre(models.Model):
    slug = models.SlugField(max_length=MAX_SLUG_LENGTH, unique=True)
    name = models.CharField(max_length=MAX_GENRE_NAME_LENGTH, unique=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(slug__regex=SLUG_RE), name="genre_slug_format"),
            models.CheckConstraint(condition=~Q(name=""), name="genre_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class Person(models.Model):
    name = models.CharField(max_length=MAX_NAME_LENGTH)
    imdb_id = models.CharField(max_length=IMDB_ID_LENGTH, null=True, blank=True)  # unique: Meta.constraints
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "people"
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="person_name_not_empty"),
            models.CheckConstraint(condition=Q(imdb_id__regex=IMDB_NAME_RE), name="person_imdb_id_format"),
            # A constraint rather than unique=True, which would add a second index (varchar_pattern_ops, for LIKE)
            # that no query uses and every insert and non-HOT update writes.
            models.UniqueConstraint(fields=["imdb_id"], name="person_imdb_id_unique"),
        ]
        indexes = [
            models.Index(fields=["name", "id"], name="person_name_id"),
            # The name search (movies/search.py search_by_name): its words, then its trigrams for typos, both
            # accent-blind (migration 0008).
            GinIndex(words_of(F("name"), NAME_SEARCH_CONFIG), name="person_name_search"),
            GinIndex(OpClass(unaccented(F("name")), name="gin_trgm_ops"), name="person_name_trgm"),
            # The importers find a person without an IMDb id by their name, normalised (movies/importers/matching.py).
            models.Index(match_key("name"), name="person_name_key"),
        ]

    def __str__(self) -> str:
        return self.name


class Movie(models.Model):
    title = models.CharField(max_length=MAX_TITLE_LENGTH)
    year = models.SmallIntegerField()
    runtime = models.IntegerField(null=True, blank=True, help_text="Minutes")
    overview = models.TextField(blank=True, default="")
    imdb_id = models.CharField(max_length=IMDB_ID_LENGTH, null=True, blank=True)  # unique: Meta.constraints
    genres = models.ManyToManyField(Genre, related_name="movies", blank=True)
    directors = models.ManyToManyField(Person, related_name="directed_movies", blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    # Where each field's value came from ({"runtime": "imdb", "title": "curator", ...}; PROVENANCE_FIELDS): an import
    # never overwrites a field a curator or a higher-ranked source set. Not part of the representation or version.
    field_sources = models.JSONField(default=dict, db_default=Value({}, models.JSONField()), editable=False)
    # Ratings are kept as an exact sum and count, written in the same transaction as the rating rows.
    rating_count = models.PositiveIntegerField(default=0, editable=False)
    rating_sum = models.PositiveBigIntegerField(default=0, editable=False)
    rating_average = models.GeneratedField(
        expression=Case(
            When(
                rating_count__gt=0,
                then=Round(
                    Cast(F("rating_sum"), models.DecimalField(max_digits=20, decimal_places=0)) / F("rating_count"), 1
                ),
            ),
            default=None,
        ),
        output_field=models.DecimalField(max_digits=3, decimal_places=1, null=True),
        db_persist=True,
    )
    search_vector = models.GeneratedField(
        # Titles in `movie_title_unaccent` (simple + English stop words, migration 0004, + unaccent, 0008): any
        # script as written, minus words like "the" that would make a title word match a third of the catalogue.
        expression=SearchVector("title", weight="A", config=TITLE_SEARCH_CONFIG)
        + SearchVector("overview", weight="B", config=OVERVIEW_SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(title=""), name="movie_title_not_empty"),
            models.CheckConstraint(condition=Q(year__gte=MIN_YEAR, year__lte=DB_MAX_YEAR), name="movie_year_range"),
            models.CheckConstraint(
                condition=Q(runtime__isnull=True) | Q(runtime__gte=1, runtime__lte=MAX_RUNTIME),
                name="movie_runtime_range",
            ),
            models.CheckConstraint(condition=Q(imdb_id__regex=IMDB_TITLE_RE), name="movie_imdb_id_format"),
            models.UniqueConstraint(fields=["imdb_id"], name="movie_imdb_id_unique"),  # as Person's
            models.CheckConstraint(condition=Q(version__gte=1), name="movie_version_positive"),
            models.CheckConstraint(
                condition=Q(rating_sum__gte=F("rating_count")) & Q(rating_sum__lte=F("rating_count") * 10),
                name="movie_rating_sum_in_range",
            ),
        ]
        indexes = [
            models.Index(fields=["year", "id"], name="movie_year_id"),
            models.Index(fields=["title", "id"], name="movie_title_id"),
            models.Index(fields=["runtime", "id"], name="movie_runtime_id"),
            models.Index(fields=["rating_average", "id"], name="movie_rating_id"),
            # `-rating` and `-runtime` put NULLs last too, which a backward scan of the index above cannot give.
            models.Index(F("rating_average").desc(nulls_last=True), F("id").desc(), name="movie_rating_desc_id"),
            models.Index(F("runtime").desc(nulls_last=True), F("id").desc(), name="movie_runtime_desc_id"),
            models.Index(fields=["rating_count", "id"], name="movie_rating_count_id"),
            models.Index(fields=["created_at", "id"], name="movie_created_id"),
            GinIndex(fields=["search_vector"], name="movie_search"),
            # Searches made only of stop words ("her", "it", "up") look for that exact title instead.
            models.Index(Lower("title"), name="movie_title_lower"),
            # Typos (movies/sql.py TYPO_MATCH_SQL): the unaccented title's trigrams (migration 0008).
            GinIndex(OpClass(unaccented(F("title")), name="gin_trgm_ops"), name="movie_title_trgm"),
            # A row without an IMDb id finds its movie by normalised title and year (movies/importers/matching.py).
            models.Index(match_key("title"), "year", name="movie_title_key_year"),
            # The title words alone (movies/sql.py TITLE_MATCH_SQL): a search's candidates are its title matches
            # first, so a word in many overviews cannot crowd a title out of the ranking (migrations 0005, 0008).
            GinIndex(words_of(F("title"), TITLE_SEARCH_CONFIG), name="movie_title_search"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.year})"


class CastMember(models.Model):
    """One credited role: a person playing a character in a movie, in billing order."""

    # No single-column FK indexes: (movie, order) and (person, movie) below serve both lookups.
    movie = models.ForeignKey(Movie, on_delete=models.CASCADE, related_name="cast", db_index=False)
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="roles", db_index=False)
    character = models.CharField(max_length=MAX_CHARACTER_LENGTH, blank=True, default="")
    order = models.PositiveSmallIntegerField()

    class Meta:
        db_table = "movies_cast"
        verbose_name = "cast member"
        ordering = ["movie", "order"]
        constraints = [
            models.UniqueConstraint(fields=["movie", "order"], name="cast_unique_order"),
        ]
        indexes = [models.Index(fields=["person", "movie"], name="cast_person_movie")]

    def __str__(self) -> str:
        return f"{self.person} as {self.character or '?'}"


class Rating(models.Model):
    # (user, movie) unique and (user, updated_at) serve user lookups; no single-column index needed.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings", db_index=False)
    movie = models.ForeignKey(Movie, on_delete=models.CASCADE, related_name="ratings")
    score = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "movie"], name="rating_one_per_user_movie"),
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=10), name="rating_score_range"),
        ]
        indexes = [
            models.Index(fields=["user", "-updated_at", "-id"], name="rating_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.user} rated {self.movie}: {self.score}"


class MovieVersion(models.Model):
    """One version of a movie aggregate, recorded by PostgreSQL in the transaction that made it (docs/history.md):
    what curators read as a movie's history and what the change feed serves. Kept when the movie is deleted."""

    class Kind(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    # No foreign key: a deleted movie's history stays readable.
    movie_id = models.BigIntegerField()
    # The movie's version this entry records; a deletion is the version after the movie's last one.
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField()
    # Who wrote it: {"kind": "user", "id": 3, "username": "alice"}, {"kind": "admin", ...}, {"kind": "import",
    # "source": "imdb"} or {"kind": "database"} for a write made outside the application.
    actor = models.JSONField()
    # The aggregate as it stood at this version: the movie's representation without its rating.
    snapshot = models.JSONField()
    # The writing transaction's id (pg_current_xact_id()): the change feed serves only entries below the oldest
    # transaction still in flight, so a slower transaction that commits later is never skipped.
    xid = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["movie_id", "version"], name="movieversion_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="movieversion_version_positive"),
            models.CheckConstraint(condition=Q(kind__in=["created", "updated", "deleted"]), name="movieversion_kind"),
        ]
        indexes = [
            models.Index(fields=["xid", "id"], name="movieversion_feed"),
            models.Index(fields=["at"], name="movieversion_at"),
        ]

    def __str__(self) -> str:
        return f"movie {self.movie_id} v{self.version} ({self.kind})"


class IdempotencyKey(models.Model):
    """An Idempotency-Key a caller sent on a create, with the answer it got (movieapi/idempotency.py,
    docs/idempotency.md). Written in the create's own transaction: a committed key always has its answer, and the
    answer's resource exists (or existed) as the answer says."""

    # Whose key: "user:<id>", or "ip:<address>" for an anonymous caller (movieapi.client_ip).
    caller = models.TextField()
    # The key as the client sent it, unescaped from its structured-field string (at most 255 characters).
    key = models.TextField()
    # SHA-256 of the request's method, path and body bytes: a repeat with another request is refused (422).
    fingerprint = models.BinaryField()
    created_at = models.DateTimeField()
    # The answer: status, the headers a replay repeats (Content-Type, Location, ETag) and the body's bytes.
    status = models.PositiveSmallIntegerField(null=True)
    headers = models.JSONField(null=True)
    body = models.BinaryField(null=True)

    class Meta:
        db_table = "idempotency_key"
        constraints = [models.UniqueConstraint(fields=["caller", "key"], name="idempotency_key_once_per_caller")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"{self.caller} {self.key!r}"


class FeedHorizon(models.Model):
    """The change feed's purge horizon: the furthest feed position (xid, id) of any MovieVersion ever deleted.

    At most one row, moved only forward, written only by PostgreSQL's statement triggers on movies_movieversion
    (migration 0012_feed_horizon), whatever deletes entries: the retention purge, a `psql` DELETE, a TRUNCATE. The
    feed answers 410 to a cursor behind it: an entry that consumer has not been served may be gone."""

    singleton = models.BooleanField(primary_key=True, default=True)
    xid = models.BigIntegerField()
    entry_id = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(singleton=True), name="feedhorizon_one_row")]

    def __str__(self) -> str:
        return f"feed horizon ({self.xid}, {self.entry_id})"
