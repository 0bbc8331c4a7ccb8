"""The catalog as clients see it: `ListModels` entries and OpenAI's model list with tollgate's extra fields."""

from __future__ import annotations

from typing import Any

import orjson

from services.router.catalog import Catalog
from services.router.health_view import HealthView
from services.router.normalize import model_list
from services.router.pricing import credits
from tollgate.router.v1 import router_pb2

# Catalog entries have no creation time of their own; a fixed one keeps the list stable across restarts.
CREATED = 1_700_000_000


def list_models(catalog: Catalog, health: HealthView) -> router_pb2.ListModelsReply:
    models = []
    entries: list[dict[str, Any]] = []
    for m in catalog.models.values():
        if not m.enabled:
            continue
        state = health.state(m.provider.name)
        capabilities = sorted(m.capabilities)
        models.append(
            router_pb2.Model(
                id=m.id,
                aliases=list(m.aliases),
                provider=m.provider.name,
                upstream=m.upstream,
                tier=m.tier,
                price=router_pb2.Price(
                    input_micro_per_1k=m.input_micro_per_1k,
                    output_micro_per_1k=m.output_micro_per_1k,
                    cache_read_micro_per_1k=m.cache_read_micro_per_1k,
                    cache_write_micro_per_1k=m.cache_write_micro_per_1k,
                    reasoning_micro_per_1k=m.reasoning_micro_per_1k,
                ),
                context_window=m.context_window,
                capabilities=capabilities,
                quality=m.quality,
                health=state,
                max_output_tokens=m.max_output_tokens or 0,
                free=m.free,
                byok=m.provider.byok,
                rpm=m.rpm,
                tpm=m.tpm,
            )
        )
        entries.append(
            {
                "id": m.id,
                "object": "model",
                "created": CREATED,
                "owned_by": m.provider.name,
                "aliases": list(m.aliases),
                "tier": m.tier,
                "price": {
                    "input": orjson.Fragment(credits(m.input_micro_per_1k)),
                    "output": orjson.Fragment(credits(m.output_micro_per_1k)),
                    **{
                        part: orjson.Fragment(credits(micro))
                        for part, micro in (
                            ("cache_read", m.cache_read_micro_per_1k),
                            ("cache_write", m.cache_write_micro_per_1k),
                            ("reasoning", m.reasoning_micro_per_1k),
                        )
                        if micro is not None
                    },
                    "unit": "credits per 1k tokens",
                },
                "context_window": m.context_window,
                "capabilities": capabilities,
                "byok": m.provider.byok,
                "responses": m.provider.responses,
                "quality": m.quality,
                "health": state,
                "limits": {"rpm": m.rpm or None, "tpm": m.tpm or None},
                "routing": m.routing,
                "deployments": [
                    {"id": d.id, "provider": d.provider.name, "region": d.region or None, "weight": d.weight}
                    for d in m.deployments
                ],
            }
        )
    return router_pb2.ListModelsReply(models=models, body=orjson.dumps(model_list(entries)))
