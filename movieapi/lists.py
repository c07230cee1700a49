"""The list action with the filter step's ListPlan handed to the paginator (movieapi/filtersets.py draws the flow).

Not in movieapi/filtersets.py: settings name its filter backend, which DRF imports while `generics` is itself being
imported, so that module cannot import `generics`.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from movieapi.filtersets import ListPlanFilterBackend
from movieapi.pagination import ListPlan, PageNumberPagination


class PlannedListMixin(generics.GenericAPIView):
    """A list whose filter step hands the paginator a ListPlan (`filter_plan`, `paginate_plan`).

    Only the list filters: a detail, PATCH or DELETE names its object by id, and a list parameter there (`search`)
    would turn it into a 404.
    """

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The queryset as it is: the list filters through `filter_plan`, other actions not at all."""
        return queryset

    def filter_plan(self, queryset: QuerySet[Any]) -> ListPlan:
        """The list's filter step: each filter backend's work, with what a ListPlanFilterBackend learned."""
        plan = ListPlan(queryset)
        for backend in (backend_class() for backend_class in self.filter_backends):
            if isinstance(backend, ListPlanFilterBackend):
                plan = backend.filter_plan(self.request, plan.queryset, self)
            else:
                plan = ListPlan(backend.filter_queryset(self.request, plan.queryset, self))
        return plan

    @property
    def list_paginator(self) -> PageNumberPagination:
        """The paginator, which takes plans (DRF's `paginator` is typed for any pagination class)."""
        return cast(PageNumberPagination, self.paginator)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """ListModelMixin.list with the plan handed to the paginator whole."""
        page = self.list_paginator.paginate_plan(self.filter_plan(self.get_queryset()), request, view=self)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
