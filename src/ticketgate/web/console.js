// The operator console: sign in (role admin), a live table of events refreshed every two
// seconds, a chart of queue depth and admissions drawn from the samples this page took over
// the last 15 minutes (kept in sessionStorage, so a reload keeps the chart), and the admin
// API's pause / resume / close / open / sold-out actions behind a confirmation dialog.
import {
  clock,
  duration,
  gatewayBase,
  number,
  pageConfig,
  signIn,
  signOut,
  signedIn,
  text,
  useToken,
} from "./format.js";

const config = pageConfig();
const strings = config.strings;
const lang = config.lang;
const base = gatewayBase("");
const REFRESH_MS = 2000;
const WINDOW_MS = 15 * 60 * 1000;
const HISTORY_KEY = "ticketgate:console:history";
const SVG = "http://www.w3.org/2000/svg";

/** @param {string} key @param {Record<string, string | number>} [values] */
const t = (key, values) => text(strings, key, values);
/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * @typedef {object} EventRow
 * @property {string} event_id
 * @property {number} waiting
 * @property {number} admitted_last_minute
 * @property {number} tail_eta_sec
 * @property {number} oldest_wait_sec
 * @property {string} [state]  open, paused, closed or sold_out
 * @property {{paused: boolean, closed: boolean, sold_out?: boolean}} settings
 *
 * @typedef {{at: number, waiting: number, admitted: number}} Sample
 */

/** @type {Sample[]} */
let history = [];
try {
  history = JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? "[]");
} catch {
  history = [];
}
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;

/** @param {string} path @param {RequestInit} [init] */
async function api(path, init = {}) {
  const response = await fetch(`${base}${path}`, {
    ...init,
    headers: {
      Authorization: `Bearer ${signedIn()}`,
      ...(init.body ? { "Content-Type": "application/json" } : {}),
    },
    cache: "no-store",
    credentials: "omit",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error?.code ?? `HTTP_${response.status}`);
    error.name = String(response.status);
    throw error;
  }
  return body;
}

/** @param {EventRow} row */
function stateOf(row) {
  if (row.state) return row.state;
  if (row.settings.sold_out) return "sold_out";
  if (row.settings.closed) return "closed";
  return row.settings.paused ? "paused" : "open";
}

/** @param {string} why */
function askSignIn(why) {
  clearTimeout(timer);
  $("live-view").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = why;
  // Without the gateway's own accounts (an external identity provider) only a token works.
  $("signin-form").hidden = !config.accounts;
  const details = /** @type {HTMLDetailsElement} */ ($("token-details"));
  if (!config.accounts) details.open = true;
  $(config.accounts ? "username" : "bearer").focus();
}

async function refresh() {
  clearTimeout(timer);
  let rows;
  try {
    rows = /** @type {{events: EventRow[]}} */ (await api("/api/v1/admin/events?limit=50")).events;
  } catch (error) {
    const code = error instanceof Error ? error.message : String(error);
    if (code === "FORBIDDEN") return askSignIn(t("not_admin"));
    if (code.startsWith("MISSING_") || code.startsWith("INVALID_TOKEN")) {
      const rejected = signedIn() ? t("token_rejected") : "";
      signOut();
      return askSignIn(rejected);
    }
    $("notice").textContent = t("error_generic", { code });
    timer = setTimeout(refresh, REFRESH_MS * 2);
    return;
  }
  $("notice").textContent = "";
  $("signin").hidden = true;
  $("live-view").hidden = false;
  const now = Date.now();
  history.push({
    at: now,
    waiting: rows.reduce((sum, row) => sum + row.waiting, 0),
    admitted: rows.reduce((sum, row) => sum + row.admitted_last_minute, 0),
  });
  history = history.filter((sample) => sample.at >= now - WINDOW_MS);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(history));
  renderTable(rows);
  drawChart(now);
  $("updated").textContent = t("updated", { time: clock(lang, new Date(now)) });
  timer = setTimeout(refresh, REFRESH_MS);
}

/** @param {EventRow[]} rows */
function renderTable(rows) {
  const body = /** @type {HTMLTableSectionElement} */ ($("events"));
  // Keep the row (and so the focused button) of each event across refreshes.
  /** @type {Map<string, HTMLTableRowElement>} */
  const existing = new Map();
  for (const tr of body.querySelectorAll("tr[data-event]")) {
    existing.set(/** @type {HTMLElement} */ (tr).dataset.event ?? "", /** @type {any} */ (tr));
  }
  body.querySelector("tr.empty")?.remove();
  if (rows.length === 0) {
    body.replaceChildren();
    const tr = body.insertRow();
    tr.className = "empty";
    const cell = tr.insertCell();
    cell.colSpan = 7;
    cell.textContent = t("console_empty");
    return;
  }
  const seen = new Set();
  for (const row of rows) {
    seen.add(row.event_id);
    let tr = existing.get(row.event_id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.event = row.event_id;
      const head = document.createElement("th");
      head.scope = "row";
      head.textContent = row.event_id;
      tr.append(head);
      for (let i = 0; i < 5; i += 1) tr.insertCell();
      tr.insertCell().append(Object.assign(document.createElement("div"), { className: "actions" }));
      for (const cell of [...tr.cells].slice(2, 6)) cell.className = "num";
    }
    body.append(tr); // in the server's order
    const state = stateOf(row);
    const cells = tr.cells;
    cells[1].textContent = t(`name_${state}`);
    cells[1].dataset.state = state;
    cells[2].textContent = number(lang, row.waiting);
    cells[3].textContent = number(lang, row.admitted_last_minute);
    cells[4].textContent = row.waiting ? duration(strings, row.tail_eta_sec, true) : "–";
    cells[5].textContent = row.waiting ? duration(strings, row.oldest_wait_sec, true) : "–";
    renderActions(/** @type {HTMLElement} */ (cells[6].firstElementChild), row);
  }
  for (const [id, tr] of existing) if (!seen.has(id)) tr.remove();
}

