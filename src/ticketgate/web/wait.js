// The waiting-room page: sign in (with the gateway's own accounts), join, watch the place,
// go through the door when ready_for_entry, and hand the reservation token to return_url in
// the URL fragment. Built only on the public client in ticketgate.js.
import { WaitingRoom, TicketGateError, backoff } from "./ticketgate.js";
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
} from "./format.js";

const config = pageConfig();
const strings = config.strings;
const lang = config.lang;
const base = gatewayBase("../");
const room = new WaitingRoom({
  eventId: config.event_id ?? "",
  baseUrl: base,
  getToken: () => signedIn(),
});

/** @param {string} key @param {Record<string, string | number>} [values] */
const t = (key, values) => text(strings, key, values);
/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {(() => void) | null} */
let stopWatching = null;
/** @type {number | null} */
let lastPosition = null;
let entering = false;
let joinAttempts = 0;
/** after signing in, what to do: join, or retry the enter that needed a user
 * @type {() => unknown} */
let afterSignIn = join;

/** @param {"signin" | "queue" | "admitted" | "ended"} section @param {string} heading */
function show(section, heading) {
  for (const id of ["signin", "queue", "admitted", "ended"]) $(id).hidden = id !== section;
  const title = $("heading");
  if (title.textContent !== heading) {
    title.textContent = heading;
    if (document.activeElement && document.activeElement !== document.body) title.focus();
  }
}

/** @param {string} message */
function notice(message) {
  $("notice").textContent = message;
}

/** @param {string} message */
function announce(message) {
  $("live").textContent = message;
}

/** @param {string} state */
function setState(state) {
  const element = $("state");
  element.hidden = false;
  element.dataset.state = state;
  element.textContent = t(`state_${state}`);
}

/** @param {string} message @param {boolean} [canRejoin] */
function ended(message, canRejoin = true) {
  stopWatching?.();
  stopWatching = null;
  notice("");
  $("ended-body").textContent = message;
  $("rejoin").hidden = !canRejoin;
  show("ended", t("heading_ended"));
  announce(message);
}

function start() {
  if (room.place) {
    watch(); // a reload: the place is kept in sessionStorage
  } else if (config.accounts && !signedIn()) {
    askSignIn(join, "");
  } else {
    join();
  }
}

/** @param {() => unknown} then @param {string} why */
function askSignIn(then, why) {
  afterSignIn = then;
  $("signin-error").textContent = why;
  show("signin", t("signin_heading"));
  $("username").focus();
}

async function join() {
  clearFigures(); // a second join must not show the first place's numbers
  show("queue", t("heading_joining"));
  try {
    await room.join();
    joinAttempts = 0;
  } catch (error) {
    joinFailed(error);
    return;
  }
  watch();
}

/** @param {unknown} error */
function joinFailed(error) {
  if (!(error instanceof TicketGateError)) throw error;
  if (error.transient) {
    joinAttempts += 1;
    notice(t("reconnecting"));
    setTimeout(join, backoff(joinAttempts, error.retryAfterSec));
    return;
  }
  switch (error.code) {
    case "QUEUE_CLOSED":
      setState("closed");
      ended(t("closed_join"), false);
      break;
    case "SOLD_OUT":
      setState("sold_out");
      ended(t("state_sold_out"), false);
      break;
    case "EVENT_NOT_FOUND":
      ended(t("event_not_found"), false);
      break;
    case "ALREADY_ADMITTED":
      ended(t("already_admitted"), false);
      break;
    case "MISSING_AUTHORIZATION":
    case "INVALID_TOKEN":
    case "INVALID_TOKEN_FORMAT":
      signOut();
      askSignIn(join, t("signin_again"));
      break;
    default:
      ended(t("error_generic", { code: error.code }));
  }
}

function watch() {
  show("queue", t("heading_waiting"));
  stopWatching?.();
  stopWatching = room.watch(onUpdate);
}

/** @param {import("./ticketgate.js").Update} update */
function onUpdate(update) {
  if (update.kind === "reconnecting") {
    notice(t("reconnecting"));
    return;
  }
  notice("");
  if (update.kind === "lost") {
    ended(t("expired"));
    return;
  }
  if (update.kind === "stopped") {
    setState("sold_out");
    ended(t("state_sold_out"), false);
    return;
  }
  const status = /** @type {import("./ticketgate.js").QueueStatus} */ (update.status);
  if (status.status === "expired") {
    room.place = null;
    ended(t("expired"));
    return;
  }
  render(status, update.at);
  if (status.ready_for_entry && !entering) enter();
}

function clearFigures() {
  lastPosition = null;
  for (const id of ["position", "eta"]) $(id).textContent = "–";
  for (const id of ["ahead", "updated"]) $(id).textContent = "";
  /** @type {HTMLProgressElement} */ ($("progress")).value = 0;
}

