// The shell: log in, pick a page from the URL's #fragment, show failures in the page, log out.

import { ApiFailure, explain, get, session } from "./api.js";
import { clear, el } from "./dom.js";
import status from "./status.js";
import keys from "./keys.js";
import usage from "./usage.js";
import batches from "./batches.js";
import playground from "./playground.js";
import { showCertificate } from "./certificate.js";
import account from "./account.js";
import audit from "./audit.js";
import tenants from "./tenants.js";
import users from "./users.js";

const PAGES = { status, keys, usage, batches, playground, users, tenants, audit, account };
const $ = (id) => document.getElementById(id);
let leave = null; // the open page's clean-up (its timers)

export function showBanner(text) {
  const banner = $("banner");
  clear(banner, el("span", { text }), el("button", { class: "ghost", type: "button", text: "Dismiss",
    onclick: () => { banner.hidden = true; } }));
  banner.hidden = false;
}

// Any failure that escapes a page still ends as a sentence on screen, never as a blank page.
window.addEventListener("error", (event) => showBanner(explain(event.error || event.message)));
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const error = event.reason;
  if (error instanceof ApiFailure && error.code === "AUTH_TOKEN_INVALID") return logout(explain(error));
  showBanner(explain(error));
});

// Any valid key may ask who it is; the answer also says which admin pages to offer (the others explain a missing
// permission themselves).
async function checkKey() {
  const me = await get("/v1/me");
  for (const link of document.querySelectorAll("#nav a[data-needs]")) {
    link.hidden = !me.permissions.includes(link.dataset.needs);
  }
}

function showLogin(problem) {
  if (leave) leave();
  leave = null;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("page").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = problem || "";
  error.hidden = !problem;
  $("login-key").focus();
}

function logout(problem) {
  session.key = null;
  checked = false;
  showLogin(problem);
}

async function login(event) {
  event.preventDefault();
  const input = $("login-key");
  const key = input.value.trim();
  session.key = key;
  try {
    await checkKey();
    checked = true;
  } catch (error) {
    session.key = null;
    showLogin(explain(error));
    return;
  }
  input.value = "";
  if (location.hash !== "#status") location.hash = "#status";
  else route();
}

let checked = false; // the nav was fitted to this tab's key

async function route() {
  if (!session.key) return showLogin();
  if (!checked) {
    checked = true;
    checkKey().catch(() => { checked = false; });
  }
  const name = location.hash.slice(1) in PAGES ? location.hash.slice(1) : "status";
  const page = PAGES[name];
  if (leave) leave();
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("banner").hidden = true;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const container = clear($("page"), el("h1", { text: page.title }));
  container.hidden = false;
  container.dataset.page = name;
  const body = el("div", { class: "page-body" });
  container.append(body);
  try {
    leave = page.render(body, { onKeyRejected: logout }) || null;
  } catch (error) {
    body.append(el("p", { class: "error", role: "alert", text: explain(error, page.permission) }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  window.addEventListener("hashchange", route);
  route();
  showCertificate($("ca-link"), $("cert-warning")).catch(() => {}); // a box on plain HTTP has nothing to show
});
