// Usage charts on uPlot (vendored, see VENDORED.md): a daily time series and bar charts by model or provider.
// Each chart also gets a plain data table for screen readers and for copying numbers.

import uPlot from "./uPlot.esm.js";
import { h, table, credits, int } from "./dom.js";

const charts = new Set();

function colors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return { text: v("--muted"), grid: v("--grid"), one: v("--chart-1"), two: v("--chart-2") };
}

function axis(c, extra = {}) {
  return { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, ...extra };
}

function widthOf(el) {
  return Math.max(260, Math.floor(el.getBoundingClientRect().width) - 8);
}

function mount(holder, make) {
  if (holder.dataset.points === "0") {
    holder.replaceChildren(h("p", { class: "empty", text: "No usage in this range." }));
    return null;
  }
  const build = () => {
    const c = colors();
    const plot = make(c, widthOf(holder));
    holder.replaceChildren(plot.root);
    return plot;
  };
  let plot = build();
  const entry = {
    holder,
    rebuild() {
      plot.destroy();
      plot = build();
    },
    resize() {
      plot.setSize({ width: widthOf(holder), height: 220 });
    },
  };
  charts.add(entry);
  return entry;
}

/** Rebuild charts after a theme change; forget the ones no longer on the page. */
export function refreshCharts() {
  for (const entry of charts) {
    if (!entry.holder.isConnected) charts.delete(entry);
    else entry.rebuild();
  }
}

let resizeTimer;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const entry of charts) if (entry.holder.isConnected) entry.resize();
  }, 150);
});

function section(title, description, holder, dataTable) {
  holder.setAttribute("role", "img");
  holder.setAttribute("aria-label", description);
  return h(
    "figure",
    { class: "panel chart-panel" },
    h("figcaption", {}, h("h2", { text: title })),
    holder,
    h("details", {}, h("summary", { text: "Show the numbers" }), dataTable),
  );
}

function days(since, until) {
  const out = [];
  const d = new Date(`${since}T00:00:00Z`);
  const end = new Date(`${until}T00:00:00Z`);
  while (d <= end && out.length < 1000) {
    out.push(d.toISOString().slice(0, 10));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

const fromZero = (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1];
const compact = (_u, ticks) => ticks.map((t) => (Math.abs(t) >= 1000 ? t.toExponential(1) : String(Number(t.toPrecision(3)))));

/** Requests and cost per day over `range` (YYYY-MM-DD, UTC): usage-summary rows, days without usage as zero. */
export function dailyChart(groups, range) {
  const byKey = new Map(groups.map((g) => [g.key, g]));
  const keys = days(range.since, range.until);
  const zero = { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_micro: 0 };
  const all = keys.map((k) => ({ key: k, ...zero, ...byKey.get(k) }));
  const rows = all.filter((g) => g.requests > 0);
  const xs = keys.map((k) => Date.parse(`${k}T00:00:00Z`) / 1000);
  const requests = all.map((g) => g.requests);
  const cost = all.map((g) => g.cost_micro / 1_000_000);
  const holder = h("div", { class: "chart", "data-chart": "day", "data-points": String(rows.length) });
  const total = requests.reduce((a, b) => a + b, 0);
  const description = rows.length
    ? `Requests and cost per day: ${int(total)} requests on ${rows.length} day(s) from ${range.since} to ${range.until}`
    : "Requests and cost per day: no usage in this range";
  const numbers = table(
    "Usage per day",
    [
      { label: "Day", value: (g) => g.key },
      { label: "Requests", value: (g) => int(g.requests), num: true },
      { label: "Tokens", value: (g) => int(g.prompt_tokens + g.completion_tokens), num: true },
      { label: "Cost", value: (g) => credits(g.cost_micro), num: true },
    ],
    rows,
  );
  const fig = section("Per day", description, holder, numbers);
  requestAnimationFrame(() =>
    mount(holder, (c, width) =>
      new uPlot(
        {
          width,
          height: 220,
          scales: { x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] }, y: { range: fromZero }, cost: { range: fromZero } },
          axes: [
            axis(c),
            axis(c, { label: "requests", values: compact }),
            axis(c, { scale: "cost", side: 1, label: "credits", values: compact, size: 70, grid: { show: false } }),
          ],
          series: [
            {},
            { label: "Requests", stroke: c.one, fill: `${c.one}55`, paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } },
            { label: "Cost (credits)", scale: "cost", stroke: c.two, width: 2, points: { show: true, size: 5 } },
          ],
          legend: { live: false },
        },
        [xs, requests, cost],
      ),
    ),
  );
  return fig;
}

/** A bar chart of cost and requests per category (model or provider). */
export function categoryChart(title, kind, groups) {
  const rows = [...groups].sort((a, b) => b.cost_micro - a.cost_micro || b.requests - a.requests);
  const labels = rows.map((g) => g.key || "(none)");
  const xs = rows.map((_, i) => i);
  const holder = h("div", { class: "chart", "data-chart": kind, "data-points": String(rows.length) });
  const description = rows.length
    ? `${title}: ${rows.map((g, i) => `${labels[i]} ${int(g.requests)} requests`).join(", ")}`
    : `${title}: no usage in this range`;
  const numbers = table(
    title,
    [
      { label: kind === "model" ? "Model" : "Provider", value: (g) => g.key || "(none)" },
      { label: "Requests", value: (g) => int(g.requests), num: true },
      { label: "Tokens", value: (g) => int(g.prompt_tokens + g.completion_tokens), num: true },
      { label: "Cost", value: (g) => credits(g.cost_micro), num: true },
    ],
    rows,
  );
  const fig = section(title, description, holder, numbers);
  requestAnimationFrame(() =>
    mount(holder, (c, width) =>
      new uPlot(
        {
          width,
          height: 220,
          scales: { x: { time: false, range: [-0.5, Math.max(rows.length - 0.5, 0.5)] }, y: { range: fromZero } },
          axes: [
            axis(c, { values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? labels[t] ?? "" : "")), splits: () => xs }),
            axis(c, { label: "requests", values: compact }),
          ],
          series: [
            {},
            {
              label: "Requests",
              stroke: c.one,
              fill: `${c.one}88`,
              paths: uPlot.paths.bars({ size: [0.6, 60] }),
              points: { show: false },
            },
          ],
          legend: { live: false },
        },
        [xs, rows.map((g) => g.requests)],
      ),
    ),
  );
  return fig;
}