/** @param {import("./ticketgate.js").QueueStatus} status @param {Date} at */
function render(status, at) {
  setState(status.event_state ?? "open");
  const position = status.position;
  $("position").textContent = number(lang, position);
  $("ahead").textContent =
    position <= 1
      ? t("ahead_none")
      : position === 2
        ? t("ahead_one")
        : t("ahead_many", { n: number(lang, position - 1) });
  const start = Math.max(room.place?.startPosition ?? position, position);
  const done = start <= 1 ? 100 : Math.round(((start - position) / (start - 1)) * 100);
  const progress = /** @type {HTMLProgressElement} */ ($("progress"));
  progress.value = Math.min(100, Math.max(0, done));
  progress.setAttribute("aria-valuetext", t("progress_text", { n: progress.value }));
  $("eta").textContent = eta(status);
  $("updated").textContent = t("updated", { time: clock(lang, at) });
  if (position !== lastPosition) {
    if (lastPosition !== null) flash($("position"));
    lastPosition = position;
    announce(t("announce", { n: number(lang, position), eta: $("eta").textContent ?? "" }));
  }
}

/** A moment's highlight when the place changes (no motion with prefers-reduced-motion).
 * @param {HTMLElement} element */
function flash(element) {
  element.classList.add("moved");
  setTimeout(() => element.classList.remove("moved"), 900);
}

/** The ETA as a range that narrows as the estimate's confidence grows.
 * @param {import("./ticketgate.js").QueueStatus} status */
function eta(status) {
  if (status.ready_for_entry) return t("eta_now");
  if (status.event_state === "paused") return t("eta_paused");
  if (status.eta_sec === null || status.eta_sec === undefined || status.eta_sec <= 0) {
    return t("eta_unknown");
  }
  const spread = 1 - Math.min(1, Math.max(0, status.eta_confidence));
  const low = duration(strings, status.eta_sec * (1 - 0.5 * spread));
  const high = duration(strings, status.eta_sec * (1 + spread));
  return low === high ? low : t("eta_range", { low, high });
}

async function enter() {
  entering = true;
  show("queue", t("ready"));
  announce(t("ready"));
  try {
    const admission = await room.enter(undefined, {
      onRetry: (error) =>
        notice(error.code === "ADMISSIONS_PAUSED" ? t("state_paused") : t("entry_retry")),
    });
    stopWatching?.();
    stopWatching = null;
    admitted(admission);
  } catch (error) {
    entering = false;
    if (!(error instanceof TicketGateError)) throw error;
    if (["MISSING_AUTHORIZATION", "INVALID_TOKEN", "INVALID_TOKEN_FORMAT"].includes(error.code)) {
      signOut();
      stopWatching?.();
      askSignIn(
        config.accounts ? () => (watch(), enter()) : () => watch(),
        t(config.accounts ? "signin_to_enter" : "signin_at_site"),
      );
    } else if (error.code === "SOLD_OUT") {
      stopWatching?.();
      room.place = null;
      setState("sold_out");
      ended(t("state_sold_out"), false);
    } else if (error.code === "ALREADY_ADMITTED") {
      stopWatching?.();
      room.place = null;
      ended(t("already_admitted"), false);
    } else if (error.code === "NOT_READY") {
      show("queue", t("heading_waiting"));
    } else if (error.code === "TOKEN_NOT_FOUND" || error.code === "TOKEN_EXPIRED") {
      room.place = null;
      ended(t("expired"));
    } else {
      ended(t("error_generic", { code: error.code }));
    }
  }
}

/** @param {import("./ticketgate.js").Admission} admission */
function admitted(admission) {
  notice("");
  if (config.return_url) {
    const fragment = new URLSearchParams({
      reservation_token: admission.reservation_token,
      ttl_sec: String(admission.ttl_sec),
      event_id: room.eventId,
    });
    announce(t("redirecting"));
    location.replace(`${config.return_url}#${fragment}`);
    return;
  }
  $("state").hidden = true;
  $("admitted-body").textContent = t("admitted_body", { n: admission.ttl_sec });
  $("reservation-token").textContent = admission.reservation_token;
  show("admitted", t("admitted_heading"));
  announce(t("admitted_heading"));
}

/** @param {boolean} register */
async function submitSignIn(register) {
  const form = /** @type {HTMLFormElement} */ ($("signin-form"));
  if (!form.reportValidity()) return;
  const username = /** @type {HTMLInputElement} */ ($("username")).value.trim();
  const password = /** @type {HTMLInputElement} */ ($("password")).value;
  $("signin-error").textContent = "";
  try {
    await signIn(base, username, password, register);
  } catch (error) {
    const code = error instanceof Error ? error.message : String(error);
    $("signin-error").textContent = t(
      code === "INVALID_CREDENTIALS" ? "signin_failed" : "error_generic",
      { code },
    );
    return;
  }
  /** @type {HTMLInputElement} */ ($("password")).value = "";
  afterSignIn();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitSignIn(false);
});
$("register-button").addEventListener("click", () => submitSignIn(true));
$("leave").addEventListener("click", () => {
  stopWatching?.();
  stopWatching = null;
  room.leave();
  lastPosition = null;
  ended(t("left"));
  $("rejoin").focus();
});
$("rejoin").addEventListener("click", () => {
  entering = false;
  if (config.accounts && !signedIn()) askSignIn(join, "");
  else join();
});

start();
