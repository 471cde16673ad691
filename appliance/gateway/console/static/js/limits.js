// The one shape of a rate limit and a budget, for keys, users and tenants: shown as text, edited in a small form.

import { el, field, select } from "./dom.js";

const UNITS = [["tokens", "tokens"], ["images", "images"], ["audio_seconds", "audio s"], ["cost", "cost"]];

export function budgetText(budget) {
  if (!budget) return "–";
  const spent = Object.fromEntries((budget.spend || []).map((s) => [s.unit, s.spent]));
  const parts = UNITS.filter(([unit]) => budget[unit] !== null && budget[unit] !== undefined)
    .map(([unit, label]) => `${spent[unit] ?? 0} / ${budget[unit]} ${label}`);
  return `${parts.join(", ")} (${budget.period})`;
}

// Inputs for a budget and a rate limit; ``read()`` gives the JSON fields to PATCH (null clears).
export function limitFields(current = {}) {
  const budget = current.budget || {};
  const period = select(["day", "week", "month", "total"], budget.period || "month");
  const inputs = Object.fromEntries(UNITS.map(([unit]) => [unit, el("input", {
    type: "number", min: 0, step: "any", value: budget[unit] ?? "", placeholder: "no limit" })]));
  const rate = el("input", { type: "number", min: 1, value: current.rate_limit ?? "", placeholder: "no limit" });
  const nodes = [field("Requests per minute", rate), field("Budget period", period),
    ...UNITS.map(([unit, label]) => field(`Budget: ${label}`, inputs[unit]))];
  const read = () => {
    const limits = {};
    for (const [unit] of UNITS) if (inputs[unit].value !== "") limits[unit] = Number(inputs[unit].value);
    return { rate_limit: rate.value ? Number(rate.value) : null,
      budget: Object.keys(limits).length ? { period: period.value, ...limits } : null };
  };
  return { nodes, read };
}

// The notes an answer carries (e.g. a budget below what is spent): shown beside the form that made the change.
export function warningsOf(answer) {
  return (answer && answer.warnings ? answer.warnings : []).map((text) => el("p", { class: "notice warning",
    role: "status", text }));
}
