// ticketgate.js: the browser client of a ticketgate waiting room (an ES module, no
// dependencies). The gateway's own waiting page is built on it; a ticket site can import it
// from the gateway (`/ticketgate.js`) and drive the queue from its own origin (the gateway
// must list that origin in CORS_ALLOWED_ORIGINS).
//
//   import { WaitingRoom } from "https://gate.example/ticketgate.js";
//   const room = new WaitingRoom({ baseUrl: "https://gate.example", eventId: "evt_1" });
//   await room.join(getToken);                  // getToken: () => your site's bearer token
//   const stop = room.watch((update) => render(update));
//   // when update.status.ready_for_entry: const pass = await room.enter(getToken);
//   // room.leave() gives the place up (sendBeacon, so it also works while the page unloads)
//
// The waiting token is kept in sessionStorage, so a reload (same tab) keeps the place.

/**
 * @typedef {"open" | "paused" | "closed" | "sold_out"} EventState
 *
 * @typedef {object} QueueStatus
 * @property {"waiting" | "ready" | "admitted" | "expired"} status
 * @property {number} position  1 = at the head of the queue
 * @property {number | null} eta_sec  null while admissions are paused or the event is sold out
 * @property {number} eta_confidence  0 (a guess) to 1 (measured)
 * @property {number} waiting_time  seconds since joining
 * @property {boolean} ready_for_entry  enter() will be granted now
 * @property {number} poll_after_ms  when to ask again
 * @property {EventState} [event_state]
 * @property {{released: number, used: number, earmarked: number}} [frontier]
 *   the event's serving frontier: positions 1..earmarked may enter now
 *
 * @typedef {object} Update
 * @property {"status" | "reconnecting" | "lost" | "stopped"} kind
 *   status: a fresh answer; reconnecting: the gateway could not be reached or answered 503/429
 *   (the place is kept, the client retries); lost: the token is unknown or expired (join again);
 *   stopped: the event is sold out, nothing more will come
 * @property {QueueStatus} [status]
 * @property {Date} at  when this update was made
 * @property {number} [retryInMs]  reconnecting: when the next attempt is made
 * @property {TicketGateError} [error]
 *
 * @typedef {object} Place
 * @property {string} token  the waiting token
 * @property {number} startPosition  the position at join (for a progress bar)
 * @property {number} joinedAt  epoch ms
 *
 * @typedef {object} Admission
 * @property {string} reservation_token  single use, hand it to the booking API
 * @property {number} ttl_sec
 *
 * @typedef {() => (string | null | undefined | Promise<string | null | undefined>)} TokenSource
 *   returns the signed-in user's bearer token (a JWT), or nothing for an anonymous call
 */

/** An answer the gateway refused, with its error envelope's code and message. */
export class TicketGateError extends Error {
  /**
   * @param {number} status  HTTP status (0: the network failed)
   * @param {string} code  e.g. QUEUE_CLOSED, SOLD_OUT, ADMISSIONS_PAUSED, NETWORK
   * @param {string} message
   * @param {number | null} retryAfterSec  from Retry-After, when sent
   * @param {Record<string, any>} [body]  the whole answer: the envelope and the fields some
   *   errors carry beside it (DUPLICATE_REQUEST: the waiting_token already held)
   */
  constructor(status, code, message, retryAfterSec, body = {}) {
    super(message);
    this.name = "TicketGateError";
    this.status = status;
    this.code = code;
    this.retryAfterSec = retryAfterSec;
    this.body = body;
  }

  /** Worth retrying as it is: the network, a 503 or a 429. */
  get transient() {
    return this.status === 0 || this.status === 503 || this.status === 429;
  }
}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/**
 * A delay with ±20% jitter, so a crowd polling on the same hint spreads out.
 * @param {number} ms
 */
