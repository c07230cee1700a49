from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from movieapi.auth import CurrentTokenView, RegistrationView, TokenView
from movieapi.docs import IndexView, RedocView, SchemaView, SwaggerView
from movieapi.health import healthz, readyz
from movieapi.metrics import metrics
from movies import urls as movies_urls

api_v1: list[URLPattern | URLResolver] = [
    path("users/", RegistrationView.as_view(), name="user-register"),
    path("tokens/", TokenView.as_view(), name="token"),
    path("tokens/current/", CurrentTokenView.as_view(), name="token-current"),
    *movies_urls.urlpatterns,  # not include(): one resolver level less on every request
    path("", IndexView.as_view(), name="api-index"),  # last: the resources' requests never try it
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("", IndexView.as_view(), name="index"),
]

handler400 = "movieapi.errors.handler400"
handler403 = "movieapi.errors.handler403"
handler404 = "movieapi.errors.handler404"
handler500 = "movieapi.errors.handler500"
