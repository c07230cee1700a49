"""The curators' admin: every movie write goes through `movies.services`, with the version check.

The change form carries the version it was opened at (`based_on_version`, hidden). Saving calls
`services.movie_update` once with that version, so the movie fields, genres, directors and cast
move to version + 1 together; if someone saved in between, the form shows the conflict and the
current version, and nothing is overwritten.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from movies import selectors, services
from movies.admin_history import MovieHistoryAdminMixin, conflict_summary
from movies.admin_paging import FastListMixin
from movies.errors import MovieNotFound, StillReferenced, VersionConflict
from movies.models import CastMember, Genre, Movie, Person, Rating
from movies.rules import MIN_YEAR, PROVENANCE_FIELDS, max_year
from movies.search import search_genres, search_movies, search_people
from movies.versions import Actor


class ApiSearchMixin(admin.ModelAdmin):
    """The changelist's search and the autocomplete answered by the API's search (`search`), the term trimmed.

    A term with a NUL matches nothing: PostgreSQL's text holds none and refuses one in a query (a DataError, a
    500). The changelist's search form refuses it first, with a message; the autocomplete view (`term`) does not.
    """

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Everything for an empty term, nothing for one with a NUL, else `search`'s rows (never duplicates)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if "\x00" in term:
            return queryset.none(), False
        return self.search(queryset, term), False

    def search(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        """The rows that match a trimmed, non-empty term."""
        raise NotImplementedError


class ServiceDeleteMixin(admin.ModelAdmin):
    """Deletes through the model's service, one object at a time; its refusal (StillReferenced: movies still
    name the object) is shown as a message on the change form rather than as an error page."""

    def delete_through_service(self, obj: Any) -> None:
        """Delete obj through its service (genre_delete, person_delete)."""
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """One object, through the service."""
        self.delete_through_service(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Bulk delete, one object at a time through the service."""
        for obj in queryset:
            self.delete_through_service(obj)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """Show the service's refusal as a message rather than an error page."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except StillReferenced as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[object_id])
            )


# ---- genres and people ---------------------------------------------------------------------------


@admin.register(Genre)
class GenreAdmin(ApiSearchMixin, ServiceDeleteMixin, admin.ModelAdmin):
    list_display = ("slug", "name")
    search_fields = ("slug", "name")
    ordering = ("slug",)

    def search(self, queryset: QuerySet[Genre], term: str) -> QuerySet[Genre]:
        """The API's genre search: name and slug, case, accents and typos aside."""
        return search_genres(queryset, term).queryset

    def delete_through_service(self, obj: Genre) -> None:
        """Only an unused genre can go (services.genre_delete)."""
        services.genre_delete(genre=obj)


@admin.register(Person)
class PersonAdmin(ApiSearchMixin, ServiceDeleteMixin, FastListMixin, admin.ModelAdmin):
    list_display = ("name", "imdb_id", "updated_at")
    search_fields = ("name",)
    ordering = ("name", "id")
    readonly_fields = ("created_at", "updated_at")

    def search(self, queryset: QuerySet[Person], term: str) -> QuerySet[Person]:
        """The API's name search (words, else typos; case and accents aside); an nm id exactly."""
        if term.lower().startswith("nm") and term[2:].isdigit():
            return queryset.filter(imdb_id=term.lower())
        return search_people(queryset, term).queryset

    def delete_through_service(self, obj: Person) -> None:
        """Only a person without credits can go (services.person_delete)."""
        services.person_delete(person=obj)


# ---- movies --------------------------------------------------------------------------------------


class GenreFilter(admin.SimpleListFilter):
    """By genre, with EXISTS so a movie is never listed twice."""

    title = "genre"
    parameter_name = "genre"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Genre.objects.order_by("name").values_list("slug", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Movie]) -> QuerySet[Movie]:
        if not self.value():
            return queryset
        through = Movie.genres.through
        return queryset.filter(Exists(through.objects.filter(movie_id=OuterRef("pk"), genre__slug=self.value())))


class DecadeFilter(admin.SimpleListFilter):
    title = "decade"
    parameter_name = "decade"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(decade), f"{decade}s") for decade in range(2020, 1880, -10)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Movie]) -> QuerySet[Movie]:
        value = self.value()
        if not value or not value.isdigit():
            return queryset
        decade = int(value)
        return queryset.filter(year__gte=decade, year__lt=decade + 10)


