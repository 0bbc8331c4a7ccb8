"""The deployment files validated offline by real tools, and held to what the code actually reads.

Compose goes through the real Compose v2 binary, every kustomize overlay through `kubernetes-validate
--strict` pinned to one Kubernetes version; then the drift checks: settings, commands, ports, grace
periods, network policies and dashboard metrics against the services' own code.
"""

from __future__ import annotations

import os
import re
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
    rendered = validate.render("prod")
    assert not [r for r in rendered if r["kind"] == "Secret"]
    assert not [r for r in rendered if r["metadata"]["name"] == "tollgate-identity"]


def test_dev_overlay_secrets_are_well_formed() -> None:
    import base64

    from services.keyvault.apikeys import well_formed
    from services.keyvault.masterkeys import parse_vault_keys
    from services.runtime import identity

    rendered = validate.render("dev")
    secrets = {
        r["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in r["data"].items()}
        for r in rendered
        if r["kind"] == "Secret"
    }
    keyvault = secrets["tollgate-keyvault"]
    assert well_formed(keyvault["TOLLGATE_ADMIN_KEY"])
    parse_vault_keys(keyvault["TOLLGATE_VAULT_KEYS"])
    assert "REPLACE_ME" not in "".join(v for values in secrets.values() for v in values.values())
    # The dev public keys are those of the dev secrets (the operator's is written next to them).
    public = next(r for r in rendered if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "tollgate-identity")
    for name in ("gateway", "router"):
        secret = secrets[f"tollgate-{name}"][f"TOLLGATE_{identity.key_setting(name)}"]
        assert public["data"][f"TOLLGATE_{identity.public_setting(name)}"] == identity.public_key(secret)
    operator = "dev-only-operator-identity-key-not-a-secret-0000"
    assert operator in (validate.OVERLAYS / "dev" / "kustomization.yaml").read_text()
    assert public["data"]["TOLLGATE_OPERATOR_IDENTITY_PUBLIC_KEY"] == identity.public_key(operator)


def _secret_keys(container: dict[str, Any]) -> dict[str, str]:
    """The Secret each of a container's secret variables comes from."""
    return {
        var["name"]: var["valueFrom"]["secretKeyRef"]["name"]
        for var in container.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }


def test_each_pod_reads_only_its_own_secret(rendered: list[Resource]) -> None:
    deployments = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "Deployment"}
    for name in drift.SERVICES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert set(_secret_keys(container).values()) == {f"tollgate-{name}"}, name
        sources = container.get("envFrom", [])
        secret_refs = {s["secretRef"]["name"] for s in sources if "secretRef" in s}
        assert secret_refs == ({"tollgate-provider-keys"} if name == "router" else set()), name
    keys = {
        name: set(_secret_keys(deployments[name]["spec"]["template"]["spec"]["containers"][0]))
        for name in drift.SERVICES
    }
    assert keys["gateway"] == {"TOLLGATE_GATEWAY_IDENTITY_KEY", "TOLLGATE_REDIS_URL"}
    assert keys["router"] == {"TOLLGATE_ROUTER_IDENTITY_KEY", "TOLLGATE_REDIS_URL"}
    assert {"TOLLGATE_ADMIN_KEY", "TOLLGATE_KEY_PEPPER", "TOLLGATE_VAULT_KEYS"} <= keys["keyvault"]
    job = next(r for r in rendered if r["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        (service,) = drift.module_of(container["command"])
        assert _secret_keys(container) == {f"TOLLGATE_{service.upper()}_DATABASE_URL": f"tollgate-{service}"}


def test_egress_is_denied_but_for_what_each_pod_needs(rendered: list[Resource]) -> None:
    assert drift.egress_problems(rendered) == []
    policies = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "NetworkPolicy"}
    router = policies["router-egress"]["spec"]["egress"]
    internet = [p["ipBlock"] for rule in router for p in rule["to"] if "ipBlock" in p and not rule.get("ports")]
    v4 = next(b for b in internet if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])
    for name in ("gateway", "credits", "keyvault", "migrate"):
        for rule in policies[f"{name}-egress"]["spec"]["egress"]:
            assert rule.get("ports"), f"{name} may reach some address on every port"


