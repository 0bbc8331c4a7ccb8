// The gateway's JSON routes, called with the session cookie and the session's CSRF token.
// The API key itself is never kept here: after sign-in only the HttpOnly cookie stands for it.

let csrf = "";

export function useSession(session) {
  csrf = session ? session.csrf_token : "";
}

export class ApiError extends Error {
  constructor(status, message, code = "", param = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/** The session ended (signed out elsewhere, expired, key revoked): the app goes back to sign-in. */
function ended(message) {
  window.dispatchEvent(new CustomEvent("console:ended", { detail: message }));
}

async function send(path, { method = "GET", body, headers = {}, signal } = {}) {
  const all = { Accept: "application/json", "X-CSRF-Token": csrf, ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  try {
    return await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway could not be reached. Check your connection and try again.");
  }
}

async function failure(response, path) {
  let message = `The gateway answered ${response.status} ${response.statusText}`.trim();
  let code = "";
  let param = "";
  try {
    const data = await response.json();
    if (data && data.error && typeof data.error.message === "string") {
      ({ message } = data.error);
      code = data.error.code || "";
      param = data.error.param || "";
    }
  } catch {
    // Not JSON (a proxy's page): keep the status line.
  }
  if (response.status === 401 && !path.startsWith("/console/session")) ended(message);
  return new ApiError(response.status, message, code, param);
}

export async function api(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw await failure(response, path);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, options) => api(path, options);
export const post = (path, body, options = {}) => api(path, { ...options, method: "POST", body });
export const del = (path, options = {}) => api(path, { ...options, method: "DELETE" });

/** POST a streaming completion; `onText` gets each piece of text as it arrives. Returns the response headers. */
export async function stream(path, body, onText, signal) {
  const response = await send(path, { method: "POST", body: { ...body, stream: true }, signal, headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw await failure(response, path);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let cut;
    while ((cut = buffered.indexOf("\n\n")) >= 0) {
      const frame = buffered.slice(0, cut);
      buffered = buffered.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return response.headers;
        const event = JSON.parse(data);
        if (event.error) throw new ApiError(502, event.error.message || "The provider failed", event.error.code);
        for (const choice of event.choices || []) {
          const text = (choice.delta && choice.delta.content) || choice.text || "";
          if (text) onText(text);
        }
      }
    }
  }
  return response.headers;
}

export function qs(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : "";
}
