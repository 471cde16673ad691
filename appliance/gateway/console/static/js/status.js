// Status: every model's state, backends, memory, restarts and recent traffic, refreshed live; load / unload.

import { get, post, query } from "./api.js";
import { badge, clear, el, table } from "./dom.js";
import { every, guarded } from "./page.js";

const REFRESH_MS = 2000;

function number(value, unit) {
  return value === null || value === undefined ? "–" : `${value}${unit}`;
}

function recentText(recent) {
  if (!recent.requests) return `no requests in ${recent.window_s / 60} min`;
  const parts = [`${recent.requests} req`, number(recent.mean_latency_ms, " ms")];
  if (recent.output_tokens_per_s) parts.push(`${recent.output_tokens_per_s} tok/s`);
  if (recent.errors) parts.push(`${recent.errors} failed`);
  return parts.join(" · ");
}

// Live calls on the model now (in this gateway), per tenant: those it runs and those waiting for a slot.
function loadCell(model) {
  const waiting = model.tenants.reduce((sum, t) => sum + t.waiting, 0);
  const running = model.tenants.reduce((sum, t) => sum + t.running, 0);
  const head = el("div", { text: `${running} of ${model.capacity} running${waiting ? `, ${waiting} waiting` : ""}` });
  const lines = model.tenants.filter((t) => t.waiting).map((t) =>
    el("div", { class: "mono small tenant-load", text: `${t.tenant_id}: ${t.running} running, ${t.waiting} waiting` }));
  return el("div", {}, head, lines);
}

function modelCell(model) {
  return el("div", {}, el("strong", { class: "model-name", text: model.display_name }),
    el("div", { class: "muted mono", text: model.slug }));
}

function backendsCell(model) {
  return el("div", {}, model.backends.map((b) => el("div", { class: "mono small backend", text: `${b.id} (${b.state})` })));
}

function actions(model, refresh, slot) {
  if (!model.local) return el("span", { class: "muted", text: "remote" });
  const act = (what) => async () => {
    await guarded(slot, () => post(`/v1/admin/models/${encodeURIComponent(model.slug)}/${what}`));
    refresh();
  };
  // One button: Load while nothing runs, Unload otherwise (a failed model keeps retrying until unloaded).
  const what = model.state === "unloaded" ? "load" : "unload";
  return el("button", { type: "button", class: what === "load" ? "" : "secondary", onclick: act(what),
    text: what === "load" ? "Load" : "Unload", "aria-label": `${what === "load" ? "Load" : "Unload"} ${model.slug}` });
}

function renderAdmin(view, slot, data, refresh) {
  const summary = el("div", { class: "summary" },
    el("div", {}, el("span", { class: "muted", text: "Ready " }),
      badge(data.ready ? "ready" : "starting", data.ready ? "loaded" : "starting")),
    el("div", {}, el("span", { class: "muted", text: "Version " }), el("span", { text: data.version })),
    el("div", {}, el("span", { class: "muted", text: "GPU memory (ledger) " }),
      el("span", { text: data.ledger.total_gb === null ? `${data.ledger.used_gb} GB in use, no limit set`
        : `${data.ledger.used_gb} of ${data.ledger.total_gb} GB` })));
  const rows = data.models.map((m) => [
    modelCell(m), m.engine, m.modality, el("div", {}, badge(m.state), m.last_error && m.state === "failed"
      ? el("div", { class: "error small model-error", text: m.last_error }) : null),
    backendsCell(m), loadCell(m), `${m.gpu_memory_gb} GB`, String(m.restarts), recentText(m.recent),
    actions(m, refresh, slot),
  ]);
  clear(view, summary, table(["Model", "Engine", "Modality", "State", "Backends", "Load", "Memory", "Restarts",
    "Recent (5 min)", ""], rows, { id: "models-table" }));
}

// A key without admin:access still sees the models it may list, from GET /v1/models.
function renderModels(view, models, ready) {
  const rows = models.map((m) => [modelCell(m), m.engine, m.modality, badge(m.health_status),
    el("div", {}, m.backends.map((b) => el("div", { class: "mono small backend", text: `${b.id} (${b.health_status})` })))]);
  clear(view, el("p", { class: "notice", text: "This key lacks 'admin:access': restarts, memory, recent traffic " +
    "and the Load / Unload buttons need it. The models this key may list:" }),
  el("div", { class: "summary" }, el("div", {}, el("span", { class: "muted", text: "Ready " }),
    badge(ready ? "ready" : "starting", ready ? "loaded" : "starting"))),
  table(["Model", "Engine", "Modality", "Health", "Backends"], rows, { id: "models-table" }));
}

async function readiness() {
  const response = await fetch("/ready");
  return response.status === 200;
}

export default {
  title: "Status",
  permission: "admin:access",
  render(container, ctx) {
    const slot = el("div");
    const view = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    container.append(slot, view);
    const refresh = async () => {
      try {
        renderAdmin(view, slot, await get("/v1/admin/status"), refresh);
        return;
      } catch (error) {
        if (error.code !== "AUTHZ_PERMISSION_DENIED") {
          await guarded(view, () => Promise.reject(error), { ctx });
          return;
        }
      }
      const listing = await guarded(view, () => get(`/v1/models${query({ limit: 100 })}`),
        { permission: "models:list", ctx });
      if (listing) renderModels(view, listing.items, await readiness().catch(() => false));
    };
    return every(REFRESH_MS, refresh);
  },
};
