"""The benchmark's printed tables: tollgate alone, and tollgate beside each peer (LiteLLM proxy, Portkey's
gateway) or its own embedded profile, as ratios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]
# How the tables name each target beside tollgate (the production profile).
TITLES = {"litellm": "LiteLLM proxy", "portkey": "Portkey's gateway", "embedded": "the embedded profile"}
NAMES = {"litellm": "LiteLLM", "portkey": "Portkey", "embedded": "embedded"}
ABBREV = {"tollgate": "tg", "litellm": "ll", "portkey": "pk", "embedded": "emb"}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows
    ]
    return "\n".join(lines)


def added(target: Result, direct: Result) -> dict[str, float | None]:
    """What the target adds over the upstream alone under the same load (ms)."""
    lat, base = target["latency_ms"], direct["latency_ms"]
    out: dict[str, float | None] = {
        "p50": lat["p50"] - base["p50"],
        "p90": lat["p90"] - base["p90"],
        "p99": lat["p99"] - base["p99"],
        "ttft_p50": None,
        "ttft_p99": None,
        "gap_mean": None,
        "gap_p99": None,
    }
    if "ttft_ms" in target and target.get("chunks_per_request"):
        out["ttft_p50"] = target["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"]
        out["ttft_p99"] = target["ttft_ms"]["p99"] - direct["ttft_ms"]["p99"]
        out["gap_mean"] = target["gap_ms"]["mean"] - direct["gap_ms"]["mean"]
        out["gap_p99"] = target["gap_ms"]["p99"] - direct["gap_ms"]["p99"]
    return out


def scenario_table(scenarios: Sequence[Result], target: str) -> str:
    header = [
        "scenario",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "req/s",
        "+p50 ms",
        "+p99 ms",
        "+TTFT p50",
        "+TTFT p99",
        "+gap ms",
        "CPU ms/req",
        "PG ms/req",
        "errors",
        "direct req/s",
    ]
    rows = []
    for s in scenarios:
        if target not in s:
            continue  # a scenario this target did not run (a peer that cannot stream)
        run, plus, direct = s[target], s[f"{target}_added"], s["direct"]
        rows.append(
            [
                s["name"],
                _fmt(run["latency_ms"]["p50"]),
                _fmt(run["latency_ms"]["p90"]),
                _fmt(run["latency_ms"]["p99"]),
                _fmt(run["rps"], 0),
                _fmt(plus["p50"]),
                _fmt(plus["p99"]),
                _fmt(plus["ttft_p50"]),
                _fmt(plus["ttft_p99"]),
                _fmt(plus["gap_mean"], 3),
                _fmt(run.get("cpu_ms_per_request")),
                _fmt(run.get("cpu_ms_external", {}).get("postgres")),
                str(run["errors"] + run["status_errors"]),
                _fmt(direct["rps"], 0),
            ]
        )
    return _table(header, rows)


def rss_table(rss: Mapping[str, Mapping[str, float]]) -> str:
    """RSS (MB) of every service of every target, at the end of its scenarios."""
    rows = [
        [target, *(f"{name} {mb:.0f}" for name, mb in services.items()), f"total {sum(services.values()):.0f}"]
        for target, services in rss.items()
    ]
    return "\n".join("RSS MB  " + "  ".join(r) for r in rows)


def idle_table(idle: Mapping[str, Mapping[str, float]]) -> str:
    """CPU (% of one core) of every service of every target with no traffic."""
    rows = [
        [target, *(f"{name} {pct:.2f}" for name, pct in services.items()), f"total {sum(services.values()):.2f}"]
        for target, services in idle.items()
    ]
    return "\n".join("idle CPU % of a core  " + "  ".join(r) for r in rows)


def _ratio(num: float | None, den: float | None, floor: float = 0.01) -> str:
    if num is None or den is None:
        return "-"
    return f"{max(num, floor) / max(den, floor):.1f}x"


def comparison_table(scenarios: Sequence[Result], ours: str = "tollgate", other: str = "litellm") -> str:
    """The other target's cost over ours: above 1x, ours is ahead by that factor. Scenarios one of the two
    did not run are left out."""
    a, b = ABBREV.get(ours, ours), ABBREV.get(other, other)
    header = [
        "scenario",
        f"+p50 {a}/{b} ms",
        f"+p50 {b}/{a}",
        f"+p99 {a}/{b} ms",
        f"+p99 {b}/{a}",
        f"req/s {a} / {b}",
        f"req/s {a}/{b}",
        f"+TTFT p50 {b}/{a}",
        f"CPU/req {b}/{a}",
        f"errors {a} / {b}",
    ]
    rows = []
    for s in scenarios:
        if ours not in s or other not in s:
            continue
        tg, ll = s[ours], s[other]
        tga, lla = s[f"{ours}_added"], s[f"{other}_added"]
        rows.append(
            [
                s["name"],
                f"{_fmt(tga['p50'])} / {_fmt(lla['p50'])}",
                _ratio(lla["p50"], tga["p50"]),
                f"{_fmt(tga['p99'])} / {_fmt(lla['p99'])}",
                _ratio(lla["p99"], tga["p99"]),
                f"{tg['rps']:.0f} / {ll['rps']:.0f}",
                _ratio(tg["rps"], ll["rps"]),
                _ratio(lla["ttft_p50"], tga["ttft_p50"]),
                _ratio(ll.get("cpu_ms_per_request"), tg.get("cpu_ms_per_request")),
                f"{tg['errors'] + tg['status_errors']} / {ll['errors'] + ll['status_errors']}",
            ]
        )
    return _table(header, rows)


def soak_summary(soak: Result) -> str:
    lines = [
        f"soak: {soak['load']['requests']} requests at concurrency {soak['concurrency']} in "
        f"{soak['load']['duration_s']:.0f}s ({soak['load']['rps']:.0f} req/s), "
        f"p50 {soak['load']['latency_ms']['p50']:.2f} ms, p99 {soak['load']['latency_ms']['p99']:.2f} ms, "
        f"errors {soak['load']['errors'] + soak['load']['status_errors']}",
    ]
    for name, row in soak["rss_mb"].items():
        lines.append(
            f"  {name:<10} RSS MB start {row['start']:.1f}  half {row['half']:.1f}  end {row['end']:.1f}  "
            f"growth over the second half {row['growth_pct']:+.1f}%"
        )
    return "\n".join(lines)


def capacity_summary(capacity: Mapping[str, Result]) -> str:
    """Throughput before p99 passes the limit, per target, and tollgate's multiple of LiteLLM's."""
    lines = [
        f"capacity (non-stream, 0 ms upstream, p99 <= {c['p99_limit_ms']:.0f} ms): {name} {c['rps']:.0f} req/s "
        f"at concurrency {c['concurrency']}"
        for name, c in capacity.items()
    ]
    for other in ("embedded", "litellm", "portkey"):
        if "tollgate" in capacity and other in capacity:
            ours, theirs = capacity["tollgate"]["rps"], capacity[other]["rps"]
            # A search that found nothing within the limit (p99 above it at concurrency 1) has no ratio.
            ratio = _ratio(ours, theirs) if ours and theirs else "- (one search found nothing within the limit)"
            lines.append(f"  tollgate / {NAMES[other]}: {ratio}")
    return "\n".join(lines)