/** @param {HTMLElement} cell @param {EventRow} row */
function renderActions(cell, row) {
  /** @type {[string, object][]} */
  const wanted = [
    row.settings.paused ? ["resume", { paused: false }] : ["pause", { paused: true }],
    row.settings.closed ? ["open", { closed: false }] : ["close", { closed: true }],
  ];
  wanted.push(
    row.settings.sold_out ? ["on_sale", { sold_out: false }] : ["sold_out", { sold_out: true }],
  );
  const signature = wanted.map(([name]) => name).join(",");
  if (cell.dataset.signature === signature) return;
  cell.dataset.signature = signature;
  const focused = cell.contains(document.activeElement)
    ? /** @type {HTMLElement} */ (document.activeElement).dataset.action
    : null;
  cell.replaceChildren();
  for (const [name, patch] of wanted) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = name === "sold_out" ? "danger small" : "secondary small";
    button.dataset.action = name;
    button.textContent = t(`action_${name}`);
    button.setAttribute("aria-label", `${t(`action_${name}`)} ${row.event_id}`);
    button.addEventListener("click", () => act(row.event_id, name, patch));
    cell.append(button);
  }
  if (focused) /** @type {HTMLElement | null} */ (cell.querySelector("button"))?.focus();
}

/** @param {string} eventId @param {string} name @param {object} patch */
async function act(eventId, name, patch) {
  const dialog = /** @type {HTMLDialogElement} */ ($("confirm"));
  const action = t(`action_${name}`);
  $("confirm-text").textContent = t("confirm_action", { action, event: eventId });
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
  const choice = await new Promise((resolve) =>
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }),
  );
  if (choice !== "ok") return;
  try {
    await api(`/api/v1/admin/events/${encodeURIComponent(eventId)}`, {
      method: "PATCH",
      body: JSON.stringify(patch),
    });
    $("notice").textContent = t("done_action", { action, event: eventId });
  } catch (error) {
    $("notice").textContent = t("error_generic", { code: String(error) });
  }
  refresh();
}

/** @param {number} now */
function drawChart(now) {
  const svg = $("chart");
  const width = 600;
  const height = 200;
  const top = Math.max(1, ...history.map((s) => Math.max(s.waiting, s.admitted)));
  // The samples this page has taken, at most 15 minutes of them, across the full width (a
  // freshly opened console would otherwise show its first seconds as a dot at the edge).
  const span = Math.min(WINDOW_MS, Math.max(20_000, now - (history[0]?.at ?? now)));
  const x = (/** @type {number} */ at) => ((at - (now - span)) / span) * width;
  const y = (/** @type {number} */ v) => height - 4 - (v / top) * (height - 8);
  svg.replaceChildren();
  for (const fraction of [0.25, 0.5, 0.75]) {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("class", "grid");
    line.setAttribute("x1", "0");
    line.setAttribute("x2", String(width));
    line.setAttribute("y1", String(y(top * fraction)));
    line.setAttribute("y2", String(y(top * fraction)));
    svg.append(line);
  }
  for (const [series, key] of [
    ["depth", "waiting"],
    ["admitted", "admitted"],
  ]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", `series ${series}`);
    const points = history.map(
      (s) => `${x(s.at).toFixed(1)},${y(/** @type {any} */ (s)[key]).toFixed(1)}`,
    );
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  $("chart-scale").textContent = `${t("chart_scale", { n: number(lang, top) })} · ${t(
    "chart_span",
    { n: span < 60_000 ? t("seconds", { n: Math.round(span / 1000) }) : duration(strings, span / 1000) },
  )}`;
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = /** @type {HTMLInputElement} */ ($("username")).value.trim();
  const password = /** @type {HTMLInputElement} */ ($("password")).value;
  try {
    await signIn(base, username, password, false);
  } catch (error) {
    const code = error instanceof Error ? error.message : String(error);
    $("signin-error").textContent = t(
      code === "INVALID_CREDENTIALS" ? "signin_failed" : "error_generic",
      { code },
    );
    return;
  }
  /** @type {HTMLInputElement} */ ($("password")).value = "";
  refresh();
});
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = /** @type {HTMLInputElement} */ ($("bearer"));
  useToken(field.value.trim().replace(/^Bearer\s+/i, ""));
  field.value = "";
  refresh();
});
$("signout").addEventListener("click", () => {
  signOut();
  askSignIn("");
});

if (signedIn()) refresh();
else askSignIn("");
