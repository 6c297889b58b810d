// The dashboard's one way to the service: the HTTP API, with the same bearer token as any
// client (kept for this tab only, in sessionStorage) and the mark X-Conveyor-Client: dashboard
// (a service started with --dashboard-read-only refuses changes that carry it).
const TOKEN_KEY = "conveyor.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json", "X-Conveyor-Client": "dashboard" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = answer.error ? answer.error.message : response.statusText;
    throw new ApiError(response.status, message);
  }
  return answer;
}

export const q = encodeURIComponent;
