"""WSGI entry point: `gunicorn movieapi.wsgi -c gunicorn.conf.py`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")

application = get_wsgi_application()
