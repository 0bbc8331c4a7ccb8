// The pages every signed-in user has: balance, usage, provider keys, API keys, models and "try it".

import { ApiError, del, get, post, qs, stream } from "./api.js";
import { dailyChart, categoryChart } from "./charts.js";
import {
  badge, busy, card, clear, confirmButton, credits, day, field, h, int, invalid, say, status, table, valid, when,
} from "./dom.js";

// ---- balance ----

export async function overview(root) {
  const [balance, journal] = await Promise.all([get("/v1/credits"), get("/v1/credits/transactions?limit=200")]);
  const low = balance.low
    ? badge(`Low: under ${credits(balance.low_threshold)} credits`, "warn")
    : badge("OK", "ok");
  root.append(
    h(
      "div",
      { class: "cards", "data-testid": "balance" },
      card("Balance", credits(balance.balance)),
      card("Reserved", credits(balance.reserved)),
      card("Available", credits(balance.available), h("div", {}, low)),
      card("Tier", balance.tier || "—"),
    ),
  );
  if (balance.low) {
    root.append(h("p", { class: "panel", role: "note", text: "Your credits are running low: ask an admin for a top-up, or add your own provider key." }));
  }
  const topups = journal.data.filter((t) => t.amount_micro > 0 && t.kind !== "settle");
  root.append(
    h("h2", { text: "Top-ups" }),
    table(
      "Credits added to your account",
      [
        { label: "When", value: (t) => when(t.created_at) },
        { label: "Kind", value: (t) => t.kind },
        { label: "Amount", value: (t) => credits(t.amount), num: true },
        { label: "Reason", value: (t) => t.reason || "—", wrap: true },
      ],
      topups,
      "no top-ups yet.",
    ),
  );
}

// ---- usage: charts, recent requests, CSV ----

function defaultRange() {
  const until = new Date();
  const since = new Date(until.getTime() - 29 * 86400_000);
  return { since: day(since), until: day(until) };
}

function span(range) {
  // Whole days in UTC; `until` includes its day.
  const end = new Date(`${range.until}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1);
  return { since: `${range.since}T00:00:00`, until: end.toISOString().slice(0, 19) };
}

async function allUsage(range, limit = 10_000) {
  const rows = [];
  let before = "";
  while (rows.length < limit) {
    const page = await get(`/v1/usage${qs({ ...span(range), limit: 1000, before })}`);
    rows.push(...page.data);
    if (!page.has_more) break;
    before = page.next_before;
  }
  return rows;
}

const CSV_COLUMNS = [
  "created_at", "request_id", "model", "provider", "power_level", "status", "prompt_tokens", "completion_tokens",
  "cost", "latency_ms", "byok", "cache_hit", "fallback_count", "cache_read_tokens", "cache_write_tokens",
  "reasoning_tokens", "key_id", "end_user", "tags",
];

function csvValue(row, column) {
  if (column === "created_at") return new Date(row.created_at * 1000).toISOString();
  if (column === "tags") return Object.entries(row.tags || {}).map(([k, v]) => `${k}=${v}`).join(",");
  return row[column];
}

function csvCell(value) {
  const text = String(value ?? "");
  // Quote everything; neutralise leading formula characters for spreadsheet users.
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replaceAll('"', '""')}"`;
}

export function toCsv(rows) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const r of rows) {
    lines.push(CSV_COLUMNS.map((c) => csvCell(csvValue(r, c))).join(","));
  }
  return `${lines.join("\r\n")}\r\n`;
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const range = defaultRange();

