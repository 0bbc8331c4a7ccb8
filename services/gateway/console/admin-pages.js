// The pages an admin key adds: users and balances, every API key, provider health, the vault and its audit log.
// The gateway checks the admin scope on every one of these routes; hiding the pages is only for the eye.

import { del, get, post, qs } from "./api.js";
import {
  badge, busy, card, clear, confirmButton, credits, field, h, int, invalid, say, status, table, valid, when,
} from "./dom.js";

const AMOUNT = /^\d{1,12}(\.\d{1,6})?$/;
const USER_ID = /^[A-Za-z0-9_.@:+-]{1,200}$/;

// ---- users and balances ----

export async function users(root) {
  const out = status();
  const listBox = h("div");
  const user = h("input", { type: "text", list: "known-users", autocomplete: "off", required: true });
  const known = h("datalist", { id: "known-users" });
  const amount = h("input", { type: "text", inputmode: "decimal", required: true, placeholder: "10.00" });
  const reason = h("input", { type: "text", maxlength: "200", required: true });
  const grant = h("button", { type: "submit", text: "Grant credits" });
  const form = h(
    "form",
    { class: "inline panel", "aria-label": "Grant credits", novalidate: true },
    field("User", user),
    known,
    field("Amount (credits)", amount),
    field("Reason", reason, { grow: true }),
    grant,
  );
  root.append(form, out, listBox);

  const refresh = async () => {
    const keys = await get("/v1/admin/keys");
    const ids = [...new Set(keys.data.map((k) => k.user_id))].sort();
    clear(known, ids.map((id) => h("option", { value: id })));
    const balances = await Promise.all(ids.map((id) => get(`/v1/credits${qs({ user: id })}`)));
    const rows = balances.map((b) => ({ ...b, keys: keys.data.filter((k) => k.user_id === b.user_id && !k.revoked_at).length }));
    clear(
      listBox,
      table(
        "Users (everyone holding an API key)",
        [
          { label: "User", value: (u) => u.user_id },
          { label: "Active keys", value: (u) => int(u.keys), num: true },
          { label: "Balance", value: (u) => credits(u.balance), num: true },
          { label: "Reserved", value: (u) => credits(u.reserved), num: true },
          { label: "Available", value: (u) => credits(u.available), num: true },
          { label: "State", value: (u) => (u.low ? badge("low", "warn") : badge("ok", "ok")) },
          {
            label: "Actions",
            value: (u) =>
              h("button", {
                type: "button",
                class: "ghost small",
                text: "Grant…",
                "aria-label": `Grant credits to ${u.user_id}`,
                on: {
                  click: () => {
                    user.value = u.user_id;
                    amount.focus();
                  },
                },
              }),
          },
        ],
        rows,
        "no users yet.",
      ),
    );
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    valid(user, amount, reason);
    const who = user.value.trim();
    const much = amount.value.trim();
    if (!USER_ID.test(who)) return invalid(user, "Enter a user id (letters, digits and _ . @ : + -).", out);
    if (!AMOUNT.test(much) || Number(much) <= 0) return invalid(amount, "Enter a positive amount of credits, at most 6 decimals.", out);
    if (!reason.value.trim()) return invalid(reason, "Say why: the reason is kept in the ledger.", out);
    await busy(grant, async () => {
      try {
        const reply = await post(
          "/v1/admin/credits",
          { user_id: who, amount: much, reason: reason.value.trim(), kind: "grant" },
          { headers: { "Idempotency-Key": crypto.randomUUID() } },
        );
        say(out, `Granted ${credits(much)} credits to ${who}: balance now ${credits(reply.balance)}.`, "note");
        amount.value = "";
        reason.value = "";
        await refresh();
      } catch (err) {
        say(out, err.message, "error");
      }
    });
  });
  await refresh();
}

// ---- every API key ----

