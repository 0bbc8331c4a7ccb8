"""The offline kustomize renderer: the subset the overlays use behaves as kustomize does, the rest is refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from deploy.kustomize import KustomizeError, build, merge

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "router"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "router"}},
        "template": {
            "metadata": {"labels": {"app": "router"}},
            "spec": {
                "containers": [
                    {"name": "router", "image": "tollgate:0.1.0", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox"},
                ]
            },
        },
    },
}


def write(directory: Path, files: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = (
            content
            if isinstance(content, str)
            else yaml.safe_dump_all(content if isinstance(content, list) else [content])
        )
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(
        tmp_path / "base",
        {
            "kustomization.yaml": {
                "resources": ["router.yaml"],
                "generatorOptions": {"disableNameSuffixHash": True},
                "configMapGenerator": [{"name": "config", "literals": ["LEVEL=INFO", "MODE=production"]}],
                "secretGenerator": [{"name": "keys", "literals": ["TOKEN=REPLACE_ME"]}],
            },
            "router.yaml": DEPLOYMENT,
        },
    )


def test_base_renders_resources_and_generators(base: Path) -> None:
    resources = build(base)
    assert [(r["kind"], r["metadata"]["name"]) for r in resources] == [
        ("Deployment", "router"),
        ("ConfigMap", "config"),
        ("Secret", "keys"),
    ]
    assert resources[1]["data"] == {"LEVEL": "INFO", "MODE": "production"}
    assert base64.b64decode(resources[2]["data"]["TOKEN"]) == b"REPLACE_ME"


def test_overlay_transforms_like_kustomize(base: Path, tmp_path: Path) -> None:
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "router"},
        "spec": {"template": {"spec": {"containers": [{"name": "router", "env": [{"name": "B", "value": "2"}]}]}}},
    }
    delete = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "$patch": "delete"}
    overlay = write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": {
                "namespace": "prod",
                "resources": ["../base"],
                "images": [{"name": "tollgate", "newName": "registry.example.com/tollgate", "newTag": "1.2.3"}],
                "replicas": [{"name": "router", "count": 5}],
                "labels": [{"pairs": {"team": "llm"}, "includeTemplates": True}],
                "patches": [{"path": "patch.yaml"}],
                "generatorOptions": {"disableNameSuffixHash": True},
                "configMapGenerator": [{"name": "config", "behavior": "merge", "literals": ["LEVEL=DEBUG"]}],
            },
            "patch.yaml": [patch, delete],
        },
    )
    deployment, config = build(overlay)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "registry.example.com/tollgate:1.2.3"
    assert containers[1]["image"] == "busybox"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert deployment["spec"]["replicas"] == 5
    assert deployment["metadata"]["labels"] == {"team": "llm"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "router", "team": "llm"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "router"}}
    assert deployment["metadata"]["namespace"] == config["metadata"]["namespace"] == "prod"
    assert config["data"] == {"LEVEL": "DEBUG", "MODE": "production"}


def test_merge_replaces_unnamed_lists_and_scalars() -> None:
    assert merge({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": {"d": 2}}) == {"a": [3], "b": {"c": 1, "d": 2}}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namePrefix", "x-"),
        ("commonLabels", {"a": "b"}),
        ("patches", [{"patch": "inline", "target": {"kind": "Deployment"}}]),
        ("labels", [{"pairs": {"a": "b"}, "includeSelectors": True}]),
    ],
)
def test_unsupported_kustomize_features_are_refused(base: Path, field: str, value: object) -> None:
    spec = yaml.safe_load((base / "kustomization.yaml").read_text())
    spec[field] = value
    (base / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(KustomizeError):
        build(base)


def test_generators_need_stable_names(base: Path) -> None:
    spec = yaml.safe_load((base / "kustomization.yaml").read_text())
    del spec["generatorOptions"]
    (base / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(KustomizeError, match="disableNameSuffixHash"):
        build(base)


def test_files_outside_the_kustomization_are_refused(base: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("a: 1\n")
    spec = yaml.safe_load((base / "kustomization.yaml").read_text())
    spec["configMapGenerator"].append({"name": "catalog", "files": ["../outside.yaml"]})
    (base / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(KustomizeError, match="inside"):
        build(base)
