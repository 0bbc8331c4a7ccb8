"""What the deployment files say against what the code reads: settings, modules, ports, grace, metrics.

Each check returns the problems it found (empty when the files and the code agree), so the tests and
`python -m deploy.validate` report every mismatch at once. Settings are introspected from the services'
own `pydantic-settings` classes, never listed by hand.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo

from deploy.kustomize import Resource

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
SERVICES = ("gateway", "router", "credits", "keyvault", "health")
GRPC_SERVICES = ("router", "credits", "keyvault", "health")


def _callers() -> dict[str, set[str]]:
    """Who calls whom, from each service's access rules (`services/<name>/access.py`); the operator's CLI is no pod."""
    tables = {name: importlib.import_module(f"services.{name}.access").ACCESS for name in GRPC_SERVICES}
    return {name: table.callers() - {"operator"} for name, table in tables.items()}


# Each gRPC service must be reachable from exactly these, and each pod may reach exactly the services it calls.
CALLERS = _callers()
CALLS = {pod: {service for service, callers in CALLERS.items() if pod in callers} for pod in (*SERVICES, "migrate")}
# Datastore ports a pod may reach anywhere outside the link-local range, and who reaches the public internet.
DATASTORES = {"gateway": {6379}, "router": {6379}, "credits": {5432}, "keyvault": {5432}, "health": {5432}}
DATASTORES["migrate"] = {5432}
# Only the router calls providers; health's active probes are the one, documented exception (HTTPS only).
INTERNET = {"router": None, "health": {443}}
METADATA = "169.254.169.254"
# Read by litellm, not by tollgate; the images and manifests set them on purpose.
FOREIGN_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP", "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"}
SETTING_NAME = re.compile(r"\bTOLLGATE_[A-Z0-9_]*[A-Z0-9]\b")
MODULE = re.compile(r"\bservices\.([a-z_]+)\b")


def settings_class(service: str) -> type[Any]:
    """The `CommonSettings` subclass that `services/<service>/settings.py` defines."""
    from services.runtime.settings import CommonSettings

    module = importlib.import_module(f"services.{service}.settings")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, CommonSettings) and value.__module__ == module.__name__:
            return value
    raise LookupError(f"services/{service}/settings.py defines no CommonSettings subclass")


def _env_name(prefix: str, name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else f"{prefix}{name}".upper()


def setting_names(service: str) -> dict[str, Any]:
    """The environment variable of each setting of `service`, with its default."""
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "")
    return {_env_name(prefix, name, field): field.default for name, field in cls.model_fields.items()}


def launcher_names() -> set[str]:
    """Names only the launcher (`make run`) reads from the environment."""
    source = (ROOT / "services" / "launcher.py").read_text()
    return set(re.findall(r"environ\.get\(\s*\"(TOLLGATE_[A-Z0-9_]+)\"", source))


def cli_names() -> set[str]:
    """Names the operator's CLI reads besides the common ones (its identity)."""
    from services.cli.common import OperatorSettings

    prefix = OperatorSettings.model_config.get("env_prefix", "")
    return {_env_name(prefix, name, field) for name, field in OperatorSettings.model_fields.items()}


def all_setting_names() -> set[str]:
    names = launcher_names() | cli_names()
    for service in SERVICES:
        names |= set(setting_names(service))
    return names


def deploy_files() -> list[Path]:
    skip = {"__pycache__"}
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not skip & set(p.parts) and p.suffix != ".pyc"]
    return sorted([*files, ROOT / ".dockerignore"])


def unknown_tollgate_names() -> list[str]:
    """Every TOLLGATE_* name in the deployment files must be a setting some code reads."""
    known = all_setting_names()
    problems = []
    for path in deploy_files():
        for name in sorted(set(SETTING_NAME.findall(path.read_text())) - known):
            problems.append(f"{path.relative_to(ROOT)}: {name} is not a setting of any service")
    return problems


def missing_from_env_example() -> list[str]:
    """`.env.example` (secrets) and `tollgate.env.example` (tuning) list every setting of every service between
    them, and `.env.example` every provider key of the full catalog (compose hands them to the router)."""
    secrets = (DEPLOY / ".env.example").read_text()
    tuning = (DEPLOY / "tollgate.env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", secrets + "\n" + tuning, re.MULTILINE))
    wanted = {name for service in SERVICES for name in setting_names(service)}
    problems = [f"deploy/.env.example or tollgate.env.example: {name} is missing" for name in sorted(wanted - listed)]
    in_secrets = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", secrets, re.MULTILINE))
    problems += [f"deploy/.env.example: {name} is missing" for name in catalog_key_envs() if name not in in_secrets]
    return problems