export async function usage(root) {
  const since = h("input", { type: "date", value: range.since, required: true });
  const until = h("input", { type: "date", value: range.until, required: true });
  const apply = h("button", { type: "submit", text: "Show" });
  const exportCsv = h("button", { type: "button", class: "ghost", text: "Export CSV" });
  const out = status();
  const form = h("form", { class: "inline panel", "aria-label": "Date range" }, field("From", since), field("To", until), apply, exportCsv);
  const summary = h("div", { class: "cards", "data-testid": "usage-totals" });
  const chartsBox = h("div", { class: "charts" });
  const recent = h("div", { "data-testid": "recent" });
  root.append(form, out, summary, chartsBox, h("h2", { text: "Recent requests" }), recent);

  const check = () => {
    valid(since, until);
    if (!since.value) return invalid(since, "Choose a start date.", out);
    if (!until.value) return invalid(until, "Choose an end date.", out);
    if (since.value > until.value) return invalid(until, "The end date is before the start date.", out);
    range.since = since.value;
    range.until = until.value;
    return true;
  };

  const load = async () => {
    say(out, "Loading…", "status");
    const s = span(range);
    const [byDay, byModel, byProvider, rows] = await Promise.all([
      get(`/v1/usage/summary${qs({ group_by: "day", ...s })}`),
      get(`/v1/usage/summary${qs({ group_by: "model", ...s })}`),
      get(`/v1/usage/summary${qs({ group_by: "provider", ...s })}`),
      get(`/v1/usage${qs({ ...s, limit: 50 })}`),
    ]);
    const totals = byDay.data.reduce(
      (t, g) => ({ requests: t.requests + g.requests, tokens: t.tokens + g.prompt_tokens + g.completion_tokens, cost: t.cost + g.cost_micro }),
      { requests: 0, tokens: 0, cost: 0 },
    );
    clear(summary, card("Requests", int(totals.requests)), card("Tokens", int(totals.tokens)), card("Cost (credits)", credits(totals.cost)));
    clear(chartsBox, dailyChart(byDay.data, range), categoryChart("Per model", "model", byModel.data), categoryChart("Per provider", "provider", byProvider.data));
    clear(
      recent,
      table(
        "The latest 50 requests in this range",
        [
          { label: "When", value: (r) => when(r.created_at) },
          { label: "Model", value: (r) => r.model || "—" },
          { label: "Provider", value: (r) => r.provider || "—" },
          { label: "Prompt", value: (r) => int(r.prompt_tokens), num: true },
          { label: "Completion", value: (r) => int(r.completion_tokens), num: true },
          { label: "Cached", value: (r) => int(r.cache_read_tokens || 0), num: true },
          { label: "Reasoning", value: (r) => int(r.reasoning_tokens || 0), num: true },
          { label: "Cost", value: (r) => credits(r.cost), num: true },
          { label: "Latency (ms)", value: (r) => int(Math.round(r.latency_ms)), num: true },
          { label: "Status", value: (r) => badge(r.status + (r.byok ? " · own key" : "") + (r.cache_hit ? " · cache" : ""), r.status === "ok" ? "ok" : "bad") },
        ],
        rows.data,
        "no requests in this range.",
      ),
    );
    say(out, `Showing ${range.since} to ${range.until} (UTC).`, "status");
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!check()) return;
    await busy(apply, () => load().catch((err) => say(out, err.message, "error")));
  });
  exportCsv.addEventListener("click", async () => {
    if (!check()) return;
    await busy(exportCsv, async () => {
      try {
        const rows = await allUsage(range);
        download(`tollgate-usage-${range.since}-to-${range.until}.csv`, toCsv(rows), "text/csv");
        say(out, `Exported ${int(rows.length)} request(s).`, "note");
      } catch (err) {
        say(out, err.message, "error");
      }
    });
  });
  await load();
}

// ---- provider keys (BYOK) ----

async function providerIds() {
  const models = await get("/v1/models");
  return [...new Set(models.data.map((m) => m.owned_by))].sort();
}

