from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from movies import feed, history_views, views

# SimpleRouter: no API root view and no `.json` format-suffix twins of every route (the API speaks JSON only),
# so a request is matched against half as many patterns.
router = SimpleRouter(trailing_slash=True)
router.register("movies", views.MovieViewSet, basename="movie")
router.register("genres", views.GenreViewSet, basename="genre")
router.register("people", views.PersonViewSet, basename="person")

urlpatterns = [
    *router.urls,
    re_path(r"^movies/(?P<pk>[0-9]+)/rating/$", views.RatingView.as_view(), name="movie-rating"),
    path("me/ratings/", views.MyRatingsView.as_view(), name="my-ratings"),
    re_path(r"^movies/(?P<pk>[0-9]+)/history/$", history_views.MovieHistoryView.as_view(), name="movie-history"),
    re_path(
        r"^movies/(?P<pk>[0-9]+)/history/(?P<version>[0-9]+)/$",
        history_views.MovieVersionView.as_view(),
        name="movie-version",
    ),
    re_path(r"^movies/(?P<pk>[0-9]+)/revert/$", history_views.MovieRevertView.as_view(), name="movie-revert"),
    path("changes/", feed.ChangeFeedView.as_view(), name="changes"),
]
