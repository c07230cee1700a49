"""Idempotency keys (docs/idempotency.md): one row per caller and key, written in the transaction of the create it
answers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0010_movie_history"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdempotencyKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("caller", models.TextField()),
                ("key", models.TextField()),
                ("fingerprint", models.BinaryField()),
                ("created_at", models.DateTimeField()),
                ("status", models.PositiveSmallIntegerField(null=True)),
                ("headers", models.JSONField(null=True)),
                ("body", models.BinaryField(null=True)),
            ],
            options={
                "db_table": "idempotency_key",
                "indexes": [models.Index(fields=["created_at"], name="idempotency_key_created")],
                "constraints": [
                    models.UniqueConstraint(fields=("caller", "key"), name="idempotency_key_once_per_caller")
                ],
            },
        ),
    ]
