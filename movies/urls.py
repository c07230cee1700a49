from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from movies import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("movies", views.MovieViewSet, basename="movie")
router.register("genres", views.GenreViewSet, basename="genre")
router.register("people", views.PersonViewSet, basename="person")

urlpatterns = [
    *router.urls,
    re_path(r"^movies/(?P<pk>[0-9]+)/rating/$", views.RatingView.as_view(), name="movie-rating"),
    path("me/ratings/", views.MyRatingsView.as_view(), name="my-ratings"),
]
