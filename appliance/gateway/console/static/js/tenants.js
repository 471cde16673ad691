// Tenants (a box admin's, tenants:manage): create, limit models and budgets, suspend, delete.

import { call, get, post } from "./api.js";
import { badge, clear, el, field, formatTime, table } from "./dom.js";
import { guarded, section } from "./page.js";
import { budgetText, limitFields, warningsOf } from "./limits.js";

const PERMISSION = "tenants:manage";

function list(text) {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

function createForm(done, slot) {
  const name = el("input", { required: true, maxlength: 200, placeholder: "e.g. research" });
  const models = el("input", { placeholder: "every model (or slugs, comma-separated)" });
  const limits = limitFields();
  const form = el("form", { class: "grid", id: "create-tenant" }, field("Name", name), field("Models", models),
    ...limits.nodes, el("div", { class: "field" }, el("button", { type: "submit", text: "Create tenant" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const made = await guarded(slot, () => post("/v1/tenants", { name: name.value.trim(),
      models: list(models.value), ...limits.read() }), { permission: PERMISSION });
    if (made) {
      form.reset();
      done(made);
    }
  });
  return form;
}

function editForm(tenant, done, slot) {
  const models = el("input", { value: (tenant.models || []).join(", "), placeholder: "every model" });
  const limits = limitFields(tenant);
  const form = el("form", { class: "grid edit-tenant" }, field("Models", models), ...limits.nodes,
    el("div", { class: "field row" }, el("button", { type: "submit", text: "Save" }),
      el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => done(null) })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changed = await guarded(slot, () => call("PATCH", `/v1/tenants/${encodeURIComponent(tenant.id)}`,
      { json: { models: list(models.value), ...limits.read() } }), { permission: PERMISSION });
    if (changed) done(changed);
  });
  return form;
}

export default {
  title: "Tenants",
  permission: PERMISSION,
  render(container, ctx) {
    const slot = el("div");
    const notes = el("div");
    const listing = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    const editor = el("div");
    const refresh = async () => {
      const page = await guarded(listing, () => get("/v1/tenants?limit=1000"), { permission: PERMISSION, ctx });
      if (!page) return;
      const rows = page.items.map((tenant) => {
        const act = (method, path, json) => async () => {
          const answer = await guarded(slot, () => call(method, path, json ? { json } : {}), { permission: PERMISSION });
          if (answer) { clear(notes, ...warningsOf(answer)); refresh(); }
        };
        const path = `/v1/tenants/${encodeURIComponent(tenant.id)}`;
        const toggle = tenant.status === "active"
          ? el("button", { type: "button", class: "secondary", text: "Suspend", onclick: act("PATCH", path,
            { status: "suspended" }), "aria-label": `Suspend ${tenant.name}` })
          : el("button", { type: "button", class: "secondary", text: "Activate", onclick: act("PATCH", path,
            { status: "active" }), "aria-label": `Activate ${tenant.name}` });
        const edit = el("button", { type: "button", class: "secondary", text: "Limits",
          "aria-label": `Limits of ${tenant.name}`, onclick: () => clear(editor, section(`Limits of ${tenant.name}`,
            editForm(tenant, (changed) => { clear(editor); if (changed) { clear(notes, ...warningsOf(changed)); refresh(); } },
              slot))) });
        const remove = el("button", { type: "button", class: "danger", text: "Delete",
          "aria-label": `Delete ${tenant.name}` });
        remove.addEventListener("click", async () => {
          if (remove.dataset.armed !== "yes") {
            remove.dataset.armed = "yes";
            remove.textContent = "Confirm delete";
            return;
          }
          await act("DELETE", path)();
        });
        return [el("span", { class: "key-name", text: tenant.name }), el("span", { class: "mono small", text: tenant.id }),
          tenant.models ? tenant.models.join(", ") : "all", tenant.rate_limit ? `${tenant.rate_limit}/min` : "–",
          budgetText(tenant.budget), badge(tenant.status), formatTime(tenant.created_at),
          el("div", { class: "actions wrap" }, edit, toggle, remove)];
      });
      clear(listing, table(["Name", "Id", "Models", "Rate", "Budget (spent / limit)", "Status", "Created", ""], rows,
        { id: "tenants-table" }));
    };
    container.append(slot, notes,
      section("Create a tenant", createForm(() => refresh(), slot)), editor, section("Tenants", listing));
    refresh();
    return null;
  },
};
