// The console's shell: sign-in, the page list, hash navigation, theme and sign-out.

import { ApiError, del, get, post, useSession } from "./api.js";
import { clear, h } from "./dom.js";
import { refreshCharts } from "./charts.js";
import * as user from "./user-pages.js";
import * as admin from "./admin-pages.js";

const PAGES = [
  { path: "overview", title: "Balance", render: user.overview },
  { path: "usage", title: "Usage", render: user.usage },
  { path: "byok", title: "Provider keys", render: user.byok },
  { path: "keys", title: "API keys", render: user.apiKeys },
  { path: "models", title: "Models", render: user.models },
  { path: "try", title: "Try it", render: user.tryIt },
  { path: "admin/users", title: "Users", render: admin.users, admin: true },
  { path: "admin/keys", title: "All API keys", render: admin.keys, admin: true },
  { path: "admin/health", title: "Provider health", render: admin.health, admin: true },
  { path: "admin/vault", title: "Vault and audit", render: admin.vault, admin: true },
];

const $ = (id) => document.getElementById(id);
let session = null;

// ---- theme: the system's unless the toggle chose one (the choice, not any secret, is kept in localStorage) ----

function theme() {
  const chosen = localStorage.getItem("tollgate-theme");
  if (chosen === "light" || chosen === "dark") return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function showTheme() {
  const dark = theme() === "dark";
  document.documentElement.dataset.theme = theme();
  $("theme").setAttribute("aria-pressed", String(dark));
  $("theme").textContent = dark ? "Light theme" : "Dark theme";
}

$("theme").addEventListener("click", () => {
  localStorage.setItem("tollgate-theme", theme() === "dark" ? "light" : "dark");
  showTheme();
  refreshCharts();
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  showTheme();
  refreshCharts();
});

// ---- sign-in and sign-out ----

function showSignIn(message = "") {
  session = null;
  useSession(null);
  $("nav").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
  clear($("page"));
  $("signin-view").hidden = false;
  $("signin-error").textContent = message;
  document.title = "Sign in · tollgate console";
  $("signin-key").focus();
}

function showShell(current) {
  session = current;
  useSession(current);
  $("signin-view").hidden = true;
  $("signin-error").textContent = "";
  const who = [h("span", { text: "Signed in as " }), h("strong", { text: current.user_id })];
  if (current.admin) who.push(" ", h("span", { class: "badge info", text: "admin" }));
  clear($("who"), who).hidden = false;
  $("signout").hidden = false;
  buildNav();
  $("nav").hidden = false;
  if (!location.hash) history.replaceState(null, "", "#/overview");
  route();
}

$("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("signin-key");
  const key = input.value.trim();
  input.value = "";
  const error = $("signin-error");
  if (!key) {
    error.textContent = "Enter your API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  if (!key.startsWith("tg-")) {
    error.textContent = "That is not a tollgate API key: they start with tg-.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  input.removeAttribute("aria-invalid");
  const button = event.submitter || $("signin").querySelector("button");
  button.disabled = true;
  error.textContent = "";
  try {
    showShell(await post("/console/session", { key }));
  } catch (err) {
    error.textContent = err instanceof ApiError ? err.message : "Signing in failed. Try again.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } finally {
    button.disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  try {
    await del("/console/session");
  } catch {
    // Ended already: nothing is left to end.
  }
  showSignIn("You are signed out.");
});

window.addEventListener("console:ended", () => {
  if (session) showSignIn("Your session has ended (it expired, or its key was revoked). Sign in again.");
});

// ---- pages ----

function buildNav() {
  const link = (p) => h("li", {}, h("a", { href: `#/${p.path}`, "data-page": p.path, text: p.title }));
  const groups = [h("div", { class: "group" }, h("h2", { text: "You" }), h("ul", {}, PAGES.filter((p) => !p.admin).map(link)))];
  if (session.admin) {
    groups.push(h("div", { class: "group" }, h("h2", { text: "Admin" }), h("ul", {}, PAGES.filter((p) => p.admin).map(link))));
  }
  clear($("nav"), groups);
}

let rendering = 0;

async function route() {
  if (!session) return;
  const wanted = location.hash.replace(/^#\/?/, "") || "overview";
  const page = PAGES.find((p) => p.path === wanted && (!p.admin || session.admin)) || PAGES[0];
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.dataset.page === page.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page.title} · tollgate console`;
  const target = h("section", { "aria-labelledby": "page-title", "data-page": page.path });
  target.append(h("h1", { id: "page-title", text: page.title }));
  clear($("page"), target);
  const mine = ++rendering;
  const focused = document.activeElement;
  try {
    await page.render(target, session);
  } catch (err) {
    if (mine !== rendering || !session) return;
    target.append(h("p", { class: "error", role: "alert", text: err instanceof ApiError ? err.message : "This page failed to load." }));
  }
  if (mine !== rendering) return;
  target.dataset.ready = "true";
  // Move to the new page for screen readers, unless the user has moved on meanwhile.
  if (document.activeElement === focused) $("main").focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);

// ---- start: resume the session if the cookie still holds one ----

showTheme();
try {
  showShell(await get("/console/session"));
} catch {
  showSignIn();
}
