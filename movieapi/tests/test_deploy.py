"""The Kubernetes manifests (deploy/kubernetes), read as kustomize builds them, hold what the API needs.

`make check-deploy` validates their shape against the Kubernetes schemas; these tests check what the schemas cannot:
that the pods match the image and gunicorn.conf.py (user, writable folders, probes, grace), that every variable
they set is one the code reads and compose sets too, that the database wiring follows CloudNativePG's services
and secret, that only the ingress controller reaches the API and /metrics is not published.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.urls import get_resolver

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("deploy_kubernetes_check", ROOT / "deploy" / "kubernetes" / "check.py")
assert _spec is not None
assert _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

Resource = dict[str, Any]
# libpq reads it for a URL without a password: the replica URLs carry none, so that they hold no secret.
LIBPQ_VARIABLES = {"PGPASSWORD"}
JOBS = (("Job", "movieapi-migrate"), ("CronJob", "movieapi-purge-history"))
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def built(request: pytest.FixtureRequest) -> list[Resource]:
    """The resources one kustomization builds to (skipped without kubectl or kustomize)."""
    try:
        return check.build(ROOT / "deploy" / "kubernetes" / request.param)
    except check.KustomizeMissing as exc:
        pytest.skip(str(exc))


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    """The one resource of this kind and name."""
    (resource,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return resource


def pod_spec(resource: Resource) -> dict[str, Any]:
    """The pod template's spec of a Deployment, a Job or a CronJob."""
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def api_container(resources: list[Resource]) -> dict[str, Any]:
    """The API's gunicorn container."""
    (container,) = pod_spec(find(resources, "Deployment", "movieapi"))["containers"]
    return container


def config(resources: list[Resource]) -> dict[str, str]:
    """The generated ConfigMap every API pod takes its settings from (its name carries a hash of the contents)."""
    name = api_container(resources)["envFrom"][0]["configMapRef"]["name"]
    data: dict[str, str] = find(resources, "ConfigMap", name)["data"]
    return data