export async function byok(root) {
  const listBox = h("div");
  const out = status();
  const provider = h("select", { required: true }, h("option", { value: "", text: "Choose a provider" }));
  const key = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true });
  const label = h("input", { type: "text", maxlength: "100" });
  const save = h("button", { type: "submit", text: "Add key" });
  const form = h(
    "form",
    { class: "inline panel", "aria-label": "Add a provider key", novalidate: true },
    field("Provider", provider),
    field("Provider API key", key, { grow: true, hint: "Stored encrypted; shown masked from now on." }),
    field("Label (optional)", label),
    save,
  );
  root.append(
    h("p", { class: "muted", text: "Requests to a provider you hold a key for use your key and are not charged in credits." }),
    form,
    out,
    listBox,
  );
  for (const id of await providerIds()) provider.append(h("option", { value: id, text: id }));

  const refresh = async () => {
    const keys = await get("/v1/byok/keys");
    clear(
      listBox,
      table(
        "Your provider keys",
        [
          { label: "Provider", value: (k) => k.provider },
          { label: "Key", value: (k) => h("code", { text: k.masked_key }) },
          { label: "Label", value: (k) => k.label || "—" },
          { label: "Added", value: (k) => when(k.created_at) },
          { label: "Last used", value: (k) => when(k.last_used_at) },
          {
            label: "Actions",
            value: (k) =>
              h(
                "span",
                { class: "row" },
                h("button", {
                  type: "button",
                  class: "ghost small",
                  text: "Test",
                  "aria-label": `Test the ${k.provider} key`,
                  on: { click: (e) => testKey(e.currentTarget, k.provider) },
                }),
                confirmButton("Delete", "Confirm delete", async () => {
                  try {
                    await del(`/v1/byok/keys/${encodeURIComponent(k.provider)}`);
                    say(out, `Deleted your ${k.provider} key.`, "note");
                    await refresh();
                  } catch (err) {
                    say(out, err.message, "error");
                  }
                }),
              ),
          },
        ],
        keys.data,
        "you have not added any.",
      ),
    );
  };

  const testKey = (button, id) =>
    busy(button, async () => {
      say(out, `Testing your ${id} key…`, "status");
      try {
        const result = await post(`/v1/byok/keys/${encodeURIComponent(id)}/test`, {});
        say(out, `${id}: ${result.message} (${result.model}).`, result.valid ? "note" : "error");
      } catch (err) {
        say(out, err.message, "error");
      }
    });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    valid(provider, key, label);
    const secret = key.value.trim();
    if (!provider.value) return invalid(provider, "Choose the provider this key is for.", out);
    if (!secret) return invalid(key, "Paste the provider's API key.", out);
    if (/\s/.test(secret) || secret.length < 8) return invalid(key, "That does not look like an API key (no spaces, at least 8 characters).", out);
    await busy(save, async () => {
      try {
        const saved = await post("/v1/byok/keys", { provider: provider.value, api_key: secret, label: label.value.trim() });
        key.value = "";
        label.value = "";
        say(out, `Saved your ${saved.provider} key (${saved.masked_key}).`, "note");
        await refresh();
      } catch (err) {
        if (err instanceof ApiError && err.param === "api_key") key.setAttribute("aria-invalid", "true");
        say(out, err.message, "error");
      }
    });
  });
  await refresh();
}

// ---- own API keys ----

export async function apiKeys(root) {
  const keys = await get("/v1/keys");
  root.append(
    h("p", { class: "muted", text: "Your gateway API keys, masked. An admin creates and revokes keys." }),
    table(
      "Your API keys",
      [
        { label: "Name", value: (k) => k.name || "—" },
        { label: "Key", value: (k) => h("code", { text: k.prefix }) },
        { label: "Scopes", value: (k) => k.scopes.join(", ") },
        { label: "Created", value: (k) => when(k.created_at) },
        { label: "Expires", value: (k) => (k.expires_at ? when(k.expires_at) : "never") },
        { label: "Last used", value: (k) => when(k.last_used_at) },
        {
          label: "State",
          value: (k) =>
            k.revoked_at ? badge("revoked", "bad") : k.current ? badge("this session", "info") : badge("active", "ok"),
        },
      ],
      keys.data,
    ),
  );
}

