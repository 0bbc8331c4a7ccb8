// Building the page without innerHTML: every text goes in as text, so nothing the server returns can run.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (name === "value") el.value = value;
    else if (name === "checked" || name === "disabled" || name === "hidden" || name === "selected") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let counter = 0;
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form control: `field("Amount", h("input", {...}))`. */
export function field(label, control, { grow = false, hint } = {}) {
  control.id = control.id || uid("f");
  const parts = [h("label", { for: control.id, text: label }), control];
  if (hint) {
    const id = uid("hint");
    control.setAttribute("aria-describedby", id);
    parts.push(h("small", { id, class: "muted", text: hint }));
  }
  return h("div", { class: grow ? "field grow" : "field" }, parts);
}

/** A table with a caption; `columns` are {label, value(row), num?, wrap?}. */
export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) {
    return h("div", { class: "table-wrap" }, h("p", { class: "empty", text: `${caption}: ${empty}` }));
  }
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : undefined, text: c.label })));
  const body = rows.map((row) =>
    h(
      "tr",
      {},
      columns.map((c) => {
        const value = c.value(row);
        const cls = [c.num ? "num" : "", c.wrap ? "wrap" : ""].join(" ").trim() || undefined;
        return h("td", { class: cls }, value instanceof Node ? value : String(value ?? ""));
      }),
    ),
  );
  return h("div", { class: "table-wrap" }, h("table", {}, h("caption", { text: caption }), h("thead", {}, head), h("tbody", {}, body)));
}

export function badge(text, kind = "info") {
  return h("span", { class: `badge ${kind}`, text });
}

export function card(label, value, extra) {
  return h("div", { class: "card" }, h("div", { class: "label", text: label }), h("div", { class: "value", text: value }), extra);
}

/** A live region for a form's outcome: `say(el, "Saved", "note")` or `say(el, err.message, "error")`. */
export function say(el, text, kind = "note") {
  el.className = kind === "error" ? "error" : kind === "note" ? "note" : "status";
  el.textContent = text;
}

export function status() {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

export function invalid(control, message, out) {
  control.setAttribute("aria-invalid", "true");
  control.focus();
  say(out, message, "error");
  return false;
}

export function valid(...controls) {
  for (const c of controls) c.removeAttribute("aria-invalid");
}

/** A button that asks for a second click before it acts. */
export function confirmButton(label, confirmLabel, action, cls = "danger small") {
  let armed = false;
  let timer;
  const button = h("button", { type: "button", class: cls, text: label });
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = confirmLabel;
      timer = setTimeout(() => {
        armed = false;
        button.textContent = label;
      }, 5000);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      armed = false;
      button.textContent = label;
    }
  });
  return button;
}

export async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

const MICRO = 1_000_000;
export function credits(value) {
  const n = typeof value === "number" ? value / MICRO : Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 6 });
}

export function int(n) {
  return Number(n || 0).toLocaleString();
}

export function when(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function day(date) {
  return date.toISOString().slice(0, 10);
}
