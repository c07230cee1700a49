"""WSGI entry point: `gunicorn movieapi.wsgi -c gunicorn.conf.py`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")

django_application = get_wsgi_application()

# Imported once get_wsgi_application() has set Django up: the middleware module imports the auth app.
from movieapi.middleware import ChunkedBodyReader  # noqa: E402

application = ChunkedBodyReader(django_application)
