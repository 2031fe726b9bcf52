// Shared by the waiting page and the console: the page's configuration, its catalogue's
// strings, number and duration formatting, and sign-in with the gateway's own accounts.

/**
 * @typedef {object} PageConfig
 * @property {string} lang  "en" or "ko"
 * @property {boolean} accounts  the gateway's own accounts are on (sign-in offered)
 * @property {Record<string, string>} strings  the catalogue of `lang`
 * @property {string} [event_id]
 * @property {string} [return_url]
 */

/** @returns {PageConfig} the JSON data block the server rendered into the page */
export function pageConfig() {
  const block = document.getElementById("tg-config");
  return JSON.parse(block?.textContent ?? "{}");
}

/**
 * A catalogue string with `{name}` placeholders filled in.
 * @param {Record<string, string>} strings
 * @param {string} key
 * @param {Record<string, string | number>} [values]
 */
export function text(strings, key, values = {}) {
  const template = strings[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/**
 * @param {string} lang
 * @param {number} value
 */
export function number(lang, value) {
  return new Intl.NumberFormat(lang === "ko" ? "ko-KR" : "en-US").format(value);
}

/**
 * A duration in words from the catalogue: "under a minute", "N min", "N h M min".
 * @param {Record<string, string>} strings
 * @param {number} seconds
 * @param {boolean} [short]  the console's compact form
 */
export function duration(strings, seconds, short = false) {
  if (seconds < 60) return text(strings, short ? "under_minute_short" : "under_minute");
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return text(strings, "minutes", { n: minutes });
  return text(strings, "hours", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

/**
 * @param {string} _lang
 * @param {Date} at
 */
export function clock(_lang, at) {
  return at.toLocaleTimeString("en-GB", { hour12: false }); // 24-hour hh:mm:ss in both
}

const TOKEN_KEY = "ticketgate:access_token";

/** The bearer token of the user signed in in this tab, if any. */
export function signedIn() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/**
 * Use a bearer token obtained elsewhere (an external identity provider's JWT).
 * @param {string} token
 */
export function useToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Sign in (or register, then sign in) with the gateway's own accounts.
 * @param {string} base  the gateway's base URL
 * @param {string} username
 * @param {string} password
 * @param {boolean} register
 * @returns {Promise<string>} the access token (kept in sessionStorage)
 */
export async function signIn(base, username, password, register) {
  const post = (/** @type {string} */ path) =>
    fetch(`${base}/api/v1/auth/${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
      credentials: "omit",
    });
  if (register) {
    const created = await post("register");
    if (!created.ok && created.status !== 409) throw new Error(await errorCode(created));
  }
  const response = await post("login");
  if (!response.ok) throw new Error(await errorCode(response));
  const { access_token: token } = await response.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

/** @param {Response} response */
async function errorCode(response) {
  try {
    return (await response.json()).error.code;
  } catch {
    return `HTTP_${response.status}`;
  }
}

/**
 * The gateway's base URL as seen from this page (works under a path prefix).
 * @param {string} root  relative path from the page to the gateway's root ("", "../")
 */
export function gatewayBase(root) {
  return new URL(root || "./", location.href).href.replace(/\/+$/, "");
}
