"""The `curators` group with the catalogue's add/change/delete permissions, and the standard genres."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

CATALOGUE_MODELS = ["movie", "genre", "person", "castmember"]
GENRES = [
    ("action", "Action"),
    ("adventure", "Adventure"),
    ("animation", "Animation"),
    ("biography", "Biography"),
    ("comedy", "Comedy"),
    ("crime", "Crime"),
    ("documentary", "Documentary"),
    ("drama", "Drama"),
    ("family", "Family"),
    ("fantasy", "Fantasy"),
    ("film-noir", "Film Noir"),
    ("history", "History"),
    ("horror", "Horror"),
    ("music", "Music"),
    ("musical", "Musical"),
    ("mystery", "Mystery"),
    ("romance", "Romance"),
    ("science-fiction", "Science Fiction"),
    ("sport", "Sport"),
    ("thriller", "Thriller"),
    ("war", "War"),
    ("western", "Western"),
]


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    curators, _ = Group.objects.get_or_create(name="curators")
    codenames = [f"{action}_{model}" for model in CATALOGUE_MODELS for action in ("add", "change", "delete", "view")]
    codenames.append("view_rating")
    curators.permissions.add(*Permission.objects.filter(content_type__app_label="movies", codename__in=codenames))
    Genre = apps.get_model("movies", "Genre")
    for slug, name in GENRES:
        Genre.objects.get_or_create(slug=slug, defaults={"name": name})


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name="curators").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
