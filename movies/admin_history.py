"""The admin's movie history (docs/admin.md, "History and revert"): the change page's History button lists the
movie's versions with who, when and what changed, each with a "Revert to this version" button that writes through
`revert.movie_revert` (services.movie_update, the one versioned write); and the words for the changes that a
save's conflict message shows."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from movies import revert, selectors
from movies.errors import MovieNotFound, RevertImpossible, VersionConflict
from movies.history import MAX_VERSION, changes_since, history_entry
from movies.models import Movie
from movies.versions import Actor

# Versions per page of the admin's history.
HISTORY_PAGE_SIZE = 50


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if value == "":
        return '""'
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _person(person: dict[str, Any]) -> str:
    return f"{person.get('name')} (#{person.get('id')})"


def _role(entry: dict[str, Any]) -> str:
    character = entry.get("character")
    return f"{_person(entry['person'])}" + (f" as {character}" if character else "")


def describe_changes(changes: dict[str, Any] | None) -> list[str]:
    """A version's changes (movies/history.py's shape) in words, one line per field."""
    if changes is None:
        return ["(the version before is no longer kept)"]
    lines = [
        f"{name}: {_value(change['from'])} → {_value(change['to'])}"
        for name, change in changes.items()
        if name not in {"genres", "directors", "cast"}
    ]
    for name, show in (("genres", str), ("directors", _person)):
        if name in changes:
            added = ", ".join(show(item) for item in changes[name]["added"])
            removed = ", ".join(show(item) for item in changes[name]["removed"])
            parts = ([f"added {added}"] if added else []) + ([f"removed {removed}"] if removed else [])
            lines.append(f"{name}: {'; '.join(parts)}")
    cast = changes.get("cast")
    if cast:
        parts = []
        if cast.get("added"):
            parts.append("added " + ", ".join(_role(entry) for entry in cast["added"]))
        if cast.get("removed"):
            parts.append("removed " + ", ".join(_role(entry) for entry in cast["removed"]))
        if "reordered" in cast:
            moves = ", ".join(f"{_role(move)} {move['from'] + 1} → {move['to'] + 1}" for move in cast["reordered"])
            parts.append(f"reordered {moves}")
        lines.append(f"cast: {'; '.join(parts)}")
    return lines or ["(no field changed)"]


def describe_actor(actor: dict[str, Any] | None) -> str:
    """Who wrote a version, in words."""
    if not actor:
        return "unknown"
    kind = actor.get("kind")
    if kind in {"user", "admin"}:
        return f"{actor.get('username')} ({'API' if kind == 'user' else 'admin'})"
    if kind == "import":
        return f"import ({actor.get('source')})"
    if kind == "database":
        return "a database session outside the application"
    return str(kind)


def conflict_summary(*, movie_id: int, opened: int, current: int) -> str:
    """What changed since the version a form was opened at, in words (one query), or "" when it is not known."""
    entries = selectors.movie_versions_between(movie_id=movie_id, first=opened, last=current)
    since = changes_since(entries, opened, current)
    if not since:
        return ""
    return " ".join(
        f"Version {entry['version']} by {describe_actor(entry['by'])} at {entry['at']}: "
        + "; ".join(describe_changes(entry["changes"]))
        + "."
        for entry in since
    )


class MovieHistoryAdminMixin(admin.ModelAdmin):
    """The History button of a movie's change page shows its versions (not Django's LogEntry list), each with a
    revert button (POST, CSRF-protected, curators' change permission)."""

    def get_urls(self) -> list[URLPattern]:
        """The revert URL before the admin's own (its `<path:object_id>/` catch-all would take it)."""
        revert_url = path(
            "<path:object_id>/revert/<int:version>/",
            self.admin_site.admin_view(self.revert_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_revert",
        )
        return [revert_url, *super().get_urls()]

    def _url(self, name: str, *args: int) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def _movie_id(self, object_id: str) -> int:
        raw = unquote(object_id)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise Http404("No such movie.")
        return int(raw)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """The movie's versions, newest first, with who, when and what each changed (a deleted movie's too)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        movie_id = self._movie_id(object_id)
        movie = Movie.objects.filter(pk=movie_id).only("id", "title", "year", "version").first()
        versions = selectors.movie_history(movie_id=movie_id)
        page = Paginator(versions.values_list("pk", flat=True), HISTORY_PAGE_SIZE).get_page(request.GET.get("p"))
        offset = (page.number - 1) * HISTORY_PAGE_SIZE
        rows = selectors.version_entries(versions[offset : offset + HISTORY_PAGE_SIZE + 1])
        if movie is None and not rows:
            raise Http404("No such movie, and no history of one.")
        entries = []
        for index, row in enumerate(rows[:HISTORY_PAGE_SIZE]):
            entry = history_entry(row, rows[index + 1] if index + 1 < len(rows) else None)
            revertible = movie is not None and row.kind != "deleted" and row.version != movie.version
            entries.append(
                {
                    **entry,
                    "by_text": describe_actor(entry["by"]),
                    "lines": describe_changes(entry["changes"]),
                    "revert_url": self._url("revert", movie_id, row.version) if revertible else None,
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {movie if movie is not None else f'deleted movie {movie_id}'}",
            "subtitle": None,
            "entries": entries,
            "page": page,
            "movie": movie,
            "movie_id": movie_id,
            "opts": self.opts,
            "module_name": str(self.opts.verbose_name_plural).capitalize(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/movies/movie/version_history.html", context)

    def revert_view(self, request: HttpRequest, object_id: str, version: int) -> HttpResponse:
        """POST: write the version again as a new one, based on the version the history page showed (`based_on`)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        movie_id = self._movie_id(object_id)
        history_url = self._url("history", movie_id)
        raw = request.POST.get("based_on", "")
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION or version > MAX_VERSION:
            messages.error(request, "The page did not say which version it showed; reload it and try again.")
            return HttpResponseRedirect(history_url)
        based_on = int(raw)
        try:
            written = revert.movie_revert(
                movie_id=movie_id, to_version=version, expected_version=based_on, actor=Actor.admin(request.user)
            )
        except VersionConflict as conflict:
            summary = conflict_summary(movie_id=movie_id, opened=based_on, current=conflict.current_version)
            messages.error(
                request,
                f"Nothing was reverted: the movie was changed while you were looking at its history (you saw version "
                f"{based_on}, it is now at version {conflict.current_version}). {summary} Look again and retry.",
            )
            return HttpResponseRedirect(history_url)
        except (RevertImpossible, MovieNotFound) as refused:
            details = " ".join(" ".join(lines) for lines in getattr(refused, "errors", {}).values())
            messages.error(request, f"Nothing was reverted: {refused.message} {details}".strip())
            return HttpResponseRedirect(history_url)
        messages.success(request, f"Reverted to version {version}: the movie is now at version {written.version}.")
        return HttpResponseRedirect(self._url("change", movie_id))
