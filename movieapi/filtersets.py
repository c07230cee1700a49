"""django-filter FilterSets without the per-request work that never changes."""

from __future__ import annotations

from django import forms

# FilterSet class -> its form class, built on the first request.
_form_classes: dict[type, type[forms.Form]] = {}


class CachedFormMixin:
    """Build a FilterSet's form class once per class instead of on every request.

    django-filter builds the form class anew for each request: a form field per filter, each with its label
    looked up and translated (about 0.6 ms of a 3 ms movie list). The class depends only on the filters'
    declarations, and each form instance deep-copies its fields anyway, so one class serves every request.
    Not for FilterSets whose fields depend on the request (a ModelChoiceFilter with a callable queryset).
    """

    def get_form_class(self) -> type[forms.Form]:
        """The form class, built by django-filter on first use and reused after."""
        form_class = _form_classes.get(type(self))
        if form_class is None:
            form_class = _form_classes[type(self)] = super().get_form_class()  # type: ignore[misc]
        return form_class