def test_egress_checks_catch_a_leak(rendered: list[Resource]) -> None:
    import copy

    def policy(resources: list[Resource], name: str) -> dict[str, Any]:
        return next(r for r in resources if r["kind"] == "NetworkPolicy" and r["metadata"]["name"] == name)

    metadata = copy.deepcopy(rendered)
    for rule in policy(metadata, "router-egress")["spec"]["egress"]:
        for peer in rule["to"]:
            if "ipBlock" in peer:
                peer["ipBlock"]["except"] = [c for c in peer["ipBlock"].get("except", []) if c != "169.254.0.0/16"]
    assert any("metadata address" in p for p in drift.egress_problems(metadata))

    internet = copy.deepcopy(rendered)
    public = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}
    policy(internet, "keyvault-egress")["spec"]["egress"].append({"to": [public]})
    assert any("keyvault may reach 0.0.0.0/0" in p for p in drift.egress_problems(internet))

    missing = copy.deepcopy(rendered)
    rules = policy(missing, "gateway-egress")["spec"]["egress"]
    rules[:] = [
        r for r in rules if r["to"][0].get("podSelector", {}).get("matchLabels") != {"app.kubernetes.io/name": "health"}
    ]
    assert any("egress of gateway" in p for p in drift.egress_problems(missing))

    lateral = copy.deepcopy(rendered)
    policy(lateral, "credits-egress")["spec"]["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "keyvault"}}}]}
    )
    assert any("egress of credits" in p for p in drift.egress_problems(lateral))


def test_compose_gives_each_service_only_its_secrets(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    env = {name: set(services[name].get("environment") or {}) for name in drift.SERVICES}
    owned = {
        "TOLLGATE_ADMIN_KEY": "keyvault",
        "TOLLGATE_KEY_PEPPER": "keyvault",
        "TOLLGATE_VAULT_KEYS": "keyvault",
        "BYOK_ENCRYPTION_KEY": "keyvault",
        "TOLLGATE_GATEWAY_IDENTITY_KEY": "gateway",
        "TOLLGATE_ROUTER_IDENTITY_KEY": "router",
        "TOLLGATE_CREDITS_BILLING_API_KEY": "credits",
        **{key: "router" for key in drift.catalog_key_envs()},
    }
    for name, names in env.items():
        assert {k for k in names if k in owned} == {k for k, v in owned.items() if v == name}, name
        assert "TOLLGATE_OPERATOR_IDENTITY_KEY" not in names
        assert not [f for f in services[name].get("env_file", []) if Path(f["path"]).name == ".env"], name
    for name in ("credits", "keyvault", "health"):
        assert {f"TOLLGATE_{c.upper()}_IDENTITY_PUBLIC_KEY" for c in ("gateway", "router", "operator")} <= env[name]
    assert "TOLLGATE_ROUTER_IDENTITY_PUBLIC_KEY" not in env["router"]


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
        above = "\n".join(text.split(f"\n{name}=")[0].splitlines()[-3:])
        assert "python -c" in above or "python -m services.runtime.identity" in above, f"{name}: no generate command"


def test_tuning_example_holds_no_secret() -> None:
    """Every container reads tollgate.env: the secrets must live in .env, handed out one service at a time."""
    tuning = validate.TUNING_EXAMPLE.read_text()
    assert not [ln for ln in tuning.splitlines() if ln and not ln.startswith("#")]
    listed = set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", tuning, re.MULTILINE))
    secrets = {"TOLLGATE_ADMIN_KEY", "TOLLGATE_KEY_PEPPER", "TOLLGATE_VAULT_KEYS", "TOLLGATE_CREDITS_BILLING_API_KEY"}
    secrets |= {f"TOLLGATE_{name.upper()}_IDENTITY_KEY" for name in ("gateway", "router", "operator")}
    assert listed and not listed & secrets


def test_k8s_yaml_files_parse() -> None:
    for path in (validate.DEPLOY / "k8s").rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
