from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_delete


class MoviesConfig(AppConfig):
    name = "movies"
    verbose_name = "Movie catalogue"

    def ready(self) -> None:
        """Connect the receiver that keeps rating aggregates exact when users are deleted."""
        from movies.signals import take_out_ratings_of_deleted_user

        pre_delete.connect(
            take_out_ratings_of_deleted_user, sender=settings.AUTH_USER_MODEL, dispatch_uid="movies_user_ratings"
        )