def catalog_key_envs() -> list[str]:
    catalog = yaml.safe_load((ROOT / "catalog" / "default.yaml").read_text())
    return sorted({p["api_key_env"] for p in catalog.get("providers", {}).values() if p.get("api_key_env")})


def module_of(command: Iterable[str]) -> list[str]:
    """The services a command runs, e.g. ["python", "-m", "services.router"] -> ["router"]."""
    return [match for part in command for match in MODULE.findall(part)]


def runnable(service: str) -> bool:
    """`python -m services.<service>` exists."""
    return importlib.util.find_spec(f"services.{service}.__main__") is not None


def _config_maps(resources: list[Resource]) -> dict[str, dict[str, str]]:
    return {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}


def _workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r["kind"] in ("Deployment", "Job")]


def _pod_containers(res: Resource) -> list[dict[str, Any]]:
    pod = res["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str | None]:
    """Variables a container gets from `env` and from ConfigMaps in `envFrom` (Secret values: None)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps.get(source["configMapRef"]["name"], {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def manifest_problems(resources: list[Resource]) -> list[str]:
    """Commands, env names, ports, probes and grace periods of rendered manifests against the code."""
    problems: list[str] = []
    maps = _config_maps(resources)
    for res in _workloads(resources):
        where = f"{res['kind']}/{res['metadata']['name']}"
        for container in _pod_containers(res):
            services = module_of(container.get("command", []))
            if not services:
                if container["image"].split(":")[0].endswith("tollgate"):
                    problems.append(f"{where}: container {container['name']} runs no services.<name> module")
                continue
            service = services[0]
            if not runnable(service):
                problems.append(f"{where}: python -m services.{service} does not exist")
                continue
            settings = setting_names(service)
            env = container_env(container, maps)
            for name in sorted(set(env) - set(settings) - FOREIGN_ENV):
                problems.append(f"{where}: {name} is not a setting of {service}")
            if res["kind"] == "Deployment":
                problems += _port_problems(where, service, container, settings, env)
                problems += _grace_problems(where, res, container, env)
    return problems


def _port_problems(
    where: str, service: str, container: dict[str, Any], settings: dict[str, Any], env: dict[str, str | None]
) -> list[str]:
    problems = []
    port_setting = f"TOLLGATE_{service.upper()}_PORT"
    port = int(env.get(port_setting) or settings[port_setting])
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    main = "http" if service == "gateway" else "grpc"
    if ports.get(main) != port:
        problems.append(f"{where}: port {main} is {ports.get(main)}, {service} listens on {port}")
    metrics_setting = f"TOLLGATE_{service.upper()}_METRICS_PORT"
    if (
        metrics_setting in settings
        and env.get(metrics_setting)
        and ports.get("metrics") != int(str(env[metrics_setting]))
    ):
        problems.append(f"{where}: port metrics is {ports.get('metrics')}, {metrics_setting}={env[metrics_setting]}")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe is None:
            problems.append(f"{where}: no {kind}")
            continue
        if service == "gateway":
            if probe.get("httpGet", {}).get("port") not in ("http", port):
                problems.append(f"{where}: {kind} is not an HTTP probe of port {port}")
        elif probe.get("grpc", {}).get("port") != port:
            problems.append(f"{where}: {kind} is not a gRPC probe of port {port}")
    return problems


def _grace_problems(where: str, res: Resource, container: dict[str, Any], env: dict[str, str | None]) -> list[str]:
    from services.runtime.settings import CommonSettings

    grace = float(env.get("TOLLGATE_GRACE_SECONDS") or CommonSettings.model_fields["grace_seconds"].default)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = res["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if period < grace + pre_stop + 1:
        return [f"{where}: terminationGracePeriodSeconds {period} < preStop {pre_stop}s + drain {grace:g}s + 1s"]
    return []


def address_problems(resources: list[Resource]) -> list[str]:
    """Peer addresses point at the headless Service of the right name and at the port the peer listens on."""
    problems = []
    services = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Service"}
    for cmap, data in _config_maps(resources).items():
        for service in GRPC_SERVICES:
            address = data.get(f"TOLLGATE_{service.upper()}_ADDR")
            if address is None:
                continue
            expected = f"dns:///{service}:{setting_names(service)[f'TOLLGATE_{service.upper()}_PORT']}"
            if address != expected:
                problems.append(f"ConfigMap/{cmap}: TOLLGATE_{service.upper()}_ADDR is {address}, expected {expected}")
            svc = services.get(service)
            if svc is None or svc["spec"].get("clusterIP") != "None":
                problems.append(f"Service/{service} must exist and be headless for round_robin over its pods")
    return problems


def network_problems(resources: list[Resource]) -> list[str]:
    """Only the gateway is open; each gRPC service admits exactly its callers."""
    problems = []
    policies = {r["metadata"]["name"]: r["spec"] for r in resources if r["kind"] == "NetworkPolicy"}
    deny = policies.get("default-deny-ingress")
    if deny is None or deny.get("podSelector") != {} or deny.get("ingress"):
        problems.append("NetworkPolicy/default-deny-ingress must select every pod and admit nothing")
    for name, spec in policies.items():
        target = spec.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        if name == "gateway" or target not in CALLERS or "Ingress" not in spec.get("policyTypes", []):
            continue
        sources = {
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "<other>")
            for rule in spec.get("ingress", [])
            for peer in rule.get("from", [{"<anyone>": True}])
        }
        if sources != CALLERS[target]:
            problems.append(
                f"NetworkPolicy/{name}: {target} admits {sorted(sources)}, callers are {sorted(CALLERS[target])}"
            )
    for service in CALLERS:
        if service not in policies:
            problems.append(f"NetworkPolicy/{service} is missing")
    return problems


def _covers(cidr: str, address: str) -> bool:
    import ipaddress

    net = ipaddress.ip_network(cidr)
    addr = ipaddress.ip_address(address)
    return addr.version == net.version and addr in net


def _reaches_metadata(block: dict[str, Any]) -> bool:
    return _covers(block["cidr"], METADATA) and not any(_covers(c, METADATA) for c in block.get("except", []))


def _peer_problem(policy: str, pod: str | None, peer: dict[str, Any], ports: set[Any]) -> str | None:
    """What is wrong with one egress destination of `pod` (None: a rule for every pod)."""
    block = peer.get("ipBlock")
    if block is not None and _reaches_metadata(block):
        return f"NetworkPolicy/{policy}: {block['cidr']} reaches the metadata address {METADATA}"
    if pod is None:
        return None if peer.get("namespaceSelector") and ports <= {53} else f"NetworkPolicy/{policy}: more than DNS"
    if block is None or (ports and ports <= DATASTORES.get(pod, set())):
        return None
    if pod in INTERNET:
        allowed = INTERNET[pod]
        if allowed is None or (ports and ports <= allowed):
            return None
    return f"NetworkPolicy/{policy}: {pod} may reach {block['cidr']} on {sorted(ports) or 'every port'}"


def egress_problems(resources: list[Resource]) -> list[str]:
    """Egress is denied by default; each pod reaches DNS, the services it calls, its datastores and, for the
    router (and health's probes), the public internet; no rule reaches the metadata address."""
    problems = []
    policies = {r["metadata"]["name"]: r["spec"] for r in resources if r["kind"] == "NetworkPolicy"}
    deny = policies.get("default-deny-egress")
    if deny is None or deny.get("podSelector") != {} or deny.get("egress") or deny.get("policyTypes") != ["Egress"]:
        problems.append("NetworkPolicy/default-deny-egress must select every pod and allow nothing")
    reached: dict[str, set[str]] = {pod: set() for pod in CALLS}
    for name, spec in policies.items():
        if "Egress" not in spec.get("policyTypes", []):
            continue
        pod = spec.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in spec.get("egress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            for peer in rule.get("to", [{"ipBlock": {"cidr": "0.0.0.0/0"}}]):
                if problem := _peer_problem(name, pod, peer, ports):
                    problems.append(problem)
                target = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                if pod in reached and target in CALLERS:
                    reached[pod].add(target)
    for pod, services in reached.items():
        if services != CALLS[pod]:
            problems.append(f"egress of {pod}: reaches {sorted(services)}, calls {sorted(CALLS[pod])}")
    return problems


def exposed_metrics() -> set[str]:
    """Sample names the gateway and the gRPC services expose (`…_total`, `…_bucket`, …)."""
    from prometheus_client import REGISTRY

    for module in (
        "services.gateway.metrics",
        "services.gateway.replay",
        "services.gateway.limits",
        "services.runtime.metrics",
        "services.router.telemetry",
        "services.credits.metrics",
        "services.health.metrics",
    ):
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def dashboard_problems(path: Path = DEPLOY / "grafana" / "tollgate.json") -> list[str]:
    """Every metric a panel reads is one tollgate exposes."""
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\btollgate_[a-z0-9_]+", expr)}
    return [
        f"grafana/tollgate.json: {name} is not a metric tollgate exposes" for name in sorted(used - exposed_metrics())
    ]


def rules_problems(path: Path = DEPLOY / "prometheus" / "alerts.yml") -> list[str]:
    """Every metric an alert reads is one tollgate exposes."""
    rules = yaml.safe_load(path.read_text())
    exprs = [str(rule["expr"]) for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\btollgate_[a-z0-9_]+", expr)}
    return [
        f"prometheus/alerts.yml: {name} is not a metric tollgate exposes" for name in sorted(used - exposed_metrics())
    ]


def compose_problems(model: dict[str, Any]) -> list[str]:
    """Compose services (as the Compose binary resolved them) against the code."""
    problems = []
    services = model["services"]
    for name, spec in services.items():
        modules = module_of(spec.get("command") or [])
        if not modules:
            continue
        for module in modules:
            if not runnable(module):
                problems.append(f"compose {name}: python -m services.{module} does not exist")
        known = set().union(*(setting_names(m) for m in modules if runnable(m)))
        for var in sorted(set(spec.get("environment") or {}) - known - FOREIGN_ENV):
            if var.startswith("TOLLGATE_"):
                problems.append(f"compose {name}: {var} is not a setting of {', '.join(modules)}")
        if name in SERVICES and modules != [name]:
            problems.append(f"compose {name}: runs services.{', '.join(modules)}")
    for service in GRPC_SERVICES:
        port = setting_names(service)[f"TOLLGATE_{service.upper()}_PORT"]
        for name, spec in services.items():
            address = (spec.get("environment") or {}).get(f"TOLLGATE_{service.upper()}_ADDR")
            if address is not None and address != f"dns:///{service}:{port}":
                problems.append(f"compose {name}: TOLLGATE_{service.upper()}_ADDR={address}, {service} is on {port}")
    gateway_port = setting_names("gateway")["TOLLGATE_GATEWAY_PORT"]
    published = [p for name, spec in services.items() for p in spec.get("ports", []) if name != "gateway"]
    if published:
        problems.append(f"compose: only the gateway may publish ports, found {published}")
    targets = [int(p["target"]) for p in services["gateway"].get("ports", [])]
    if targets != [gateway_port]:
        problems.append(f"compose gateway: publishes {targets}, the gateway listens on {gateway_port}")
    return problems


def dockerfile_problems(path: Path = DEPLOY / "docker" / "Dockerfile") -> list[str]:
    """Multi-stage, a non-root final stage without build tools, a health check, the services' ports exposed."""
    text = path.read_text()
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)[1:]
    problems = []
    if len(stages) < 2:
        return ["Dockerfile: not multi-stage"]
    final = stages[-1]
    if re.search(r"build-essential|gcc|apt-get install", final):
        problems.append("Dockerfile: the final stage installs build tools")
    user = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    if not user or user[-1].split(":")[0] in ("0", "root"):
        problems.append("Dockerfile: the final stage does not run as a non-root user")
    if "HEALTHCHECK" not in final:
        problems.append("Dockerfile: no HEALTHCHECK")
    for source in re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(\S+)\s", final, re.MULTILINE):
        if not (ROOT / source).exists():
            problems.append(f"Dockerfile: COPY {source} does not exist")
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", final, re.MULTILINE) for p in line.split()}
    ports = {int(setting_names(s)[f"TOLLGATE_{s.upper()}_PORT"]) for s in SERVICES}
    if exposed != ports:
        problems.append(f"Dockerfile: EXPOSE {sorted(exposed)}, the services listen on {sorted(ports)}")
    for module in module_of(re.findall(r"^CMD\s+(.+)$", final, re.MULTILINE)):
        if not runnable(module):
            problems.append(f"Dockerfile: CMD runs services.{module}, which does not exist")
    return problems


def catalog_problems() -> list[str]:
    copy = DEPLOY / "k8s" / "base" / "catalog.yaml"
    if copy.read_text() != (ROOT / "catalog" / "default.yaml").read_text():
        return [
            "deploy/k8s/base/catalog.yaml differs from catalog/default.yaml: cp catalog/default.yaml deploy/k8s/base/"
        ]
    return []
