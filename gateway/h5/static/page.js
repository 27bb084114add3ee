// The H5 claim page: /h5/{campaignId}[?channel=partner]#token=…&device=…
// The app opens it in a webview and hands it the token in the fragment (never sent to a
// server); the page moves it into sessionStorage and strips it from the address bar.
// Or the app offers window.flashclaimBridge = {getToken(), login()}.
import { claimCoupon, fetchCampaign, newRequestId, rememberedRequestId, syncServerClock } from "./flashclaim.js";
import { STATUS_REASONS, describe } from "./screens.js";

const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const CAMPAIGN_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const POLL_MS = 10000;
const STOCK = {
  plenty: ["库存充足", "Plenty left"],
  few: ["即将抢光", "Only a few left"],
  none: ["已抢光", "None left"],
};
const REASON_STATUS = { SOLD_OUT: "sold_out", BUDGET_EXHAUSTED: "sold_out", ENDED: "ended", PAUSED: "paused" };

const el = (id) => document.getElementById(id);
const state = { campaign: null, serverNow: null, status: "loading", busy: false, over: false, shown: "" };
const handed = { token: null, device: null };
const campaignId = lastSegment(location.pathname);
const channel = new URLSearchParams(location.search).get("channel") || undefined;

function lastSegment(path) {
  try {
    return decodeURIComponent(path.split("/").pop() || "");
  } catch {
    return "";
  }
}

function read(storage, name) {
  try {
    return storage.getItem(`flashclaim:${name}`);
  } catch {
    return null;
  }
}

function keep(storage, name, value) {
  try {
    storage.setItem(`flashclaim:${name}`, value);
  } catch {
    // storage off: the value lives as long as the page
  }
}

// Take what the app put in the fragment, then remove it from the address bar (and so from
// history, bookmarks, shares and screenshots of the URL).
function takeHandoff() {
  if (!location.hash) return;
  const given = new URLSearchParams(location.hash.slice(1));
  history.replaceState(history.state, "", location.pathname + location.search);
  handed.token = given.get("token");
  if (handed.token) keep(sessionStorage, "token", handed.token);
  const device = given.get("device");
  if (device && DEVICE_ID.test(device)) keep(sessionStorage, "device", (handed.device = device));
}

async function bearer() {
  const bridge = window.flashclaimBridge;
  if (bridge && typeof bridge.getToken === "function") return (await bridge.getToken()) || null;
  return handed.token || read(sessionStorage, "token");
}

function deviceId() {
  let id = handed.device || read(sessionStorage, "device") || read(localStorage, "device");
  if (!id) keep(localStorage, "device", (id = `h5-${newRequestId()}`));
  return id;
}

function node(tag, text, lang) {
  const made = document.createElement(tag);
  made.textContent = text;
  if (lang) made.lang = lang;
  return made;
}

function bilingual(tag, zh, en) {
  const made = node(tag, `${zh} `);
  made.append(node("span", en, "en"));
  return made;
}

function showReason(reason, answer = null) {
  const [name, screen, zh, en] = describe(reason);
  const box = el("outcome");
  box.dataset.screen = name;
  box.dataset.reason = reason;
  box.replaceChildren(bilingual("h2", screen.zh, screen.en), node("p", zh), node("p", en, "en"));
  if (name === "success" && answer) {
    const facts = document.createElement("dl");
    facts.append(bilingual("dt", "券号", "Coupon"), node("dd", answer.couponId));
    facts.lastChild.id = "coupon-id";
    facts.append(bilingual("dt", "有效期至", "Valid until"), node("dd", expiry(answer.expiresAt)));
    facts.lastChild.id = "coupon-expiry";
    box.append(facts);
  }
  if (reason === "NOT_ELIGIBLE" && answer && CAMPAIGN_ID.test(answer.offer || "")) box.append(offerLink(answer.offer));
  const bridge = window.flashclaimBridge;
  if (name === "login" && bridge && typeof bridge.login === "function") {
    const login = bilingual("button", "去登录", "Log in");
    login.type = "button";
    login.addEventListener("click", () => bridge.login());
    box.append(login);
  }
  state.shown = name;
}

// "Holds A: offer B instead" (NOT_ELIGIBLE with an offer): a link to B's page, same channel.
// Same tab, same origin: the token and device the app handed over stay in sessionStorage.
function offerLink(offer) {
  const link = bilingual("a", "改领这张券", "Claim this one instead");
  link.id = "offer";
  link.href = `/h5/${encodeURIComponent(offer)}${location.search}`;
  return link;
}

function clearReason() {
  const box = el("outcome");
  box.replaceChildren();
  delete box.dataset.screen;
  delete box.dataset.reason;
  state.shown = "";
}

// "2026-11-18T00:00:00.000+08:00" -> "2026-11-18 00:00": the campaign's own time zone.
function expiry(iso) {
  return typeof iso === "string" && iso.length >= 16 ? iso.slice(0, 16).replace("T", " ") : "";
}

function setText(id, text) {
  el(id).textContent = text || "";
  el(id).hidden = !text;
}

