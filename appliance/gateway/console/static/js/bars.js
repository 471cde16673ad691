// A small horizontal bar chart in SVG, made here rather than vendored: labels are SVG text nodes (no HTML).

const NS = "http://www.w3.org/2000/svg";
const ROW = 28;
const LABEL = 250;

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function short(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// ``rows``: [{label, value}]; the chart scales to its container's width.
export function barChart(rows, { title, unit = "" } = {}) {
  const width = 640;
  const height = Math.max(1, rows.length) * ROW + 8;
  const max = Math.max(...rows.map((r) => r.value), 0) || 1;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": title || "chart", preserveAspectRatio: "xMinYMin meet" });
  if (title) chart.append(svg("title", {}, title));
  rows.forEach((row, i) => {
    const y = 4 + i * ROW;
    const bar = Math.max(2, ((width - LABEL - 90) * row.value) / max);
    chart.append(svg("text", { x: LABEL - 8, y: y + 17, "text-anchor": "end", class: "chart-label" },
      short(row.label, 30)));
    const rect = svg("rect", { x: LABEL, y: y + 3, width: row.value ? bar : 0, height: ROW - 8, rx: 3,
      class: "chart-bar" });
    rect.append(svg("title", {}, `${row.label}: ${row.value}${unit}`));
    chart.append(rect, svg("text", { x: LABEL + (row.value ? bar : 0) + 6, y: y + 17, class: "chart-value" },
      `${row.value}${unit}`));
  });
  return chart;
}