def environment_names(resources: list[Resource], container: dict[str, Any]) -> set[str]:
    """Every variable the container's environment holds: its own and its ConfigMaps'."""
    names = {variable["name"] for variable in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(find(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    return names


def gunicorn_setting(name: str, environ: dict[str, str]) -> Any:
    """A setting of gunicorn.conf.py as gunicorn computes it in a pod with this environment (and a /dev/shm)."""
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text(encoding="utf-8"))
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    ]
    fake_os = SimpleNamespace(environ=environ, path=SimpleNamespace(isdir=lambda path: True))
    return eval(compile(ast.Expression(value), "gunicorn.conf.py", "eval"), {"int": int, "os": fake_os})  # noqa: S307


def variables_read() -> set[str]:
    """The environment variables settings.py and gunicorn.conf.py read, from their source."""
    pattern = re.compile(r"""(?:env_(?:str|bool|int|list)|os\.environ\.get|os\.getenv)\(\s*['"]([A-Z][A-Z0-9_]*)['"]""")
    sources = [ROOT / "movieapi" / "settings.py", ROOT / "gunicorn.conf.py"]
    return {name for source in sources for name in pattern.findall(source.read_text(encoding="utf-8"))}


def test_pods_run_as_the_image_user_with_a_read_only_root(built: list[Resource]) -> None:
    """The API, its Jobs and Redis run non-root, unprivileged, with no service account token and no writable root."""
    for kind, name in [("Deployment", "movieapi"), *JOBS, ("Deployment", "movieapi-redis")]:
        spec = pod_spec(find(built, kind, name))
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork"), name
        for container in spec["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, name
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE, re.MULTILINE)
    assert user
    context = pod_spec(find(built, "Deployment", "movieapi"))["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))


def test_gunicorns_writable_folders_are_volumes(built: list[Resource]) -> None:
    """The metrics folder (a temp folder) and the workers' heartbeat folder are mounted, the root being read-only."""
    container = api_container(built)
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    environ = config(built)
    assert gunicorn_setting("worker_tmp_dir", environ) in mounts
    # Unset, gunicorn.conf.py makes the metrics folder with tempfile, under /tmp.
    assert "PROMETHEUS_MULTIPROC_DIR" not in environ
    assert "/tmp" in mounts  # noqa: S108


def test_probes_and_graceful_termination_follow_gunicorn(built: list[Resource]) -> None:
    """Readiness is /readyz, liveness /healthz on gunicorn's port; the pod outlives preStop + graceful_timeout."""
    container = api_container(built)
    environ = config(built)
    (port,) = container["ports"]
    assert f"PORT={port['containerPort']}" in DOCKERFILE  # the image's ENV, gunicorn's bind
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}, probe
    # A busy pod is not killed before gunicorn's own worker timeout has dealt with a stuck worker.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > gunicorn_setting("timeout", environ)

    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = pod_spec(find(built, "Deployment", "movieapi"))["terminationGracePeriodSeconds"]
    assert grace > int(sleep[1]) + gunicorn_setting("graceful_timeout", environ)


def test_worker_count_and_resources_are_set(built: list[Resource]) -> None:
    """gunicorn counts the node's CPUs, not the pod's: WEB_CONCURRENCY is set, two workers per requested CPU."""
    container = api_container(built)
    cpu = container["resources"]["requests"]["cpu"]
    cpus = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert gunicorn_setting("workers", config(built)) == 2 * math.ceil(cpus)
    assert container["resources"]["limits"]["memory"]


def test_every_variable_is_read_by_the_code() -> None:
    """Each variable the API pods set is one settings.py or gunicorn.conf.py reads (or libpq's password)."""
    try:
        resources = check.build(ROOT / "deploy" / "kubernetes" / "overlays" / "production")
    except check.KustomizeMissing as exc:
        pytest.skip(str(exc))
    unread = environment_names(resources, api_container(resources)) - variables_read() - LIBPQ_VARIABLES
    assert not unread


def test_compose_and_kubernetes_name_the_same_variables(built: list[Resource]) -> None:
    """compose's api service and the Kubernetes API pods set the same environment variables."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert set(compose["services"]["api"]["environment"]) == environment_names(built, api_container(built))


def test_jobs_see_the_apis_environment(built: list[Resource]) -> None:
    """The migrate Job and the purge CronJob run the same image with the same settings and secrets as the API."""
    api = api_container(built)
    for kind, name in JOBS:
        (container,) = pod_spec(find(built, kind, name))["containers"]
        assert container["image"] == api["image"]
        assert (container["env"], container["envFrom"]) == (api["env"], api["envFrom"])
    (migrate,) = pod_spec(find(built, "Job", "movieapi-migrate"))["containers"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--no-input"]


def test_history_is_purged_daily(built: list[Resource]) -> None:
    """purge_history runs once a day, one run at a time, with a retention set (unset, it would delete nothing)."""
    cronjob = find(built, "CronJob", "movieapi-purge-history")
    minute, hour, *every = cronjob["spec"]["schedule"].split()
    assert minute.isdigit()
    assert hour.isdigit()
    assert every == ["*", "*", "*"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_spec(cronjob)["containers"]
    assert container["command"] == ["python", "manage.py", "purge_history"]
    assert int(config(built)["HISTORY_RETENTION_DAYS"]) > 0


def test_database_urls_follow_cloudnativepgs_services(built: list[Resource]) -> None:
    """DATABASE_URL is the operator's app secret (the -rw service, the primary); the replicas are its -ro service."""
    cluster = find(built, "Cluster", "movieapi-db")
    name, initdb = cluster["metadata"]["name"], cluster["spec"]["bootstrap"]["initdb"]
    secrets = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in api_container(built)["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    # CloudNativePG's <cluster>-app secret: `uri` is postgresql://owner:password@<cluster>-rw.<namespace>:5432/db.
    assert secrets["DATABASE_URL"] == {"name": f"{name}-app", "key": "uri"}
    assert secrets["PGPASSWORD"] == {"name": f"{name}-app", "key": "password"}
    replicas = [urlsplit(url) for url in config(built)["DATABASE_REPLICA_URLS"].split(",")]
    assert replicas
    for url in replicas:
        assert (url.hostname, url.port, url.username, url.password) == (f"{name}-ro", 5432, initdb["owner"], None)
        assert url.path == f"/{initdb['database']}"


def test_postgres_cluster_has_cloudnativepgs_required_fields(built: list[Resource]) -> None:
    """The Cluster is not validated against CloudNativePG's schema offline (check.py says so): its fields are here.

    One primary and two replicas; `instances` (required), storage and the initdb owner as CloudNativePG's API
    reference has them; no field outside its ClusterSpec."""
    cluster = find(built, "Cluster", "movieapi-db")
    assert (cluster["apiVersion"], cluster["kind"]) in check.NOT_VALIDATED
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
    assert set(spec["bootstrap"]["initdb"]) == {"database", "owner"}
    assert spec["primaryUpdateStrategy"] in {"unsupervised", "supervised"}
    assert all(isinstance(value, str) for value in spec["postgresql"]["parameters"].values())
    assert set(spec) <= {
        "affinity", "backup", "bootstrap", "certificates", "description", "enableSuperuserAccess", "env", "envFrom",
        "imageName", "imagePullPolicy", "inheritedMetadata", "instances", "logLevel", "managed", "maxSyncReplicas",
        "minSyncReplicas", "monitoring", "postgresql", "primaryUpdateMethod", "primaryUpdateStrategy", "resources",
        "storage", "superuserSecret", "walStorage",
    }  # fmt: skip
    # PostgreSQL 17, as compose runs it.
    assert spec["imageName"].rsplit(":", 1)[1].split(".")[0] == "17"


def ingress_routes(ingress: Resource, path: str) -> bool:
    """Whether one of the Ingress's rules sends this path to the API's Service (Kubernetes' Exact/Prefix rules)."""
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            prefix = route["path"].rstrip("/")
            matches = path == route["path"] or (
                route["pathType"] == "Prefix" and (prefix == "" or path.startswith(prefix + "/"))
            )
            if matches and route["backend"]["service"] == {"name": "movieapi", "port": {"name": "http"}}:
                return True
    return False


# Answered inside the network only: scraped and probed there, never published (docs/operations.md, "Exposure").
INTERNAL_ROUTES = {"/metrics", "/readyz"}


def test_ingress_publishes_every_route_but_the_internal_ones(built: list[Resource]) -> None:
    """Each top-level route of movieapi/urls.py (and the static files) goes through the Ingress; /metrics and /readyz
    do not."""
    ingress = find(built, "Ingress", "movieapi")
    routes = {"/" + str(pattern.pattern) for pattern in get_resolver().url_patterns}
    routes.add("/" + settings.STATIC_URL.lstrip("/"))
    assert {route for route in routes if not ingress_routes(ingress, route)} == INTERNAL_ROUTES
    assert ingress_routes(ingress, "/api/v1/movies/1/")
    assert not ingress_routes(ingress, "/metrics/")


def nginx_locations_answering_404() -> set[str]:
    """The exact locations of deploy/nginx.conf that the proxy answers 404 itself."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    return set(re.findall(r"location = (\S+) \{\s*return 404;\s*\}", conf))


def test_the_proxy_keeps_the_internal_routes_in() -> None:
    """compose's proxy answers the same routes 404 as the Ingress leaves out."""
    assert nginx_locations_answering_404() == INTERNAL_ROUTES


def test_compose_publishes_the_proxy_alone_on_loopback_by_default() -> None:
    """Only the proxy has a published port, on 127.0.0.1 unless PROXY_BIND says otherwise; gunicorn is only exposed
    to the compose network, and the proxy passes on the Host names the API allows."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert {name for name, service in services.items() if "ports" in service} == {"proxy"}
    (published,) = services["proxy"]["ports"]
    assert published == "${PROXY_BIND:-127.0.0.1}:${PROXY_PORT:-8080}:80"
    assert services["api"]["expose"] == ["8000"]
    names = re.search(
        r"^server_name ([^;]+);", (ROOT / "deploy" / "nginx-server-names.conf").read_text(encoding="utf-8"), re.M
    )
    assert names is not None
    allowed = re.fullmatch(r"\$\{DJANGO_ALLOWED_HOSTS:-(.*)\}", services["api"]["environment"]["DJANGO_ALLOWED_HOSTS"])
    assert allowed is not None
    assert set(allowed[1].split(",")) <= set(names[1].split())
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["proxy"]["volumes"]}
    assert mounts["/etc/nginx/movieapi-server-names.conf"] == "./deploy/nginx-server-names.conf"


def test_https_follows_the_ingress_tls(built: list[Resource]) -> None:
    """DJANGO_HTTPS is on exactly where TLS ends at the Ingress; its hosts are the allowed hosts."""
    ingress = find(built, "Ingress", "movieapi")
    environ = config(built)
    assert (environ["DJANGO_HTTPS"] == "1") == bool(ingress["spec"].get("tls"))
    assert {rule["host"] for rule in ingress["spec"]["rules"]} == set(environ["DJANGO_ALLOWED_HOSTS"].split(","))
    assert environ["TRUSTED_PROXY_COUNT"] == "1"  # the ingress controller


def test_only_the_ingress_controller_reaches_gunicorn(built: list[Resource]) -> None:
    """No Service publishes a port outside the cluster; the NetworkPolicy lets in the ingress controller alone and
    lets out PostgreSQL, Redis and DNS only."""
    assert {service["spec"]["type"] for service in built if service["kind"] == "Service"} == {"ClusterIP"}
    assert all("hostPort" not in port for port in api_container(built)["ports"])
    deployment = find(built, "Deployment", "movieapi")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in [
        find(built, "Service", "movieapi")["spec"]["selector"],
        find(built, "PodDisruptionBudget", "movieapi")["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"],
    ]:
        assert selector.items() <= labels.items()
    assert "replicas" not in deployment["spec"]  # the HorizontalPodAutoscaler's
    assert find(built, "HorizontalPodAutoscaler", "movieapi")["spec"]["scaleTargetRef"]["name"] == "movieapi"

    policy = find(built, "NetworkPolicy", "movieapi")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (allowed,) = policy["ingress"]
    (source,) = allowed["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    redis_labels = find(built, "Deployment", "movieapi-redis")["spec"]["template"]["metadata"]["labels"]
    egress = {
        (port["port"], port["protocol"]): peer
        for rule in policy["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert set(egress) == {(5432, "TCP"), (6379, "TCP"), (53, "UDP"), (53, "TCP")}
    assert egress[5432, "TCP"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": "movieapi-db"}
    assert egress[6379, "TCP"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
