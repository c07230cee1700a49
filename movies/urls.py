from rest_framework.routers import DefaultRouter

from movies import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("movies", views.MovieViewSet, basename="movie")
router.register("genres", views.GenreViewSet, basename="genre")
router.register("people", views.PersonViewSet, basename="person")

urlpatterns = router.urls
