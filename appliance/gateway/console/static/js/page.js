// What every page shares: running a request with its failure shown in place, and live refreshing.

import { explain } from "./api.js";
import { clear, el } from "./dom.js";

// Run ``work``; on failure put a clear sentence in ``slot`` (a rejected key logs out) and return undefined.
export async function guarded(slot, work, { permission, ctx } = {}) {
  try {
    const result = await work();
    if (slot) clear(slot);
    return result;
  } catch (error) {
    if (error && error.code === "AUTH_TOKEN_INVALID" && ctx) {
      ctx.onKeyRejected(explain(error));
      return undefined;
    }
    if (slot) clear(slot, el("p", { class: "error", role: "alert", text: explain(error, permission) }));
    return undefined;
  }
}

// Call ``tick`` now and every ``ms`` until the returned stop function is called (the page is left).
export function every(ms, tick) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    await tick();
    if (!stopped) timer = setTimeout(loop, ms);
  };
  loop();
  return () => { stopped = true; clearTimeout(timer); };
}

export function section(title, ...children) {
  return el("section", { class: "card" }, el("h2", { text: title }), ...children);
}
