// The audit log (admin:access): every change and every refused attempt, with filters, pages and an export.

import { get, query, send } from "./api.js";
import { badge, clear, el, field, formatTime, select, table } from "./dom.js";
import { guarded, section } from "./page.js";

const PERMISSION = "admin:access";

function iso(local) {
  return local ? new Date(local).toISOString() : "";
}

export default {
  title: "Audit log",
  permission: PERMISSION,
  render(container, ctx) {
    const action = el("input", { placeholder: "e.g. api_key.create", id: "audit-action" });
    const status = select([["", "any"], ["SUCCESS", "success"], ["FAILURE", "failure"]], "");
    status.id = "audit-status";
    const actor = el("input", { placeholder: "usr_… or key_…", id: "audit-actor" });
    const resource = el("input", { placeholder: "an id", id: "audit-resource" });
    const start = el("input", { type: "datetime-local", id: "audit-start" });
    const end = el("input", { type: "datetime-local", id: "audit-end" });
    const format = select([["csv", "CSV"], ["ndjson", "NDJSON"], ["json", "JSON"]], "csv");
    const exportButton = el("button", { type: "button", class: "secondary", text: "Export", id: "audit-export" });
    const controls = el("form", { class: "row controls", id: "audit-filters" }, field("Action", action),
      field("Status", status), field("Actor", actor), field("Resource", resource), field("From", start),
      field("To", end), el("button", { type: "submit", text: "Filter" }), field("Format", format), exportButton);
    const view = el("div");
    const problem = el("div");
    const more = el("div");
    const filters = () => ({ action: action.value.trim(), status: status.value, actor_id: actor.value.trim(),
      resource_id: resource.value.trim(), start: iso(start.value), end: iso(end.value) });
    const rowsOf = (items) => items.map((e) => [formatTime(e.timestamp), badge(e.status === "SUCCESS" ? "success"
      : "failure", e.status === "SUCCESS" ? "active" : "failed"), el("span", { class: "mono", text: e.action }),
      el("div", {}, el("div", { text: e.actor_email || e.actor_id || e.actor_type }),
        el("div", { class: "muted small", text: e.actor_type })),
      el("span", { class: "mono small", text: `${e.resource_type || ""} ${e.resource_id || ""}` }),
      e.ip_address || "", el("span", { class: "small", text: e.user_agent || "" }),
      el("span", { class: "mono small", text: e.details && e.details.error_code ? e.details.error_code : "" })]);
    const headers = ["Time", "Status", "Action", "Actor", "Resource", "IP", "User-Agent", "Error"];
    const load = async (cursor, body) => {
      const page = await guarded(problem, () => get(`/v1/audit-log${query({ ...filters(), limit: 50, cursor })}`),
        { permission: PERMISSION, ctx });
      if (!page) return;
      body.append(...rowsOf(page.items).map((cells) => el("tr", {}, cells.map((c, i) =>
        el("td", { "data-label": headers[i] }, c)))));
      clear(more, page.has_more ? el("button", { type: "button", class: "secondary", text: "More",
        onclick: () => load(page.next_cursor, body) }) : null);
    };
    const show = () => {
      const shown = table(headers, [], { id: "audit-table" });
      clear(view, shown);
      load(undefined, shown.querySelector("tbody"));
    };
    controls.addEventListener("submit", (event) => { event.preventDefault(); show(); });
    exportButton.addEventListener("click", async () => {
      // The export needs the key's header, so it is fetched here and handed to the browser as a file.
      const response = await guarded(problem, () => send("GET", `/v1/audit-log/export${query({ ...filters(),
        format: format.value })}`), { permission: PERMISSION });
      if (!response) return;
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: `audit.${format.value}` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    });
    container.append(section("Events", el("p", { class: "muted", text: "Every change and every refused attempt, " +
      "newest first. A tenant's admin sees the tenant's events; a box admin every tenant's. " +
      "`appliance audit verify` checks that none was edited or removed." }), controls, problem, view, more));
    show();
    return null;
  },
};
