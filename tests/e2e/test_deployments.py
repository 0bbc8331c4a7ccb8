"""Deployments through the openai SDK: weighted and lowest-latency spreading over fake deployments of different
latencies, provider preferences, and catalog reloads (under load, by the admin route, SIGHUP and the CLI; a bad
catalog refused and the old one kept). The suite runs on its own copy of tests/e2e/catalog_deployments.yaml."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.e2e.support import bearer, eventually, start_suite

TEMPLATE = Path(__file__).with_name("catalog_deployments.yaml")
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, Path]]:
    tmp = tmp_path_factory.mktemp("deployments")
    catalog = tmp / "catalog.yaml"
    shutil.copy(TEMPLATE, catalog)
    suite = start_suite(tmp, TOLLGATE_CATALOG=str(catalog))
    yield suite, catalog
    suite.stop()


@pytest.fixture(scope="module")
def keys(deployed: tuple[Suite, Path]) -> dict[str, str]:
    return deployed[0].bootstrap_keys()


@pytest.fixture(scope="module")
def sdk(deployed: tuple[Suite, Path], keys: dict[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=deployed[0].base_url, api_key=keys["demo_key"], max_retries=0, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def http(deployed: tuple[Suite, Path]) -> Iterator[httpx.Client]:
    suite = deployed[0]
    with httpx.Client(base_url=f"http://{suite.host}:{suite.ports.gateway}", timeout=30) as session:
        yield session


def answer(sdk: openai.OpenAI, model: str, **extra: Any) -> tuple[dict[str, Any], float]:
    began = time.monotonic()
    reply = sdk.chat.completions.create(model=model, messages=HI, extra_body=extra or None)  # type: ignore[arg-type]
    meta: dict[str, Any] = (reply.model_extra or {})["_metadata"]
    return meta, (time.monotonic() - began) * 1000


def write(catalog: Path, text: str) -> None:
    """Replace the file at once, as an operator's deploy tool would (a reader never sees half a file)."""
    fresh = catalog.with_suffix(".tmp")
    fresh.write_text(text)
    fresh.replace(catalog)


def reload(http: httpx.Client, keys: dict[str, str]) -> httpx.Response:
    return http.post("/v1/admin/catalog/reload", headers=bearer(keys["admin_key"]))


def model_ids(http: httpx.Client, keys: dict[str, str]) -> set[str]:
    listed = http.get("/v1/models", headers=bearer(keys["demo_key"]))
    assert listed.status_code == 200, listed.text
    return {m["id"] for m in listed.json()["data"]}


