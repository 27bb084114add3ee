// flashclaim.js: claim coupons from a flashclaim gateway the way a herd should.
// An ES module with no dependencies, served by the gateway at /h5/static/flashclaim.js.
//
// - One requestId per claim, kept across retries (and reloads: rememberedRequestId), so a
//   retry can never win a second coupon: the gateway answers it with the first answer.
// - A wait the server asks for (Retry-After, or a retryAfterMs field) is honoured.
// - 5xx answers and network errors are retried with exponential back-off and full jitter.
// - Business refusals (sold out, limits, not eligible, ...) and bad requests are final.
// - syncServerClock estimates the gateway's time from its public endpoint, corrected for
//   the round trip, so a countdown never trusts the device's clock.

const REQUEST_ID = /^[A-Za-z0-9_-]{8,64}$/;

/** A fresh requestId: 32 random hex characters. */
export function newRequestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The requestId of this browser's claim on a campaign, kept in storage that survives a
 * reload, so pressing again after a reload replays the same claim (and shows the same
 * coupon). forget() drops it (after REQUEST_MISMATCH: it was used for another account).
 */
export function rememberedRequestId(campaignId, storage = globalThis.localStorage) {
  const key = `flashclaim:requestId:${campaignId}`;
  let id = null;
  try {
    id = storage.getItem(key);
  } catch {
    // storage disabled: the id lives as long as the page
  }
  if (!id || !REQUEST_ID.test(id)) {
    id = newRequestId();
    try {
      storage.setItem(key, id);
    } catch {
      // as above
    }
  }
  return {
    id,
    forget() {
      try {
        storage.removeItem(key);
      } catch {
        // as above
      }
    },
  };
}

/** How long the server asked to wait, in ms: a retryAfterMs body field, else Retry-After. */
export function serverWaitMs(headers, body) {
  if (body && Number.isFinite(body.retryAfterMs) && body.retryAfterMs >= 0) {
    return body.retryAfterMs;
  }
  const header = headers && headers.get("Retry-After");
  return header && /^\s*\d+\s*$/.test(header) ? Number(header) * 1000 : null;
}

/**
 * How long to wait before retrying `answer` (attempt counts from 0), or null if the answer
 * is final: accepted, a business refusal, a bad request, or a server-asked wait longer
 * than maxWaitMs.
 */
export function retryDelayMs(answer, attempt, options = {}) {
  const { baseMs = 200, capMs = 5000, maxWaitMs = 10000, random = Math.random } = options;
  const { status, reason, retryAfterMs } = answer;
  // 429 is a pause, except a redeem-code lockout (CODE_LOCKED): that lasts minutes, a page
  // says so instead of retrying.
  const transient =
    status === 0 || status >= 500 || (status === 429 && reason !== "CODE_LOCKED");
  if (!transient && reason !== "NOT_STARTED") return null;
  if (retryAfterMs != null) {
    // a herd told the same wait would come back at the same instant: spread it a little
    return retryAfterMs <= maxWaitMs ? retryAfterMs + random() * baseMs : null;
  }
  if (!transient) return null; // NOT_STARTED without a wait: the page's countdown knows better
  return random() * Math.min(capMs, baseMs * 2 ** attempt); // full jitter
}

/**
 * Claim a coupon. Resolves to the gateway's answer ({code, reason, message, couponId?,
 * expiresAt?}) plus status (HTTP; 0 when the network failed), retryAfterMs and attempts.
 * Never rejects: a network failure is {status: 0, reason: "NETWORK_ERROR"}.
 *
 * token: the bearer token, or a function returning it (or a promise of it), asked before
 * every attempt so a refreshed token is used.
 */
export async function claimCoupon(options) {
  const {
    campaignId,
    requestId,
    deviceId,
    channel,
    token,
    baseUrl = "",
    maxAttempts = 6,
    deadlineMs = 20000,
    timeoutMs = 5000,
    onWait = () => {},
    fetch: fetchImpl = globalThis.fetch.bind(globalThis),
    sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now = () => performance.now(),
  } = options;
  if (!REQUEST_ID.test(requestId || "")) throw new TypeError("requestId: 8-64 of [A-Za-z0-9_-]");
  const body = JSON.stringify({ campaignId, requestId, deviceId, channel });
  const started = now();
  for (let attempt = 0; ; attempt++) {
    const bearer = typeof token === "function" ? await token() : token;
    const answer = await send(`${baseUrl}/api/coupon/issue`, body, bearer, timeoutMs, fetchImpl);
    answer.attempts = attempt + 1;
    const wait = retryDelayMs(answer, attempt, options);
    if (wait == null || attempt + 1 >= maxAttempts || now() - started + wait > deadlineMs) {
      return answer;
    }
    onWait(wait, answer);
    await sleep(wait);
  }
}

async function send(url, body, bearer, timeoutMs, fetchImpl) {
  const headers = { "Content-Type": "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetchImpl(url, {
      method: "POST",
      headers,
      body,
      signal: abort.signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      // not JSON (a proxy's error page): judged by its status alone
    }
    if (!data || typeof data.reason !== "string") {
      data = { code: -1, reason: "HTTP_ERROR", message: `HTTP ${response.status}` };
    }
    return { ...data, status: response.status, retryAfterMs: serverWaitMs(response.headers, data) };
  } catch (error) {
    const message = String((error && error.message) || error);
    return { code: -1, reason: "NETWORK_ERROR", message, status: 0, retryAfterMs: null };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The public view of a campaign (GET /api/campaigns/{id}/public): resolves to {status,
 * data, age} (data null unless status is 200; status 0 when the network failed).
 * cache: "no-store" to skip the browser's cache (clock samples), else "default".
 */
export async function fetchCampaign(campaignId, options = {}) {
  const { channel, baseUrl = "", cache = "default" } = options;
  const fetchImpl = options.fetch || globalThis.fetch.bind(globalThis);
  const query = channel ? `?channel=${encodeURIComponent(channel)}` : "";
  const url = `${baseUrl}/api/campaigns/${encodeURIComponent(campaignId)}/public${query}`;
  try {
    const response = await fetchImpl(url, { cache, credentials: "omit", referrerPolicy: "no-referrer" });
    const data = response.ok ? await response.json() : null;
    return { status: response.status, data, age: Number(response.headers.get("Age")) || 0 };
  } catch {
    return { status: 0, data: null, age: 0 };
  }
}

/**
 * Fetch the public view `samples` times and estimate the gateway's clock from the sample
 * with the shortest round trip: the server's time is taken to be read half way through.
 * Resolves to {answer (the last fetchCampaign result), serverNow (a function giving the
 * estimated server time in epoch ms, or null if no sample came back), rttMs}.
 * The estimate runs on performance.now(), a monotonic timer: changing the device's clock
 * does not move it.
 */
export async function syncServerClock(campaignId, options = {}) {
  const { samples = 3, now = () => performance.now() } = options;
  let best = null;
  let answer = null;
  for (let i = 0; i < samples; i++) {
    const sent = now();
    answer = await fetchCampaign(campaignId, { ...options, cache: "no-store" });
    const received = now();
    if (answer.status !== 200) break;
    const rtt = received - sent;
    const serverAtReceipt = answer.data.serverNowMs + answer.age * 1000 + rtt / 2;
    if (!best || rtt < best.rtt) best = { rtt, offset: serverAtReceipt - received };
  }
  return {
    answer,
    serverNow: best ? () => now() + best.offset : null,
    rttMs: best ? best.rtt : null,
  };
}