class RatingFilter(admin.SimpleListFilter):
    title = "rating"
    parameter_name = "rating"
    bands = {
        "8": ("8 and above", Q(rating_average__gte=8)),
        "6": ("6 to 7.9", Q(rating_average__gte=6, rating_average__lt=8)),
        "4": ("4 to 5.9", Q(rating_average__gte=4, rating_average__lt=6)),
        "0": ("below 4", Q(rating_average__lt=4)),
        "none": ("not rated", Q(rating_count=0)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.bands.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Movie]) -> QuerySet[Movie]:
        band = self.bands.get(self.value() or "")
        return queryset.filter(band[1]) if band else queryset


class MovieForm(forms.ModelForm):
    """The movie's own fields plus the version the form was opened at."""

    based_on_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

    class Meta:
        model = Movie
        fields = ("title", "year", "runtime", "overview", "imdb_id", "genres", "directors")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["based_on_version"].initial = self.instance.version
        if "imdb_id" in self.fields:
            self.fields["imdb_id"].required = False

    def clean_year(self) -> int | None:
        """The API's rule: no later than this year + 5."""
        year = self.cleaned_data.get("year")
        if year is not None and not MIN_YEAR <= year <= max_year():
            raise forms.ValidationError(f"Enter a year from {MIN_YEAR} to {max_year()}.")
        return year

    def clean_imdb_id(self) -> str | None:
        """Blank means no IMDb id (NULL), not an empty string."""
        return self.cleaned_data.get("imdb_id") or None

    def clean(self) -> dict[str, Any]:
        """Refuse to save over someone else's save: the friendly check (the write re-checks atomically)."""
        cleaned = super().clean() or {}
        if self.instance.pk:
            opened = cleaned.get("based_on_version")
            current = selectors.movie_version(movie_id=self.instance.pk)
            if opened is None:
                raise forms.ValidationError("The form did not say which version it was opened at; reload the page.")
            if current is not None and opened != current:
                since = conflict_summary(movie_id=self.instance.pk, opened=opened, current=current)
                raise forms.ValidationError(
                    f"This movie was changed by someone else while you were editing it: you opened version "
                    f"{opened}, and it is now at version {current}. Nothing was saved. {since + ' ' if since else ''}"
                    f"Open the movie again (your changes are below to copy) and reapply them.",
                    code="version_conflict",
                )
        return cleaned


class CastForm(forms.ModelForm):
    """A cast row; `position` orders the cast (ties keep their row order). No per-row uniqueness check:
    the whole cast is renumbered 0..n-1 when the movie is saved."""

    position = forms.IntegerField(required=False, min_value=0, max_value=32767)

    class Meta:
        model = CastMember
        fields = ("person", "character")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["position"].initial = self.instance.order


class CastFormSet(BaseInlineFormSet):
    def roles(self) -> list[services.Role]:
        """The cast in billing order, from the rows not marked for deletion."""
        rows: list[tuple[int, int, services.Role]] = []
        for index, form in enumerate(self.forms):
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or not data.get("person"):
                continue
            position = data.get("position")
            rows.append(
                (
                    position if position is not None else 10**6 + index,
                    index,
                    services.Role(data["person"], data.get("character") or ""),
                )
            )
        return [role for _, _, role in sorted(rows, key=lambda row: row[:2])]


class CastInline(admin.TabularInline):
    model = CastMember
    form = CastForm
    formset = CastFormSet
    fields = ("position", "person", "character")
    autocomplete_fields = ("person",)
    extra = 1
    ordering = ("order",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CastMember]:
        """Rows with their people in one query."""
        return super().get_queryset(request).select_related("person")


