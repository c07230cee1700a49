"""django-filter on the list path: FilterSets that hand the paginator a plan, without per-request work that never
changes.

The list's flow, as DRF's with one value more (movieapi.pagination.ListPlan):

    view.list -> view.filter_plan(queryset)               (movieapi.lists.PlannedListMixin; DRF: filter_queryset)
              -> ListPlanFilterBackend.filter_plan(...)    (DRF: DjangoFilterBackend.filter_queryset)
              -> PlanningFilterSet.filter_plan(queryset)   (django-filter: FilterSet.filter_queryset)
              => ListPlan(queryset, known_count, ...)
              -> view.paginator.paginate_plan(plan, request, view)   (DRF: paginate_queryset)
"""

from __future__ import annotations

import copy
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django_filters import utils
from django_filters.filters import Filter, FilterMethod
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.request import Request

from movieapi.pagination import ListPlan

# FilterSet class -> its form class, built on the first request.
_form_classes: dict[type, type[forms.Form]] = {}
# On a DRF request: the FilterSets made for it, which ReleaseViewMiddleware releases once the response is rendered.
REQUEST_FILTERSETS_ATTR = "_movieapi_filtersets"


class _SharedFields(dict[str, forms.Field]):
    """A form class's fields, shared by its instances instead of deep-copied into each.

    A Django form deep-copies its class's fields for every instance, so that rendering can change widgets
    per instance. A filter form is never rendered: its fields only convert and validate query parameters,
    which changes nothing on them.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, forms.Field]:
        return dict(self)


class _ShallowFilters(dict[str, Filter]):
    """A FilterSet class's filters, copied shallowly into each FilterSet instead of deep-copied.

    django-filter deep-copies every filter (its field arguments, validators and querysets included) for each
    request, so that it can point the copy at the request's FilterSet (`filter.parent`). A shallow copy is
    enough for that; a filter with a `method` gets its method re-bound to the copy (django-filter binds it to
    the filter it was declared on).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Filter]:
        copies = {}
        for name, declared in self.items():
            clone = copy.copy(declared)
            if declared.method is not None:
                clone.method = declared.method
            copies[name] = clone
        return copies


class CachedFormMixin:
    """Fast path: FilterSet copying.

    Replaces: django-filter's per-request form class and deep copies of every filter and form field.
    Why: 0.5-0.8 ms of a list page's ~3.5 ms CPU; ~5,500 -> ~2,900 Python calls a page.
    Equal: movieapi/tests/test_fast_path_equality.py::test_filtersets_share_no_mutable_state_across_requests
    Off: drop CachedFormMixin from the bases of the FilterSets in movies/views.py.

    A FilterSet whose per-request set-up is cheap: form class built once, filters and fields not deep-copied.

    django-filter builds the form class anew for each request: a form field per filter, each with its label
    looked up and translated (about 0.6 ms of a 3 ms movie list). The class depends only on the filters'
    declarations, so one class serves every request. Not for FilterSets whose fields depend on the request
    (a ModelChoiceFilter with a callable queryset).
    """

    base_filters: dict[str, Filter]
    filters: dict[str, Filter]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = kwargs.get("request")
        if request is not None:
            vars(request).setdefault(REQUEST_FILTERSETS_ATTR, []).append(self)

    @classmethod
    def get_filters(cls) -> dict[str, Filter]:
        """django-filter's filters, in a mapping that each FilterSet instance copies shallowly."""
        return _ShallowFilters(super().get_filters())  # type: ignore[misc]

    def get_form_class(self) -> type[forms.Form]:
        """The form class, built by django-filter on first use and reused after, its fields shared."""
        form_class = _form_classes.get(type(self))
        if form_class is None:
            form_class = super().get_form_class()  # type: ignore[misc]
            form_class.base_fields = _SharedFields(form_class.base_fields)
            _form_classes[type(self)] = form_class
        return form_class


class PlanningFilterSet(django_filters.FilterSet):
    """A FilterSet whose filtering can learn more than a queryset (a search's count, its ranked ids' SQL)."""

    def filter_plan(self, queryset: QuerySet[Any]) -> ListPlan:
        """The filtered queryset and what filtering learned about it (a FilterSet that learns something overrides
        this; `filter_queryset` stays django-filter's: the declared filters only)."""
        return ListPlan(self.filter_queryset(queryset))


class ListPlanFilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend that also hands a list's whole plan (`filter_plan`), not only its queryset."""

    def filter_plan(self, request: Request, queryset: QuerySet[Any], view: Any) -> ListPlan:
        """`filter_queryset`'s validation, then the FilterSet's plan (a plain FilterSet's queryset, as a plan)."""
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return ListPlan(queryset)
        if not filterset.is_valid() and self.raise_exception:
            raise utils.translate_validation(filterset.errors)
        if isinstance(filterset, PlanningFilterSet):
            return filterset.filter_plan(filterset.queryset.all())
        return ListPlan(filterset.qs)


def release_filterset(filterset: Any) -> None:
    """Cut the reference cycles a FilterSet is made of, once nothing reads it: each filter points back at it
    (`parent`), a filter with a `method` at itself (its FilterMethod), the form's bound fields at the form, and a
    refused value's error at the frames that validated it (its traceback, up the whole stack). The FilterSet
    holds the request, so each filtered list was a cyclic garbage graph of the whole request."""
    for declared in filterset.filters.values():
        state = vars(declared)
        state.pop("parent", None)
        if isinstance(state.get("filter"), FilterMethod):
            del state["filter"]
    form = vars(filterset).get("_form")
    if form is not None:
        form._bound_fields_cache.clear()
        for refused in (vars(form).pop("_errors", None) or {}).values():
            for error in refused.data:
                if isinstance(error, BaseException):  # some are plain messages (StrictFilterForm's)
                    # Django's ValidationError is a small cycle of its own (`error_list = [self]`): it keeps its
                    # message, not the frames that raised it (nor the ValueError before it, with its frames).
                    error.__traceback__ = error.__context__ = error.__cause__ = None