def test_weighted_spreads_by_weight_over_deployments_of_different_latency(sdk: openai.OpenAI) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: answer(sdk, "spread-weighted"), range(240)))
    seen = Counter(meta["deployment"] for meta, _ in answers)
    assert set(seen) == {"fast", "slow"}
    assert 0.65 <= seen["fast"] / 240 <= 0.85, seen  # weights 3:1
    assert {meta["region"] for meta, _ in answers if meta["deployment"] == "slow"} == {"us"}
    assert all(meta["model_used"] == "spread-weighted" and meta["fallbacks"] == 0 for meta, _ in answers)
    slow = sorted(ms for meta, ms in answers if meta["deployment"] == "slow")
    fast = sorted(ms for meta, ms in answers if meta["deployment"] == "fast")
    assert slow[len(slow) // 2] > fast[len(fast) // 2] + 25  # the slow one is measurably slower (40 ms upstream)


def test_lowest_latency_goes_to_the_fastest_deployment_once_measured(sdk: openai.OpenAI) -> None:
    picks = [answer(sdk, "spread-latency")[0]["deployment"] for _ in range(40)]
    assert picks.count("fast") >= 37, picks  # the slow one is tried at most while it is being measured
    assert picks[-20:] == ["fast"] * 20


def test_provider_preferences_steer_within_the_catalog_only(sdk: openai.OpenAI) -> None:
    for _ in range(6):
        assert answer(sdk, "spread-weighted", provider={"only": ["far"]})[0]["deployment"] == "slow"
        assert answer(sdk, "spread-weighted", provider={"ignore": ["far"]})[0]["deployment"] == "fast"
    assert answer(sdk, "spread-latency", provider={"order": ["far"]})[0]["deployment"] == "slow"
    assert answer(sdk, "spread-latency", provider={"sort": "latency"})[0]["deployment"] == "fast"
    for prefs, param in (
        ({"only": ["api.openai.com"]}, "provider.only"),
        ({"order": "near"}, "provider.order"),
        ({"base_url": "http://127.0.0.1:9/v1"}, "provider.base_url"),
        ({"sort": "random"}, "provider.sort"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            answer(sdk, "spread-weighted", provider=prefs)
        assert err.value.status_code == 400
        assert err.value.param == param, err.value.body
    with pytest.raises(openai.BadRequestError) as err:
        answer(sdk, "steady", provider={"only": ["far"]})
    assert "`steady`" in str(err.value)


def test_model_limits_are_in_the_model_list(http: httpx.Client, keys: dict[str, str]) -> None:
    data = {m["id"]: m for m in http.get("/v1/models", headers=bearer(keys["demo_key"])).json()["data"]}
    assert data["steady"]["limits"] == {"rpm": 600, "tpm": 60000}
    assert data["spread-weighted"]["limits"] == {"rpm": None, "tpm": None}
    assert [d["id"] for d in data["spread-weighted"]["deployments"]] == ["fast", "slow"]


def test_only_admins_reload(http: httpx.Client, keys: dict[str, str]) -> None:
    refused = http.post("/v1/admin/catalog/reload", headers=bearer(keys["demo_key"]))
    assert refused.status_code == 403, refused.text
    assert http.post("/v1/admin/catalog/reload").status_code == 401


def test_a_reload_under_load_drops_no_request(
    deployed: tuple[Suite, Path], sdk: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    suite, catalog = deployed
    original = TEMPLATE.read_text()
    # The other version: weights turned round, a slower slow deployment, and one more model.
    turned = (
        original.replace("weight: 3}", "weight: 1}")
        .replace("region: us, weight: 1}", "region: us, weight: 3}")
        .replace("slow-40", "slow-60")
        + "  - {id: fresh, provider: far, upstream: demo-echo, tier: FREE, capabilities: [chat]}\n"
    )
    stop = threading.Event()
    failures: list[str] = []
    served = Counter[str]()

    def client(number: int) -> None:
        model = ("steady", "spread-weighted", "spread-latency")[number % 3]
        while not stop.is_set():
            try:
                stream = number % 2 == 0
                if stream:
                    chunks = list(sdk.chat.completions.create(model=model, messages=HI, stream=True))  # type: ignore[arg-type]
                    assert chunks
                else:
                    assert sdk.chat.completions.create(model=model, messages=HI).choices  # type: ignore[arg-type]
                served[model] += 1
            except Exception as exc:  # every failure is counted and shown
                failures.append(f"{model}: {exc!r}")

    workers = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    reloads = 0
    try:
        ends = time.monotonic() + 4
        while time.monotonic() < ends:
            write(catalog, turned if reloads % 2 == 0 else original)
            if reloads % 3 == 2:
                os.kill(suite.processes["router"].pid, signal.SIGHUP)
            else:
                done = reload(http, keys)
                assert done.status_code == 200, done.text
                assert done.json()["changed"] is True or reloads % 3 == 0  # (a SIGHUP may still be under way)
            reloads += 1
            time.sleep(0.4)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not failures, failures[:5]
    assert reloads >= 8 and sum(served.values()) > 100, (reloads, served)
    write(catalog, turned)
    assert reload(http, keys).status_code == 200
    assert "fresh" in model_ids(http, keys)  # this gateway forgets its cached list on a reload
    assert answer(sdk, "fresh")[0]["provider_used"] == "far"
    seen = Counter(answer(sdk, "spread-weighted")[0]["deployment"] for _ in range(80))
    assert seen["slow"] > seen["fast"], seen  # the turned weights are in force
    log = (suite.log_dir / "router.log").read_text() if suite.log_dir else ""
    assert "catalog reloaded by SIGHUP" in log and "catalog reloaded by user " in log


def tollgate(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLGATE_ROUTER_ADDR": f"{suite.host}:{suite.ports.router}", **suite.operator_env()}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_bad_catalog_is_refused_naming_the_entry_and_the_old_one_kept(
    deployed: tuple[Suite, Path], sdk: openai.OpenAI, http: httpx.Client, keys: dict[str, str]
) -> None:
    suite, catalog = deployed
    write(catalog, TEMPLATE.read_text())
    assert reload(http, keys).status_code == 200
    before = model_ids(http, keys)
    bad = (
        TEMPLATE.read_text()
        .replace("weight: 3}", "weight: 0}")
        .replace("region: us, weight: 1}", "region: us, weight: 0}")
    )
    bad += "  - {id: newcomer, provider: near, upstream: demo-echo, tier: FREE, capabilities: [chat]}\n"
    write(catalog, bad)
    refused = reload(http, keys)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert "model spread-weighted: deployments: weights sum to zero" in error["message"]
    assert error["param"] == "catalog" and "kept" in error["message"]
    by_cli = tollgate(suite, "catalog", "reload")
    assert by_cli.returncode == 1 and "weights sum to zero" in by_cli.stderr, by_cli.stderr
    # nothing of the bad file is in force: the old models serve, the newcomer does not exist
    assert model_ids(http, keys) == before and "newcomer" not in before
    assert answer(sdk, "spread-weighted")[0]["model_used"] == "spread-weighted"
    with pytest.raises(openai.NotFoundError):
        answer(sdk, "newcomer")
    write(catalog, TEMPLATE.read_text())
    fixed = tollgate(suite, "catalog", "reload", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert '"models": 3' in fixed.stdout
    eventually(lambda: model_ids(http, keys) == before, "the model list follows the reload")
