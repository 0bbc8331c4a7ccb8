"""The deployment files validated offline by real tools, and held to what the code actually reads.

Compose goes through the real Compose v2 binary, every kustomize overlay through `kubernetes-validate
--strict` pinned to one Kubernetes version; then the drift checks: settings, commands, ports, grace
periods, network policies and dashboard metrics against the services' own code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import drift, validate
from deploy.kustomize import Resource

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def compose_model() -> dict[str, Any]:
    return validate.check_compose()


@pytest.fixture(scope="module", params=["dev", "prod"])
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return validate.render(request.param)


def test_every_overlay_is_covered() -> None:
    assert validate.overlays() == ["dev", "prod"]


def test_compose_binary_is_the_real_one() -> None:
    out = subprocess.run([str(validate.compose_binary()), "version"], capture_output=True, text=True, check=True)
    assert "Docker Compose version v2" in out.stdout


def test_compose_file_is_valid(compose_model: dict[str, Any]) -> None:
    assert set(compose_model["services"]) == {"postgres", "redis", "migrate", *drift.SERVICES}


def test_compose_refuses_to_start_with_empty_secrets() -> None:
    with pytest.raises(validate.Invalid, match=r"required variable (POSTGRES_PASSWORD|TOLLGATE_\w+) is missing"):
        validate.compose_config(validate.ENV_EXAMPLE)


def test_compose_binary_rejects_a_misspelt_field(tmp_path: Path) -> None:
    broken = validate.COMPOSE_FILE.read_text().replace(
        "    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1
    )
    (tmp_path / "compose.yaml").write_text(broken)
    env = validate.env_file_with(validate.generated_secrets(), tmp_path)
    with pytest.raises(validate.Invalid, match="restrat"):
        validate.compose_config(env, tmp_path / "compose.yaml")


def test_compose_services_start_in_order(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    for name in ("credits", "keyvault", "health"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in drift.SERVICES:
        assert services[name]["restart"] == "unless-stopped"
        assert services[name]["deploy"]["resources"]["limits"]["memory"]
        assert all(dep["condition"] != "service_started" for dep in services[name]["depends_on"].values())
    for store in ("postgres", "redis"):
        assert services[store]["healthcheck"]["test"]
        assert services[store]["volumes"]


def test_compose_matches_the_code(compose_model: dict[str, Any]) -> None:
    assert drift.compose_problems(compose_model) == []


def test_overlay_manifests_pass_strict_schema_validation(rendered: list[Resource]) -> None:
    validate.kubernetes_validate(rendered)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    resources = validate.render("prod")
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(validate.Invalid, match="imagePullPolicyy"):
        validate.kubernetes_validate([deployment])


def test_validation_rejects_a_kind_without_a_schema() -> None:
    resource = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(validate.Invalid, match="Deploymnet"):
        validate.kubernetes_validate([resource])


def test_manifests_match_the_code(rendered: list[Resource]) -> None:
    assert drift.manifest_problems(rendered) == []
    assert drift.address_problems(rendered) == []
    assert drift.network_problems(rendered) == []


def test_every_service_is_deployed_hardened(rendered: list[Resource]) -> None:
    deployments = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "Deployment"}
    services = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "Service"}
    for name in drift.SERVICES:
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"requests", "limits"} <= set(container["resources"])
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert name in services
    scaled = {r["spec"]["scaleTargetRef"]["name"] for r in rendered if r["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"gateway", "router"}
    for name in scaled:
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the replica count"
    budgets = {
        r["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in rendered
        if r["kind"] == "PodDisruptionBudget"
    }
    assert budgets == set(drift.SERVICES)


def test_migration_job_runs_every_migration(rendered: list[Resource]) -> None:
    job = next(r for r in rendered if r["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    commands = [c["command"] for c in (*pod["initContainers"], *pod["containers"])]
    assert [drift.module_of(c) for c in commands] == [["credits"], ["keyvault"], ["health"]]
    assert all(c[-1] == "migrate" for c in commands)


def test_prod_overlay_ships_no_placeholder_secret() -> None:
    assert not [r for r in validate.render("prod") if r["kind"] == "Secret"]


def test_dev_overlay_secrets_are_well_formed() -> None:
    from services.keyvault.apikeys import well_formed
    from services.keyvault.masterkeys import parse_vault_keys

    secret = next(
        r for r in validate.render("dev") if r["kind"] == "Secret" and r["metadata"]["name"] == "tollgate-secrets"
    )
    import base64

    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert well_formed(values["TOLLGATE_ADMIN_KEY"])
    parse_vault_keys(values["TOLLGATE_VAULT_KEYS"])
    assert "REPLACE_ME" not in "".join(values.values())


def test_deploy_files_name_only_real_settings() -> None:
    assert drift.unknown_tollgate_names() == []


def test_env_example_lists_every_setting() -> None:
    assert drift.missing_from_env_example() == []


def test_dockerfile_builds_a_lean_non_root_image() -> None:
    assert drift.dockerfile_problems() == []


def test_catalog_config_map_is_the_default_catalog() -> None:
    assert drift.catalog_problems() == []


def test_dashboard_uses_only_exposed_metrics() -> None:
    assert drift.dashboard_problems() == []
    dashboard = (validate.DEPLOY / "grafana" / "tollgate.json").read_text()
    for metric in ("tollgate_http_requests_total", "tollgate_rpc_seconds_bucket", "tollgate_gateway_overhead_seconds"):
        assert metric in dashboard


def test_validate_module_reports_success() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.validate"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 1 + len(validate.overlays()) + 1


@pytest.mark.postgres
def test_migration_commands_migrate_postgresql(postgres_url: str) -> None:
    """The Job's commands, run as written against one fresh database (each service keeps its own version table)."""
    job = next(r for r in validate.render("prod") if r["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        (service,) = drift.module_of(container["command"])
        env = {
            **os.environ,
            "TOLLGATE_MODE": "production",
            f"TOLLGATE_{service.upper()}_DATABASE_URL": postgres_url,
        }
        command = [sys.executable, *container["command"][1:]]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{' '.join(container['command'])}: {result.stderr[-2000:]}"
    import asyncio

    import asyncpg

    async def tables() -> set[str]:
        conn = await asyncpg.connect(postgres_url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        return {r["tablename"] for r in rows}

    found = asyncio.run(tables())
    assert {"credits_alembic_version", "keyvault_alembic_version", "health_alembic_version"} <= found, found


def test_compose_migrate_runs_the_same_commands(compose_model: dict[str, Any]) -> None:
    script = compose_model["services"]["migrate"]["command"][-1]
    assert drift.module_of([script]) == ["credits", "keyvault", "health"]
    assert script.count(" migrate") == 3


def test_env_example_secrets_are_placeholders() -> None:
    lines = [ln for ln in validate.ENV_EXAMPLE.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all(ln.endswith("=") for ln in lines), lines
    text = validate.ENV_EXAMPLE.read_text()
    for name in [ln.rstrip("=") for ln in lines]:
        before = text.split(f"\n{name}=")[0].splitlines()
        assert "python -c" in "\n".join(before[-3:]), f"{name} has no generate command above it"


def test_k8s_yaml_files_parse() -> None:
    for path in (validate.DEPLOY / "k8s").rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
