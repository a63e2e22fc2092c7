// The public HTTP API, with the key from this tab's session storage.
const KEY = "a3s.apiKey";
// The API's root is the page's parent: /console -> /, /stage/console -> /stage/.
const ROOT = new URL(".", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get unauthorized() {
    return this.status === 401 || this.status === 403;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function call(method, path, { query, body, signal } = {}) {
  const url = new URL(path.replace(/^\//, ""), ROOT);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  const headers = { Authorization: `Bearer ${key.get() || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, { method, headers, signal, cache: "no-store",
                              body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", `cannot reach the API: ${err.message}`);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const error = (data && data.error) || {};
    const message = error.message || (data && data.message) || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, error.code || "http_error", message);
  }
  return data;
}

const id = encodeURIComponent;
export const api = {
  sessions: (limit = 50) => call("GET", "/sessions", { query: { limit } }),
  session: (sessionId) => call("GET", `/sessions/${id(sessionId)}`),
  runs: (sessionId) => call("GET", "/runs", { query: { session_id: sessionId } }),
  run: (runId) => call("GET", `/runs/${id(runId)}`),
  events: (runId, after, waitMs, signal) =>
    call("GET", `/runs/${id(runId)}/events`, { query: { after, wait_ms: waitMs }, signal }),
  workflows: (sessionId) => call("GET", "/workflows", { query: { session_id: sessionId, limit: 50 } }),
  workflow: (workflowId) => call("GET", `/workflows/${id(workflowId)}`),
  steps: (workflowId) => call("GET", `/workflows/${id(workflowId)}/steps`),
  pendingTasks: (sessionId) => call("GET", `/sessions/${id(sessionId)}/external-tasks`),
  complete: (sessionId, taskId, body) =>
    call("POST", `/sessions/${id(sessionId)}/external-tasks/${id(taskId)}/complete`, { body }),
};
