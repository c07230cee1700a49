"""Build the Kubernetes kustomizations and validate their output offline: `make check-deploy` runs this.

kustomize is kubectl's own (`kubectl kustomize`), else a standalone `kustomize build`. Every resource built is
validated against the Kubernetes JSON schemas that kubernetes-validate ships (no network), in strict mode (a field
Kubernetes does not know is an error), for the oldest and the newest Kubernetes version the manifests claim.
CloudNativePG's `Cluster` is a custom resource whose schema is not available offline: it is reported as NOT
VALIDATED, and the fields the API depends on are checked by movieapi/tests/test_deploy.py. Any other kind without a
schema is an error (a misspelt apiVersion, say).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

HERE = Path(__file__).resolve().parent
KUSTOMIZATIONS = (HERE / "base", HERE / "overlays" / "production")
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# (apiVersion, kind) of the custom resources no offline schema covers.
NOT_VALIDATED = frozenset({("postgresql.cnpg.io/v1", "Cluster")})


class KustomizeMissing(RuntimeError):
    """Neither kubectl nor kustomize is on PATH."""


def kustomize_command() -> list[str]:
    """The command that builds a kustomization: kubectl's built-in kustomize, else the standalone one."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise KustomizeMissing(
        "neither kubectl nor kustomize is installed: the Kubernetes manifests were NOT built or validated "
        "(install kubectl, https://kubernetes.io/docs/tasks/tools/, or kustomize)"
    )


def build(directory: Path) -> list[dict[str, Any]]:
    """The resources a kustomization builds to, in order."""
    command = [*kustomize_command(), str(directory)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout  # noqa: S603 (our arguments)
    return [resource for resource in yaml.safe_load_all(output) if resource]


def problems(resources: list[dict[str, Any]], version: str) -> tuple[dict[str, str], list[str]]:
    """The errors (by resource) and the resources not validated, against one Kubernetes version's schemas."""
    errors: dict[str, str] = {}
    skipped: list[str] = []
    for resource in resources:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors[name] = f"{path}: {exc.message}"
        except SchemaNotFoundError:
            if (resource["apiVersion"], resource["kind"]) in NOT_VALIDATED:
                skipped.append(f"{name} ({resource['apiVersion']})")
            else:
                errors[name] = f"no Kubernetes {version} schema for {resource['apiVersion']} {resource['kind']}"
    return errors, skipped


def main() -> int:
    """Build and validate every kustomization; print what passed, what failed and what was not validated."""
    failed = False
    for directory in KUSTOMIZATIONS:
        label = directory.relative_to(HERE.parent.parent)
        try:
            resources = build(directory)
        except KustomizeMissing as exc:
            print(f"check-deploy: {exc}", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as exc:
            print(f"{label}: kustomize failed:\n{exc.stderr}", file=sys.stderr)
            failed = True
            continue
        invalid: set[str] = set()
        skipped: list[str] = []
        for version in KUBERNETES_VERSIONS:
            errors, skipped = problems(resources, version)
            for name, error in errors.items():
                print(f"{label}: {name} INVALID against Kubernetes {version}: {error}", file=sys.stderr)
            invalid.update(errors)
        failed = failed or bool(invalid)
        versions = " and ".join(KUBERNETES_VERSIONS)
        valid = len(resources) - len(invalid) - len(skipped)
        print(f"{label}: {valid} of {len(resources)} resources valid against Kubernetes {versions} (strict schemas)")
        for name in skipped:
            print(f"{label}: NOT VALIDATED (custom resource, no offline schema): {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