function render(data) {
  state.campaign = data;
  const { page, ruleText } = data;
  document.title = page.title;
  el("title").textContent = page.title;
  setText("subtitle", page.subtitle);
  const image = el("image");
  image.hidden = !page.headerImageUrl;
  if (page.headerImageUrl && image.getAttribute("src") !== page.headerImageUrl) {
    image.referrerPolicy = "no-referrer";
    image.src = page.headerImageUrl;
  }
  el("rule-zh").textContent = (ruleText && ruleText.zh) || "";
  el("rule-en").textContent = (ruleText && ruleText.en) || "";
  el("rules").hidden = !ruleText;
  const [zh, en] = STOCK[data.stockLeft] || ["", ""];
  setText("stock", zh && `${zh} · ${en}`);
  setStatus(opened(data) ? "open" : data.status);
}

// Upcoming by the server's word when it answered, open by now on the server's clock.
function opened(data) {
  return data.status === "upcoming" && data.opensAtMs != null && state.serverNow() >= data.opensAtMs;
}

function setStatus(status) {
  state.status = status;
  document.body.dataset.status = status;
  if (!state.over) {
    const reason = STATUS_REASONS[status];
    if (reason) showReason(reason);
    else if (["sold_out", "ended", "paused"].includes(state.shown)) clearReason();
  }
  renderButton();
}

function renderButton() {
  const button = el("claim");
  button.disabled = state.busy || state.over || state.status !== "open";
  button.setAttribute("aria-busy", String(state.busy));
  const own = state.campaign && state.campaign.page.buttonText;
  if (state.busy) button.replaceChildren(bilingual("span", "抢券中…", "Claiming…"));
  else if (state.shown === "success") button.replaceChildren(bilingual("span", "已领取", "Claimed"));
  else if (own) button.textContent = own;
  else button.replaceChildren(bilingual("span", "立即领取", "Claim"));
}

function tick() {
  const data = state.campaign;
  const counting = data && state.status === "upcoming" && data.opensAtMs != null;
  el("countdown").hidden = !counting;
  if (counting) {
    const left = data.opensAtMs - state.serverNow();
    if (left <= 0) {
      setStatus("open");
      setTimeout(refresh, Math.random() * 1000); // fresh stock, the herd spread over a second
    } else {
      el("countdown-time").textContent = clockText(left);
    }
  }
  setTimeout(tick, 200);
}

function clockText(ms) {
  const total = Math.ceil(ms / 1000);
  const days = Math.floor(total / 86400);
  const two = (n) => String(n).padStart(2, "0");
  const hms = `${two(Math.floor(total / 3600) % 24)}:${two(Math.floor(total / 60) % 60)}:${two(total % 60)}`;
  return days > 0 ? `${days}天 ${hms}` : hms;
}

async function load() {
  const { answer, serverNow } = await syncServerClock(campaignId, { channel });
  if (answer.status === 200) {
    state.serverNow = serverNow;
    render(answer.data);
    return true;
  }
  if (answer.status === 404 || answer.status === 400) {
    state.over = true;
    showReason(answer.status === 404 ? "UNKNOWN_CAMPAIGN" : "INVALID_REQUEST");
    return false;
  }
  showReason(answer.status === 0 ? "NETWORK_ERROR" : "UNAVAILABLE");
  await new Promise((resolve) => setTimeout(resolve, 2000 + Math.random() * 3000));
  return load();
}

// The page reports its own view once (POST /api/exposures; a fresh batchId, so a retry by
// the browser counts once); nothing waits for it and a failure changes nothing on screen.
function reportView(data) {
  const body = { viewerId: deviceId(), views: [{ campaignId, channel: data.channel }], batchId: newRequestId() };
  fetch("/api/exposures", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    keepalive: true,
  }).catch(() => {});
}

async function refresh() {
  const { status, data } = await fetchCampaign(campaignId, { channel });
  if (status === 200) render(data);
}

function poll() {
  setTimeout(async () => {
    if (state.status === "ended" || state.over) return;
    if (!document.hidden) await refresh();
    poll();
  }, POLL_MS + Math.random() * (POLL_MS / 2));
}

async function claim() {
  if (state.busy || state.over || state.status !== "open") return;
  if (!(await bearer())) {
    showReason("UNAUTHORIZED");
    return;
  }
  state.busy = true;
  renderButton();
  const requestId = rememberedRequestId(campaignId);
  const answer = await claimCoupon({
    campaignId,
    requestId: requestId.id,
    deviceId: deviceId(),
    channel: state.campaign.channel,
    token: bearer,
  });
  state.busy = false;
  if (answer.reason === "REQUEST_MISMATCH") requestId.forget();
  state.over = describe(answer.reason)[1].final;
  showReason(answer.reason, answer);
  if (answer.reason in REASON_STATUS) setStatus(REASON_STATUS[answer.reason]);
  if (answer.reason === "NOT_STARTED") await load(); // our clock was off: sync again
  renderButton();
}

el("claim").addEventListener("click", claim);
takeHandoff();
load().then((loaded) => {
  if (!loaded) return;
  reportView(state.campaign);
  tick();
  poll();
});
