// Usage: per model, key or backend over a period, as a chart and a table; CSV export.

import { get, query } from "./api.js";
import { clear, el, field, formatTime, message, select, table } from "./dom.js";
import { barChart } from "./bars.js";
import { guarded, section } from "./page.js";

const COLUMNS = [
  ["request_count", "Requests"], ["input_tokens", "Input tokens"], ["output_tokens", "Output tokens"],
  ["total_tokens", "Total tokens"], ["images", "Images"], ["audio_seconds", "Audio seconds"],
  ["characters", "Characters"], ["total_cost", "Cost"],
];

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) || /^[=+\-@]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(groupBy, rows) {
  const header = [groupBy, ...COLUMNS.map(([name]) => name)];
  const lines = rows.map((row) => [row.group_key, ...COLUMNS.map(([name]) => row[name])].map(csvCell).join(","));
  return [header.join(","), ...lines].join("\r\n") + "\r\n";
}

// Key ids are shown with their names where this key may list keys; otherwise the id alone.
async function keyNames() {
  try {
    const page = await get("/v1/api-keys?limit=1000");
    return Object.fromEntries(page.items.map((k) => [k.id, k.name]));
  } catch {
    return {};
  }
}

export default {
  title: "Usage",
  permission: null,
  render(container, ctx) {
    const period = select([["hour", "this hour"], ["day", "today"], ["week", "this week"], ["month", "this month"]],
      "day");
    const groupBy = select([["model", "model"], ["key", "key"], ["backend", "backend"], ["user", "user"],
      ["tenant", "tenant"]], "model");
    const metric = select(COLUMNS, "request_count");
    const exportLink = el("a", { class: "button secondary", href: "#usage", role: "button", text: "Export CSV",
      id: "usage-csv" });
    const controls = el("form", { class: "row controls" }, field("Period", period), field("Group by", groupBy),
      field("Chart", metric), exportLink);
    const view = el("div");
    let csvUrl = null;
    const show = async () => {
      const [summary, names] = await Promise.all([
        guarded(view, () => get(`/v1/accounting/usage/summary${query({ period: period.value,
          group_by: groupBy.value })}`), { ctx }),
        groupBy.value === "key" ? keyNames() : Promise.resolve({})]);
      if (!summary) return;
      const label = (row) => (row.group_key === null ? "(none)" : names[row.group_key] || row.group_key);
      const column = COLUMNS.find(([name]) => name === metric.value);
      const rows = summary.rows.map((row) => [label(row), ...COLUMNS.map(([name]) => String(row[name]))]);
      if (csvUrl) URL.revokeObjectURL(csvUrl);
      csvUrl = URL.createObjectURL(new Blob([toCsv(summary.group_by, summary.rows)], { type: "text/csv" }));
      exportLink.href = csvUrl;
      exportLink.download = `usage-${summary.period}-by-${summary.group_by}.csv`;
      clear(view,
        el("p", { class: "muted", text: `Since ${formatTime(summary.start)}` }),
        summary.rows.length ? barChart(summary.rows.map((row) => ({ label: label(row), value: row[column[0]] })),
          { title: `${column[1]} per ${summary.group_by}` }) : message("muted", "No requests in this period."),
        table([summary.group_by, ...COLUMNS.map(([, title]) => title)], rows, { id: "usage-table" }));
    };
    for (const control of [period, groupBy, metric]) control.addEventListener("change", show);
    container.append(section("Summary", el("p", { class: "muted",
      text: "A key sees its own usage; with 'accounting:view_own' its user's, with 'accounting:view_tenant' its " +
        "tenant's; a box admin the whole box's." }), controls, view));
    show();
    return () => { if (csvUrl) URL.revokeObjectURL(csvUrl); };
  },
};