@admin.register(Movie)
class MovieAdmin(ApiSearchMixin, MovieHistoryAdminMixin, FastListMixin, admin.ModelAdmin):
    form = MovieForm
    inlines = (CastInline,)
    list_display = ("title", "year", "genre_list", "rating", "version", "updated_at")
    list_filter = (GenreFilter, DecadeFilter, RatingFilter)
    search_fields = ("title",)
    autocomplete_fields = ("genres", "directors")
    readonly_fields = ("version", "rating", "created_at", "updated_at", "sources")
    fieldsets = (
        (None, {"fields": ("title", "year", "runtime", "imdb_id", "overview", "genres", "directors")}),
        ("Record", {"fields": ("based_on_version", "version", "rating", "created_at", "updated_at", "sources")}),
    )
    ordering = ("-id",)

    @admin.display(description="field sources")
    def sources(self, movie: Movie) -> str:
        """Where each field's value came from: imports never overwrite a curator's (docs/loading-data.md)."""
        known = movie.field_sources or {}
        return ", ".join(f"{name}: {known.get(name, 'unknown')}" for name in PROVENANCE_FIELDS) if movie.pk else "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Movie]:
        """Genres prefetched (one query per page); the search vector and overview are never read."""
        return (
            super()
            .get_queryset(request)
            .defer("search_vector")
            .prefetch_related(Prefetch("genres", queryset=Genre.objects.only("id", "slug", "name")))
        )

    @admin.display(description="genres")
    def genre_list(self, movie: Movie) -> str:
        return ", ".join(genre.slug for genre in movie.genres.all())

    @admin.display(description="rating", ordering="rating_average")
    def rating(self, movie: Movie) -> str:
        if not movie.rating_count:
            return "-"
        return f"{movie.rating_average} ({movie.rating_count})"

    def search(self, queryset: QuerySet[Movie], term: str) -> QuerySet[Movie]:
        """The API's search (full text, else typos in titles; case and accents aside), in the changelist's own
        order; a tt id exactly."""
        if term.lower().startswith("tt") and term[2:].isdigit():
            return queryset.filter(imdb_id=term.lower())
        return search_movies(queryset, term, ranked=False).queryset

    # -- writes: one service call per save --------------------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Retry the view once when the atomic write lost a race after the form's check passed."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (VersionConflict, MovieNotFound):
            # The movie changed (or went) between clean() and the write; this pass shows why.
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Movie, form: MovieForm, change: bool) -> None:
        """Nothing yet: save_related writes the whole aggregate in one service call."""

    def save_related(self, request: HttpRequest, form: MovieForm, formsets: Any, change: bool) -> None:
        """Write the movie, genres, directors and cast through services: version + 1, once."""
        cleaned = form.cleaned_data
        cast = next((formset for formset in formsets if isinstance(formset, CastFormSet)), None)
        data: services.MovieData = {
            "title": cleaned["title"],
            "year": cleaned["year"],
            "runtime": cleaned.get("runtime"),
            "overview": cleaned.get("overview") or "",
            "imdb_id": cleaned.get("imdb_id") or None,
            "genres": list(cleaned.get("genres") or []),
            "directors": list(cleaned.get("directors") or []),
        }
        if cast is not None:
            data["cast"] = cast.roles()
        if change:
            # The form sends every field; a curator's provenance goes to the ones they changed.
            claimed = [name for name in form.changed_data if name in PROVENANCE_FIELDS]
            if cast is not None and cast.has_changed():
                claimed.append("cast")
            form.instance.version = services.movie_update(
                movie_id=form.instance.pk,
                expected_version=cleaned["based_on_version"],
                data=data,
                actor=Actor.admin(request.user),
                claimed=claimed,
            ).version
        else:
            movie = services.movie_create(data=data, actor=Actor.admin(request.user))
            for name in ("id", "version", "created_at", "updated_at"):
                setattr(form.instance, name, getattr(movie, name))
        for formset in formsets:  # construct_change_message reads these
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Nothing: the cast is written by save_related with the movie."""

    def delete_model(self, request: HttpRequest, obj: Movie) -> None:
        """Delete through the service."""
        services.movie_delete(movie_id=obj.pk, actor=Actor.admin(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Movie]) -> None:
        """Bulk delete, one movie at a time through the service."""
        for pk in queryset.values_list("pk", flat=True):
            services.movie_delete(movie_id=pk, actor=Actor.admin(request.user))


@admin.register(Rating)
class RatingAdmin(FastListMixin, admin.ModelAdmin):
    """Ratings are users' own: visible here, written only through the API (they move the movie's totals)."""

    list_display = ("movie", "user", "score", "updated_at")
    list_select_related = ("movie", "user")
    raw_id_fields = ("movie", "user")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rating]:
        """The movie without its search vector."""
        return super().get_queryset(request).defer("movie__search_vector")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Rating | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Rating | None = None) -> bool:
        return False
