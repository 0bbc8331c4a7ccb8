"""Render a kustomization offline: the subset of kustomize that tollgate's overlays use, and nothing more.

Supported: `resources` (files and directories holding a kustomization), `namespace`, `labels` (without
selectors), `images`, `replicas`, `patches` (strategic-merge patches from files: maps merge, lists of
named items merge by `name`, other lists are replaced, `$patch: delete` removes a resource) and
`configMapGenerator` / `secretGenerator` (`literals`, `files`, `envs`; behavior `create` or `merge`)
with `generatorOptions.disableNameSuffixHash: true`. Any other field is an error rather than silently
ignored, so an overlay that needs more of kustomize fails here instead of rendering wrongly. The output
is the same as `kustomize build` for that subset, and `kubectl apply -k` deploys the same directories.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not support, or is wrong."""


def build(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` would print, in order."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    options = spec.get("generatorOptions", {})
    if (spec.get("configMapGenerator") or spec.get("secretGenerator")) and options != {"disableNameSuffixHash": True}:
        raise KustomizeError(f"{kfile}: generators need generatorOptions: {{disableNameSuffixHash: true}}")

    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        resources.extend(build(path) if path.is_dir() else _load(path))
    for generator, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for gen in spec.get(generator, []):
            _generate(resources, directory, kind, gen)
    for patch in spec.get("patches", []):
        resources = _patch(resources, directory, patch)
    for image in spec.get("images", []):
        _set_image(resources, image)
    for replica in spec.get("replicas", []):
        _find(resources, "Deployment", replica["name"])["spec"]["replicas"] = int(replica["count"])
    for label in spec.get("labels", []):
        _label(resources, label)
    if "namespace" in spec:
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED:
                res.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return resources


def _load(path: Path) -> list[Resource]:
    if not path.is_file():
        raise KustomizeError(f"{path}: no such resource file")
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "name" not in doc.get("metadata", {}):
            raise KustomizeError(f"{path}: every document needs kind and metadata.name")
    return docs


def _find(resources: list[Resource], kind: str, name: str) -> Resource:
    for res in resources:
        if res["kind"] == kind and res["metadata"]["name"] == name:
            return res
    raise KustomizeError(f"no {kind} named {name}")


def _generate(resources: list[Resource], directory: Path, kind: str, gen: dict[str, Any]) -> None:
    unknown = set(gen) - {"name", "behavior", "literals", "files", "envs", "type"}
    if unknown:
        raise KustomizeError(f"{kind} generator {gen.get('name')}: unsupported fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for env in gen.get("envs", []):
        for line in (directory / env).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                data[key.strip()] = value
    for literal in gen.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    for entry in gen.get("files", []):
        key, _, source = entry.rpartition("=")
        path = directory / source
        if not path.resolve().is_relative_to(directory.resolve()):
            raise KustomizeError(f"{path}: kustomize only loads files inside the kustomization's directory")
        data[key or Path(source).name] = path.read_text()

    behavior = gen.get("behavior", "create")
    if behavior == "merge":
        existing = _find(resources, kind, gen["name"])
        if kind == "Secret":
            existing.setdefault("data", {}).update(_encode(data))
        else:
            existing.setdefault("data", {}).update(data)
        return
    if behavior != "create":
        raise KustomizeError(f"{kind} generator {gen['name']}: unsupported behavior {behavior}")
    res: Resource = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}}
    if kind == "Secret":
        res["type"] = gen.get("type", "Opaque")
        res["data"] = _encode(data)
    else:
        res["data"] = data
    resources.append(res)


def _encode(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}


def _patch(resources: list[Resource], directory: Path, patch: dict[str, Any]) -> list[Resource]:
    if set(patch) != {"path"}:
        raise KustomizeError(f"patch {patch}: only `path` (a strategic-merge patch file) is supported")
    out = resources
    for doc in _load(directory / patch["path"]):
        target = _find(out, doc["kind"], doc["metadata"]["name"])
        if doc.get("$patch") == "delete":
            out = [res for res in out if res is not target]
        else:
            merged = merge(target, doc)
            out = [merged if res is target else res for res in out]
    return out


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of `patch` into `base` for maps and lists of named items; other values replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _containers(res: Resource) -> list[dict[str, Any]]:
    if res["kind"] not in POD_TEMPLATE_KINDS:
        return []
    pod = res["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _set_image(resources: list[Resource], image: dict[str, str]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"image {image}: unsupported fields {sorted(unknown)}")
    for res in resources:
        for container in _containers(res):
            name, _, tag = container["image"].partition("@")[0].rpartition(":")
            if not name or "/" in tag:
                name, tag = container["image"], ""
            if name != image["name"]:
                continue
            new = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            else:
                container["image"] = f"{new}:{image.get('newTag', tag)}" if image.get("newTag", tag) else new


def _label(resources: list[Resource], label: dict[str, Any]) -> None:
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or label.get("includeSelectors", False):
        raise KustomizeError(f"labels {label}: only pairs and includeTemplates (no selectors) are supported")
    for res in resources:
        res.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
        if label.get("includeTemplates") and res["kind"] in POD_TEMPLATE_KINDS:
            template = res["spec"]["template"].setdefault("metadata", {})
            template.setdefault("labels", {}).update(label["pairs"])
