// Users (users:manage): a tenant admin's users of their tenant, a box admin's of every tenant; roles, status,
// limits, delete (which revokes the user's keys at once).

import { call, get, post, query } from "./api.js";
import { badge, clear, el, field, formatTime, select, table } from "./dom.js";
import { guarded, section } from "./page.js";
import { budgetText, limitFields, warningsOf } from "./limits.js";

const PERMISSION = "users:manage";
const ROLES = ["tenant_viewer", "tenant_user", "tenant_admin", "box_admin"];

function createForm(tenants, done, slot) {
  const email = el("input", { type: "email", required: true, placeholder: "someone@example.com" });
  const name = el("input", { maxlength: 200, placeholder: "optional" });
  const role = select(ROLES, "tenant_user");
  const tenant = tenants ? select(tenants.map((t) => [t.id, t.name]), tenants[0] && tenants[0].id) : null;
  const form = el("form", { class: "grid", id: "create-user" }, field("Email", email), field("Name", name),
    field("Role", role), tenant ? field("Tenant", tenant) : null,
    el("div", { class: "field" }, el("button", { type: "submit", text: "Add user" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { email: email.value.trim(), roles: [role.value] };
    if (name.value.trim()) body.display_name = name.value.trim();
    if (tenant) body.tenant_id = tenant.value;
    const made = await guarded(slot, () => post("/v1/users", body), { permission: PERMISSION });
    if (made) {
      form.reset();
      done(made);
    }
  });
  return form;
}

export default {
  title: "Users",
  permission: PERMISSION,
  render(container, ctx) {
    const slot = el("div");
    const notes = el("div");
    const editor = el("div");
    const listing = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    const creator = el("div");
    let tenantNames = {};
    const refresh = async () => {
      const page = await guarded(listing, () => get(`/v1/users${query({ limit: 1000 })}`),
        { permission: PERMISSION, ctx });
      if (!page) return;
      const rows = page.items.map((user) => {
        const path = `/v1/users/${encodeURIComponent(user.id)}`;
        const label = user.display_name || user.email;
        const act = (work) => async () => {
          const answer = await guarded(slot, work, { permission: PERMISSION });
          if (answer) { clear(notes, ...warningsOf(answer)); refresh(); }
        };
        const role = select(ROLES, user.roles[user.roles.length - 1]);
        role.setAttribute("aria-label", `Role of ${label}`);
        role.addEventListener("change", act(() => call("PUT", `${path}/roles`, { json: { roles: [role.value] } })));
        const status = user.status === "active"
          ? el("button", { type: "button", class: "secondary", text: "Suspend", "aria-label": `Suspend ${label}`,
            onclick: act(() => call("PATCH", path, { json: { status: "suspended" } })) })
          : el("button", { type: "button", class: "secondary", text: "Activate", "aria-label": `Activate ${label}`,
            onclick: act(() => call("PATCH", path, { json: { status: "active" } })) });
        const limits = el("button", { type: "button", class: "secondary", text: "Limits",
          "aria-label": `Limits of ${label}`, onclick: () => {
            const fields = limitFields(user);
            const form = el("form", { class: "grid edit-user" }, ...fields.nodes,
              el("div", { class: "field row" }, el("button", { type: "submit", text: "Save" }),
                el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => clear(editor) })));
            form.addEventListener("submit", async (event) => {
              event.preventDefault();
              const changed = await guarded(slot, () => call("PATCH", path, { json: fields.read() }),
                { permission: PERMISSION });
              if (changed) { clear(editor); clear(notes, ...warningsOf(changed)); refresh(); }
            });
            clear(editor, section(`Limits of ${label}`, form));
          } });
        const remove = el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${label}` });
        remove.addEventListener("click", async () => {
          if (remove.dataset.armed !== "yes") {
            remove.dataset.armed = "yes";
            remove.textContent = "Confirm delete";
            return;
          }
          await act(() => call("DELETE", path))();
        });
        return [el("span", { class: "key-name", text: user.email }), user.display_name || "",
          tenantNames[user.tenant_id] || user.tenant_id, role, budgetText(user.budget),
          user.rate_limit ? `${user.rate_limit}/min` : "–", badge(user.status), formatTime(user.created_at),
          el("div", { class: "actions wrap" }, limits, status, remove)];
      });
      clear(listing, table(["Email", "Name", "Tenant", "Role", "Budget (spent / limit)", "Rate", "Status", "Created",
        ""], rows, { id: "users-table" }));
    };
    container.append(slot, notes, section("Add a user", creator), editor, section("Users", listing));
    (async () => {
      // A box admin picks the new user's tenant; a tenant admin adds to their own.
      let tenants = null;
      try {
        tenants = (await get("/v1/tenants?limit=1000")).items;
        tenantNames = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
      } catch { tenants = null; }
      clear(creator, createForm(tenants, () => refresh(), slot));
      refresh();
    })();
    return null;
  },
};
