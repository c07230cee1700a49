"""`manage.py create_curator USERNAME`: a user in the `curators` group, able to edit the catalogue."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction


class Command(BaseCommand):
    help = "Create (or update) a curator: a user in the `curators` group. Password from --password or CURATOR_PASSWORD."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", help="Defaults to the CURATOR_PASSWORD environment variable.")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, username: str, password: str | None, email: str, **options: Any) -> None:
        password = password or os.environ.get("CURATOR_PASSWORD")
        if not password:
            raise CommandError("No password: pass --password or set CURATOR_PASSWORD.")
        User = get_user_model()
        username = username.strip()
        try:
            User.username_validator(username)
        except ValidationError as exc:
            raise CommandError(f"Bad username {username!r}: {' '.join(exc.messages)}") from exc
        user = User.objects.filter(username=username).first() or User(username=username, email=email)
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(f"Password refused: {' '.join(exc.messages)}") from exc
        try:
            curators = Group.objects.get(name="curators")
        except Group.DoesNotExist as exc:
            raise CommandError("The `curators` group is missing: run `python manage.py migrate` first.") from exc
        created = user.pk is None
        with transaction.atomic():
            user.set_password(password)
            user.is_staff = True  # the admin lets in staff only; the group's permissions say what they may do
            if email:
                user.email = email
            user.save()
            user.groups.add(curators)
        self.stdout.write(self.style.SUCCESS(f"{'Created' if created else 'Updated'} curator {username!r}."))
