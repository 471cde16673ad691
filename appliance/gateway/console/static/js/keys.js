// Keys (api_keys:manage): list, create (the secret shown once), restrict, revoke.

import { call, get, post } from "./api.js";
import { badge, clear, el, field, formatTime, table } from "./dom.js";
import { guarded, section } from "./page.js";

const PERMISSIONS = ["models:list", "models:use", "api_keys:manage", "admin:access", "users:manage",
  "accounting:view_own", "accounting:view_tenant"];
const PERMISSION = "api_keys:manage";

function list(text) {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

function secretBox(created) {
  const secret = el("input", { class: "mono secret", readonly: true, value: created.key, id: "new-key-secret",
    "aria-label": "the new key's secret" });
  const copied = el("span", { class: "muted", role: "status" });
  const copy = async () => {
    secret.select();
    try {
      await navigator.clipboard.writeText(created.key);
      copied.textContent = "Copied.";
    } catch {
      copied.textContent = "Copy was refused by the browser: the secret is selected, press Ctrl+C.";
    }
  };
  return el("div", { class: "notice secret-box" },
    el("p", {}, el("strong", { text: `Key “${created.name}” created. ` }),
      "Its secret is shown this once; only its hash is stored."),
    el("div", { class: "row" }, secret, el("button", { type: "button", text: "Copy", onclick: copy }), copied));
}

function createForm(onCreated, slot) {
  const name = el("input", { required: true, maxlength: 200, placeholder: "e.g. analytics team" });
  const boxes = PERMISSIONS.map((p) => el("input", { type: "checkbox", value: p,
    checked: p === "models:list" || p === "models:use" }));
  const models = el("input", { placeholder: "all models (or slugs, comma-separated)" });
  const rate = el("input", { type: "number", min: 1, placeholder: "no limit" });
  const user = el("input", { placeholder: "yourself (or a user id, usr_…)", id: "key-user" });
  const form = el("form", { class: "grid", id: "create-key" },
    field("Name", name),
    el("fieldset", { class: "field wide" }, el("legend", { text: "Permissions" }),
      boxes.map((box) => el("label", { class: "check" }, box, box.value))),
    field("Models", models), field("Requests per minute", rate), field("For user", user),
    el("div", { class: "field" }, el("button", { type: "submit", text: "Create key" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), permissions: boxes.filter((b) => b.checked).map((b) => b.value),
      models: list(models.value), rate_limit: rate.value ? Number(rate.value) : null };
    if (user.value.trim()) body.assigned_user_id = user.value.trim();
    const created = await guarded(slot, () => post("/v1/api-keys", body), { permission: PERMISSION });
    if (created) {
      form.reset();
      onCreated(created);
    }
  });
  return form;
}

function restrictForm(key, done, slot) {
  const models = el("input", { value: (key.models || []).join(", "), placeholder: "all models" });
  const rate = el("input", { type: "number", min: 1, value: key.rate_limit ?? "", placeholder: "no limit" });
  const form = el("form", { class: "row restrict" }, field("Models", models), field("Requests/min", rate),
    el("button", { type: "submit", text: "Save" }),
    el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => done(false) }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { models: list(models.value), rate_limit: rate.value ? Number(rate.value) : null };
    const changed = await guarded(slot, () => call("PATCH", `/v1/api-keys/${encodeURIComponent(key.id)}`,
      { json: body }), { permission: PERMISSION });
    if (changed) done(true);
  });
  return form;
}

export default {
  title: "API keys",
  permission: PERMISSION,
  render(container, ctx) {
    const slot = el("div");
    const created = el("div");
    const listing = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    const refresh = async () => {
      const page = await guarded(listing, () => get("/v1/api-keys?limit=1000"), { permission: PERMISSION, ctx });
      if (!page) return;
      const rows = page.items.map((key) => {
        const actions = el("div", { class: "actions" });
        const revoke = el("button", { type: "button", class: "danger", text: "Revoke",
          "aria-label": `Revoke ${key.name}` });
        revoke.addEventListener("click", async () => {
          if (revoke.dataset.armed !== "yes") { // a second click confirms: no blocking dialog
            revoke.dataset.armed = "yes";
            revoke.textContent = "Confirm revoke";
            return;
          }
          if (await guarded(slot, () => call("DELETE", `/v1/api-keys/${encodeURIComponent(key.id)}`),
            { permission: PERMISSION })) refresh();
        });
        const restrict = el("button", { type: "button", class: "secondary", text: "Restrict",
          "aria-label": `Restrict ${key.name}`,
          onclick: () => clear(actions, restrictForm(key, (changed) => (changed ? refresh() : fill()), slot)) });
        const fill = () => clear(actions, key.status === "active" ? [restrict, revoke] : []);
        fill();
        return [el("span", { class: "key-name", text: key.name }), el("span", { class: "mono", text: key.prefix }),
          el("span", { class: "mono small", text: key.assigned_user_id || "" }),
          key.permissions.join(", "), key.models ? key.models.join(", ") : "all",
          key.rate_limit ? `${key.rate_limit}/min` : "–", badge(key.status), formatTime(key.created_at), actions];
      });
      clear(listing, table(["Name", "Prefix", "User", "Permissions", "Models", "Rate", "Status", "Created", ""], rows,
        { id: "keys-table" }));
    };
    container.append(slot,
      section("Create a key", createForm((key) => { clear(created, secretBox(key)); refresh(); }, slot), created),
      section("Keys", listing));
    refresh();
    return null;
  },
};