export async function keys(root) {
  const out = status();
  const once = h("div", { "aria-live": "polite" });
  const listBox = h("div");
  const user = h("input", { type: "text", required: true, autocomplete: "off" });
  const name = h("input", { type: "text", maxlength: "200" });
  const admin = h("input", { type: "checkbox" });
  const days = h("input", { type: "number", min: "1", max: "3650", inputmode: "numeric" });
  const rpm = h("input", { type: "number", min: "0", inputmode: "numeric" });
  const create = h("button", { type: "submit", text: "Create key" });
  const filter = h("input", { type: "search", placeholder: "user id" });
  const form = h(
    "form",
    { class: "inline panel", "aria-label": "Create an API key", novalidate: true },
    field("User", user),
    field("Name", name),
    field("Expires in days", days, { hint: "empty: never" }),
    field("Requests per minute", rpm, { hint: "empty: the default" }),
    h("fieldset", {}, h("legend", { text: "Scope" }), h("label", {}, admin, " admin")),
    create,
  );
  root.append(form, out, once, h("div", { class: "row" }, field("Show keys of", filter)), listBox);

  const refresh = async () => {
    const reply = await get(`/v1/admin/keys${qs({ user: filter.value.trim() })}`);
    const rows = [...reply.data].sort((a, b) => b.created_at - a.created_at);
    clear(
      listBox,
      table(
        "Gateway API keys (masked)",
        [
          { label: "User", value: (k) => k.user_id },
          { label: "Name", value: (k) => k.name || "—" },
          { label: "Key", value: (k) => h("code", { text: k.prefix }) },
          { label: "Scopes", value: (k) => k.scopes.join(", ") },
          { label: "Created", value: (k) => when(k.created_at) },
          { label: "Last used", value: (k) => when(k.last_used_at) },
          { label: "Expires", value: (k) => (k.expires_at ? when(k.expires_at) : "never") },
          {
            label: "State",
            value: (k) =>
              k.revoked_at
                ? badge("revoked", "bad")
                : confirmButton(`Revoke`, "Confirm revoke", async () => {
                    try {
                      await del(`/v1/admin/keys/${encodeURIComponent(k.id)}`);
                      say(out, `Revoked ${k.prefix} (${k.user_id}). Its sessions end within seconds.`, "note");
                      await refresh();
                    } catch (err) {
                      say(out, err.message, "error");
                    }
                  }),
          },
        ],
        rows,
        "no keys.",
      ),
    );
  };

  let filterTimer;
  filter.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => refresh().catch((err) => say(out, err.message, "error")), 300);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    valid(user, days, rpm);
    const who = user.value.trim();
    if (!USER_ID.test(who)) return invalid(user, "Enter a user id (letters, digits and _ . @ : + -).", out);
    if (days.value && !(Number.isInteger(Number(days.value)) && Number(days.value) >= 1)) return invalid(days, "Days must be a whole number, 1 or more.", out);
    if (rpm.value && !(Number.isInteger(Number(rpm.value)) && Number(rpm.value) >= 0)) return invalid(rpm, "Requests per minute must be a whole number.", out);
    const body = { user_id: who, name: name.value.trim(), scopes: admin.checked ? ["user", "admin"] : ["user"] };
    if (days.value) body.expires_in_days = Number(days.value);
    if (rpm.value) body.rpm_limit = Number(rpm.value);
    await busy(create, async () => {
      try {
        const made = await post("/v1/admin/keys", body);
        showOnce(once, made);
        say(out, `Created ${made.prefix} for ${made.user_id}.`, "note");
        await refresh();
      } catch (err) {
        say(out, err.message, "error");
      }
    });
  });
  await refresh();
}

/** The new key, shown this once: it is in no later response, and leaves the page when dismissed. */
function showOnce(box, made) {
  const code = h("code", { "data-testid": "new-key", text: made.key });
  const copy = h("button", { type: "button", class: "ghost small", text: "Copy" });
  const done = h("button", { type: "button", class: "small", text: "I have stored it" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(made.key);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select it and copy";
    }
  });
  done.addEventListener("click", () => clear(box));
  clear(
    box,
    h(
      "div",
      { class: "once", role: "alert" },
      h("strong", { text: `The new key for ${made.user_id}, shown only now:` }),
      code,
      h("div", { class: "row" }, copy, done),
    ),
  );
  done.focus();
}

// ---- provider health ----

function stateBadge(state) {
  return badge(state, { healthy: "ok", degraded: "warn", down: "bad" }[state] || "info");
}

function ms(value) {
  return value ? int(Math.round(value)) : "—";
}

