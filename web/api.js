// Talking to jetway: the token (sessionStorage only, never a URL), JSON calls that surface
// problem+json errors, and the WebSocket URL and subprotocols of a live tail.

const TOKEN_KEY = "jetway.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  const token = value.trim().replace(/^Bearer\s+/i, "");
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new CustomEvent("jetway:token"));
}

/// What a token says about itself (decoded, not verified: the gateway verifies).
export function describeToken(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/// An error answer of the gateway: the problem document's members, or a stand-in.
export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === "object" ? problem : {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.status = status;
    this.title = p.title || (status ? `HTTP ${status}` : "Gateway unreachable");
    this.detail = p.detail || (typeof problem === "string" ? problem : "");
    this.code = p.code || "";
    this.jetstreamCode = p.jetstream_code ?? null;
  }
}

/// Calls the API. State-changing calls always send `Content-Type: application/json` (a JSON
/// body, or none), so the gateway can tell them from cross-site form posts. Answers the parsed
/// JSON body (null for 204); throws ApiError.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (method !== "GET" && method !== "HEAD") {
    headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: "Gateway unreachable", detail: String(err.message || err) });
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("jetway:unauthorized", { detail: error }));
    throw error;
  }
  return parsed;
}

export const enc = encodeURIComponent;

/// The single-stream WebSocket of a live tail. The token travels as a subprotocol, never in the
/// query string.
export function tailSocket(stream, params) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/v1/streams/${enc(stream)}/ws?${new URLSearchParams(params)}`;
  const token = getToken();
  const protocols = token ? ["jetway.v1", `bearer.${token}`] : ["jetway.v1"];
  return new WebSocket(url, protocols);
}

/// The gateway's base URL, for commands a user copies.
export function baseUrl() {
  return location.origin;
}
