// Batches: the key's batches with their progress, refreshed live; cancel; download results.

import { get, post, query } from "./api.js";
import { badge, clear, el, message, table } from "./dom.js";
import { every, guarded, section } from "./page.js";

const REFRESH_MS = 3000;
const ACTIVE = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
const PERMISSION = "models:use";

function progress(batch) {
  const { total, completed, failed } = batch.request_counts;
  const done = completed + failed;
  return el("div", { class: "progress-cell" },
    el("progress", { max: total || 1, value: done, "aria-label": `${done} of ${total} lines done` }),
    el("span", { class: "small", text: `${completed} done, ${failed} failed of ${total}` }));
}

function downloads(batch) {
  const links = [];
  if (batch.output_file_url) links.push(el("a", { href: batch.output_file_url, download: `${batch.id}-output.jsonl`,
    text: "results" }));
  if (batch.error_file_url) links.push(el("a", { href: batch.error_file_url, download: `${batch.id}-errors.jsonl`,
    text: "errors" }));
  return links.length ? el("div", { class: "actions" }, links) : el("span", { class: "muted", text: "–" });
}

export default {
  title: "Batches",
  permission: PERMISSION,
  render(container, ctx) {
    const slot = el("div");
    const view = el("div", {}, el("p", { class: "muted", text: "Loading…" }));
    container.append(section("Batches", el("p", { class: "muted", text: "Batches this key created " +
      "(POST /v1/inference/batch, or /oai/v1/batches); results stay downloadable after a cancel." }), slot, view));
    const refresh = async () => {
      const page = await guarded(view, () => get(`/v1/inference/batch${query({ limit: 100 })}`),
        { permission: PERMISSION, ctx });
      if (!page) return;
      if (!page.items.length) {
        clear(view, message("muted", "No batches yet."));
        return;
      }
      const rows = page.items.map((batch) => {
        const cancel = ACTIVE.has(batch.status) && batch.status !== "cancelling"
          ? el("button", { type: "button", class: "danger", text: "Cancel", "aria-label": `Cancel ${batch.id}`,
            onclick: async () => { if (await guarded(slot, () => post(`/v1/inference/batch/${batch.id}/cancel`)))
              refresh(); } })
          : null;
        return [el("span", { class: "mono", text: batch.id }), badge(batch.status), progress(batch),
          new Date(batch.created_at * 1000).toLocaleString(), downloads(batch), cancel];
      });
      clear(view, table(["Batch", "Status", "Progress", "Created", "Download", ""], rows, { id: "batches-table" }));
    };
    return every(REFRESH_MS, refresh);
  },
};