export async function health(root) {
  const out = status();
  const checkAll = h("button", { type: "button", text: "Check all now" });
  const overall = h("div", { class: "cards" });
  const listBox = h("div");
  root.append(h("div", { class: "row" }, checkAll), out, overall, listBox);

  const show = (reply) => {
    clear(overall, card("Overall", reply.status, h("div", {}, stateBadge(reply.status))), card("Providers", int(reply.providers.length)));
    const endpoints = reply.providers.flatMap((p) => p.endpoints.map((e) => ({ ...e, id: p.id })));
    clear(
      listBox,
      table(
        "Providers, best endpoint first",
        [
          { label: "Provider", value: (p) => p.id },
          { label: "State", value: (p) => stateBadge(p.state) },
          { label: "Latency (ms)", value: (p) => ms(p.latency_ms), num: true },
          { label: "p50", value: (p) => ms(p.p50_ms), num: true },
          { label: "p90", value: (p) => ms(p.p90_ms), num: true },
          { label: "p99", value: (p) => ms(p.p99_ms), num: true },
          { label: "Last checked", value: (p) => when(p.last_checked_unix_ms / 1000) },
          {
            label: "Actions",
            value: (p) =>
              h("button", {
                type: "button",
                class: "ghost small",
                text: "Check now",
                "aria-label": `Check ${p.id} now`,
                on: { click: (e) => check(e.currentTarget, [p.id]) },
              }),
          },
        ],
        reply.providers,
        "no providers.",
      ),
      h("h2", { text: "Endpoints" }),
      table(
        "Every endpoint",
        [
          { label: "Provider", value: (e) => e.id },
          { label: "Base URL", value: (e) => e.base_url, wrap: true },
          { label: "State", value: (e) => stateBadge(e.state) },
          { label: "Failures in a row", value: (e) => int(e.consecutive_failures), num: true },
          { label: "Ejected", value: (e) => (e.ejected ? `until ${when(e.ejected_until_unix_ms / 1000)}` : "no") },
          { label: "Last error", value: (e) => e.last_error || "—", wrap: true },
        ],
        endpoints,
      ),
    );
  };

  const check = (button, providers) =>
    busy(button, async () => {
      say(out, "Probing…", "status");
      try {
        const reply = await post("/v1/admin/providers/health/check", providers ? { providers } : {});
        show(reply);
        say(out, `Checked ${int(reply.checked)} endpoint(s) just now.`, "note");
      } catch (err) {
        say(out, err.message, "error");
      }
    });

  checkAll.addEventListener("click", () => check(checkAll, null));
  show(await get("/v1/providers/health"));
}

// ---- vault and audit log ----

export async function vault(root) {
  const status_ = await get("/v1/admin/vault/status");
  root.append(
    h("h2", { text: "Master keys" }),
    h("div", { class: "cards" }, card("Active version", String(status_.active_version)), card("Stored provider keys", int(status_.total))),
    table(
      "Master-key versions",
      [
        { label: "Version", value: (v) => v.version, num: true },
        { label: "Provider keys under it", value: (v) => int(v.rows), num: true },
        { label: "Active", value: (v) => (v.active ? badge("active", "ok") : "—") },
        { label: "In the key ring", value: (v) => (v.configured ? "yes" : badge("missing", "bad")) },
        { label: "Retired", value: (v) => (v.retired_at ? when(v.retired_at) : "—") },
      ],
      status_.versions,
    ),
  );
  const out = status();
  const who = h("input", { type: "search", placeholder: "every user" });
  const limit = h("select", {}, ["50", "100", "500"].map((n) => h("option", { value: n, text: n, selected: n === "100" })));
  const show = h("button", { type: "submit", text: "Show" });
  const form = h("form", { class: "inline", "aria-label": "Filter the audit log" }, field("User", who), field("Events", limit), show);
  const listBox = h("div");
  root.append(h("h2", { text: "Audit log" }), form, out, listBox);

  const refresh = async () => {
    const events = await get(`/v1/admin/audit${qs({ user: who.value.trim(), limit: limit.value })}`);
    clear(
      listBox,
      table(
        "Key-vault events, newest first (fingerprints only, never a key)",
        [
          { label: "When", value: (e) => when(e.at) },
          { label: "Actor", value: (e) => e.actor },
          { label: "Action", value: (e) => e.action },
          { label: "User", value: (e) => e.user_id || "—" },
          { label: "Key", value: (e) => e.key_id || "—" },
          { label: "Fingerprint", value: (e) => (e.fingerprint ? h("code", { text: e.fingerprint }) : "—") },
          { label: "Outcome", value: (e) => badge(e.outcome, e.outcome === "ok" ? "ok" : "bad") },
          { label: "Detail", value: (e) => e.detail || "—", wrap: true },
        ],
        events.data,
      ),
    );
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    valid(who);
    if (who.value.trim() && !USER_ID.test(who.value.trim())) return invalid(who, "That is not a user id.", out);
    await busy(show, () => refresh().catch((err) => say(out, err.message, "error")));
  });
  await refresh();
}