// ---- models ----

function healthBadge(state) {
  const kind = { healthy: "ok", degraded: "warn", down: "bad" }[state] || "info";
  return badge(state || "unknown", kind);
}

export async function models(root) {
  const [catalog, providers] = await Promise.all([get("/v1/models"), get("/v1/providers")]);
  const latency = Object.fromEntries(providers.data.map((p) => [p.id, p]));
  root.append(
    table(
      "The catalog, with live provider health",
      [
        { label: "Model", value: (m) => h("code", { text: m.id }) },
        { label: "Aliases", value: (m) => m.aliases.join(", ") || "—" },
        { label: "Provider", value: (m) => m.owned_by },
        { label: "Tier", value: (m) => m.tier },
        { label: "Input / 1k", value: (m) => credits(m.price.input), num: true },
        { label: "Output / 1k", value: (m) => credits(m.price.output), num: true },
        { label: "Context", value: (m) => int(m.context_window), num: true },
        { label: "Capabilities", value: (m) => m.capabilities.join(", "), wrap: true },
        { label: "Health", value: (m) => healthBadge(m.health) },
        { label: "p50 (ms)", value: (m) => (latency[m.owned_by] ? int(Math.round(latency[m.owned_by].p50_ms)) : "—"), num: true },
      ],
      catalog.data,
    ),
    h("p", { class: "muted", text: "Prices are in credits per 1,000 tokens." }),
  );
}

// ---- try it ----

export async function tryIt(root) {
  const catalog = await get("/v1/models");
  const chat = catalog.data.filter((m) => m.capabilities.includes("chat"));
  const model = h("select", {}, h("option", { value: "auto", text: "auto (the router chooses)" }), chat.map((m) => h("option", { value: m.id, text: `${m.id} · ${m.tier}` })));
  const prompt = h("textarea", { required: true, maxlength: "20000" });
  const maxTokens = h("input", { type: "number", min: "1", max: "4096", value: "256", inputmode: "numeric" });
  const send = h("button", { type: "submit", text: "Send" });
  const stop = h("button", { type: "button", class: "ghost", text: "Stop", disabled: true });
  const out = status();
  const answer = h("output", { class: "stream", "aria-live": "polite", "aria-label": "Answer", "data-testid": "answer" });
  const form = h(
    "form",
    { class: "panel", "aria-label": "Try a chat completion", novalidate: true },
    h("div", { class: "row" }, field("Model", model), field("Max tokens", maxTokens)),
    field("Message", prompt, { grow: true }),
    h("div", { class: "row" }, send, stop),
  );
  root.append(
    h("p", { class: "muted", text: "Streams a chat completion through the gateway, charged like any other request." }),
    form,
    out,
    answer,
  );
  let controller = null;
  stop.addEventListener("click", () => controller && controller.abort());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    valid(prompt, maxTokens);
    const text = prompt.value.trim();
    const max = Number(maxTokens.value);
    if (!text) return invalid(prompt, "Write a message first.", out);
    if (!Number.isInteger(max) || max < 1 || max > 4096) return invalid(maxTokens, "Max tokens must be a whole number from 1 to 4096.", out);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    answer.textContent = "";
    say(out, "Streaming…", "status");
    try {
      const body = { messages: [{ role: "user", content: text }], max_tokens: max };
      if (model.value !== "auto") body.model = model.value;
      const headers = await stream("/v1/chat/completions", body, (piece) => answer.append(piece), controller.signal);
      const served = headers.get("x-tollgate-model");
      say(out, served ? `Done: served by ${served} (${headers.get("x-tollgate-provider")}).` : "Done.", "note");
    } catch (err) {
      say(out, err.name === "AbortError" ? "Stopped." : err.message, err.name === "AbortError" ? "status" : "error");
    } finally {
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
}
