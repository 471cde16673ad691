// The one way the console talks to the appliance: its public API, with the pasted key.

const KEY = "appliance.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

// An answer that is not a success, with the contract's code and a sentence for a person.
export class ApiFailure extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const HINTS = {
  AUTH_TOKEN_INVALID: "The API key is unknown, revoked or expired. Log in again with a valid key.",
  AUTH_TOKEN_MISSING: "No API key was sent. Log in again.",
};

export function explain(error, permission) {
  if (error instanceof ApiFailure) {
    if (error.code === "AUTHZ_PERMISSION_DENIED" && permission) {
      return `This key lacks the permission '${permission}' that this page needs. ${error.message}`;
    }
    return HINTS[error.code] ? `${HINTS[error.code]} (${error.code})` : `${error.message} (${error.code})`;
  }
  return `Something went wrong in the page: ${error && error.message ? error.message : error}`;
}

function headers(extra = {}) {
  const out = { ...extra };
  if (session.key) out.Authorization = `Bearer ${session.key}`;
  return out;
}

export async function send(method, path, { json, form, accept } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiFailure("NETWORK", `The appliance could not be reached (${error.message}).`);
  }
  if (!response.ok) throw await failureOf(response);
  return response;
}

export async function failureOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: described below */ }
  const error = body && body.error;
  if (error && error.code) return new ApiFailure(error.code, error.message || error.code, response.status);
  return new ApiFailure(`HTTP_${response.status}`, `The appliance answered ${response.status}.`, response.status);
}

// The `data` of an enveloped JSON answer.
export async function call(method, path, options) {
  const response = await send(method, path, options);
  const body = await response.json();
  return body.data;
}

export const get = (path) => call("GET", path);
export const post = (path, json) => call("POST", path, { json });

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== "") search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}
