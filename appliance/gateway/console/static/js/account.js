// My account: the key in use, its user, tenant, role and permissions, and every key of the user with its budget.

import { get } from "./api.js";
import { badge, clear, el, formatTime, table } from "./dom.js";
import { guarded, section } from "./page.js";
import { budgetText } from "./limits.js";

export default {
  title: "My account",
  permission: null,
  render(container, ctx) {
    const view = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    container.append(view);
    (async () => {
      const me = await guarded(view, () => get("/v1/me"), { ctx });
      if (!me) return;
      const who = me.user ? `${me.user.display_name || me.user.email} (${me.user.email})` : "a service key";
      const summary = el("div", { class: "summary", id: "me-summary" },
        el("div", {}, el("span", { class: "muted", text: "User " }), el("span", { text: who })),
        el("div", {}, el("span", { class: "muted", text: "Tenant " }), el("span", { text: me.tenant.name })),
        el("div", {}, el("span", { class: "muted", text: "Role " }), badge(me.role || "none", "active")),
        el("div", {}, el("span", { class: "muted", text: "This key may " }),
          el("span", { class: "mono small", text: me.permissions.join(", ") })));
      const rows = me.keys.map((key) => [el("span", { class: "key-name", text: key.name }),
        el("span", { class: "mono", text: key.prefix }), key.id === me.key.id ? "this key" : "",
        key.permissions.join(", "), budgetText(key.budget), badge(key.status), formatTime(key.created_at)]);
      const limits = me.user ? el("p", { class: "muted", text: `Your budget: ${budgetText(me.user.budget)}; ` +
        `requests per minute: ${me.user.rate_limit ?? "no limit"}.` }) : null;
      clear(view, section("Who this key is", summary, limits),
        section("Your keys", table(["Name", "Prefix", "", "Permissions", "Budget (spent / limit)", "Status",
          "Created"], rows, { id: "my-keys" }),
        el("p", { class: "muted", text: "Your usage is on the Usage page." })));
    })();
    return null;
  },
};