export function jitter(ms) {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

/**
 * The wait before attempt `attempt` (1, 2, ...) after failures: the server's Retry-After when
 * it sent one, else exponential from 1 s to 30 s, jittered.
 * @param {number} attempt
 * @param {number | null} retryAfterSec
 */
export function backoff(attempt, retryAfterSec) {
  if (retryAfterSec !== null && retryAfterSec >= 0) {
    return Math.max(250, retryAfterSec * 1000) + Math.round(Math.random() * 500);
  }
  return jitter(Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (attempt - 1)));
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class WaitingRoom {
  /**
   * @param {object} options
   * @param {string} options.eventId
   * @param {string} [options.baseUrl]  the gateway, e.g. "https://gate.example" (default: this page's origin)
   * @param {TokenSource} [options.getToken]  default token source for join and enter
   * @param {Storage} [options.storage]  where the place is kept (default sessionStorage)
   * @param {typeof fetch} [options.fetch]
   */
  constructor({ eventId, baseUrl = "", getToken, storage, fetch: fetcher }) {
    this.eventId = eventId;
    this.baseUrl = new URL(baseUrl || "/", globalThis.location?.href).href.replace(/\/+$/, "");
    this.getToken = getToken;
    this.storage = storage ?? globalThis.sessionStorage;
    this.fetch = fetcher ?? globalThis.fetch.bind(globalThis);
    this.key = `ticketgate:place:${eventId}`;
  }

  /** @returns {Place | null} the place kept from an earlier join (this tab) */
  get place() {
    try {
      const raw = this.storage?.getItem(this.key);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  /** @param {Place | null} place */
  set place(place) {
    if (place) {
      this.storage?.setItem(this.key, JSON.stringify(place));
    } else {
      this.storage?.removeItem(this.key);
      this.storage?.removeItem(`${this.key}:join`); // the next join is a new one
    }
  }

  /**
   * The Idempotency-Key of this tab's join: a join whose answer was lost (the network failed
   * after the gateway took it) is retried with the same key and gets the same place back,
   * instead of leaving a ghost waiter behind it.
   * @returns {string}
   */
  joinKey() {
    const name = `${this.key}:join`;
    let key = this.storage?.getItem(name);
    if (!key) {
      key = `join-${globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`}`;
      this.storage?.setItem(name, key);
    }
    return key;
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{ body?: unknown, token?: string | null, idempotencyKey?: string }} [options]
   * @returns {Promise<any>}
   */
  async request(method, path, { body, token, idempotencyKey } = {}) {
    /** @type {Record<string, string>} */
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    let response;
    try {
      response = await this.fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new TicketGateError(0, "NETWORK", String(error), null);
    }
    const text = await response.text();
    /** @type {any} */
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = {};
    }
    if (!response.ok) {
      const retry = Number.parseFloat(response.headers.get("Retry-After") ?? "");
      const error = data.error ?? {};
      throw new TicketGateError(
        response.status,
        error.code ?? `HTTP_${response.status}`,
        error.message ?? response.statusText,
        Number.isFinite(retry) ? retry : null,
        data,
      );
    }
    return data;
  }

  /**
   * @param {TokenSource | undefined} source
   * @returns {Promise<string | null>}
   */
  async token(source) {
    const get = source ?? this.getToken;
    return get ? ((await get()) ?? null) : null;
  }

  /**
   * Take a place in the queue, or keep the one this tab already holds. A signed-in user who
   * is already waiting (409 DUPLICATE_REQUEST, e.g. from another tab) gets that place back.
   * @param {TokenSource} [getToken]
   * @returns {Promise<Place>}
   */
  async join(getToken) {
    const kept = this.place;
    if (kept) return kept;
    const token = await this.token(getToken);
    let answer;
    try {
      answer = await this.request("POST", "/api/v1/queue/join", {
        body: { event_id: this.eventId },
        token,
        idempotencyKey: this.joinKey(),
      });
    } catch (error) {
      if (!(error instanceof TicketGateError) || error.code !== "DUPLICATE_REQUEST") {
        // Refused for good (closed, sold out, signed out): the next attempt is a new join.
        if (!(error instanceof TicketGateError) || !error.transient) {
          this.storage?.removeItem(`${this.key}:join`);
        }
        throw error;
      }
      answer = error.body;
    }
    const place = {
      token: answer.waiting_token,
      startPosition: Math.max(1, answer.position_hint ?? 1),
      joinedAt: Date.now(),
    };
    this.place = place;
    return place;
  }

  /** @returns {Promise<QueueStatus>} one status call (it is also the heartbeat) */
  async status() {
    const place = this.place;
    if (!place) throw new TicketGateError(404, "TOKEN_NOT_FOUND", "not in the queue", null);
    const path = `/api/v1/queue/status?token=${encodeURIComponent(place.token)}`;
    return this.request("GET", path);
  }

  /**
   * Poll status until stopped: every `poll_after_ms` (jittered) while it answers; with
   * backoff ("reconnecting") while the network or the gateway fails, keeping the place.
   * Stops by itself when the event is sold out, the place is lost, or the fan is admitted.
   * @param {(update: Update) => void} onUpdate
   * @returns {() => void} stop
   */
  watch(onUpdate) {
    let stopped = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    let failures = 0;
    const tick = async () => {
      if (stopped) return;
      let delay;
      try {
        const status = await this.status();
        failures = 0;
        if (stopped) return;
        onUpdate({ kind: "status", status, at: new Date() });
        if (status.event_state === "sold_out") {
          stopped = true;
          this.place = null;
          onUpdate({ kind: "stopped", status, at: new Date() });
          return;
        }
        if (status.status === "expired" || status.status === "admitted") {
          stopped = true;
          return;
        }
        delay = jitter(Math.max(250, status.poll_after_ms));
      } catch (caught) {
        if (stopped) return;
        const error =
          caught instanceof TicketGateError
            ? caught
            : new TicketGateError(0, "NETWORK", String(caught), null);
        if (error.status === 404 || error.status === 410) {
          stopped = true;
          this.place = null;
          onUpdate({ kind: "lost", error, at: new Date() });
          return;
        }
        failures += 1;
        delay = backoff(failures, error.retryAfterSec);
        onUpdate({ kind: "reconnecting", error, retryInMs: delay, at: new Date() });
      }
      timer = setTimeout(tick, delay);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /**
   * Go through the door: trade the waiting token for a single-use reservation token. Call it
   * when a status says `ready_for_entry`. A 429 (throttled) or 503 (paused, unavailable) is
   * retried after its Retry-After, with the same Idempotency-Key, until granted or refused
   * for good (the error is thrown then).
   * @param {TokenSource} [getToken]  the signed-in user's token (enter needs a user)
   * @param {{ signal?: AbortSignal, onRetry?: (error: TicketGateError, inMs: number) => void }} [options]
   * @returns {Promise<Admission>}
   */
  async enter(getToken, { signal, onRetry } = {}) {
    const place = this.place;
    if (!place) throw new TicketGateError(404, "TOKEN_NOT_FOUND", "not in the queue", null);
    const idempotencyKey = `enter-${place.token.slice(-40)}`;
    for (let attempt = 1; ; attempt += 1) {
      if (signal?.aborted) throw new TicketGateError(0, "ABORTED", "enter was cancelled", null);
      try {
        const token = await this.token(getToken);
        const admission = await this.request("POST", "/api/v1/queue/enter", {
          body: { waiting_token: place.token },
          token,
          idempotencyKey,
        });
        this.place = null;
        return admission;
      } catch (error) {
        if (!(error instanceof TicketGateError) || !error.transient) throw error;
        const wait = backoff(attempt, error.retryAfterSec);
        onRetry?.(error, wait);
        await sleep(wait);
      }
    }
  }

  /**
   * Give the place up. Uses navigator.sendBeacon (delivered even while the page unloads),
   * falling back to fetch with keepalive.
   * @returns {boolean} whether a leave was sent
   */
  leave() {
    const place = this.place;
    this.place = null;
    if (!place) return false;
    const url = `${this.baseUrl}/api/v1/queue/leave?token=${encodeURIComponent(place.token)}`;
    if (globalThis.navigator?.sendBeacon?.(url)) return true;
    this.fetch(url, { method: "DELETE", keepalive: true, credentials: "omit" }).catch(() => {});
    return true;
  }
}
