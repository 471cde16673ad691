// Building the page from data: every text goes in through textContent, never as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// A labelled form field; returns [label, control] so a grid lays them out.
export function field(label, control) {
  if (!control.id) control.id = "f-" + Math.random().toString(36).slice(2, 9);
  return el("div", { class: "field" }, el("label", { for: control.id, text: label }), control);
}

export function select(options, value) {
  const node = el("select");
  for (const option of options) {
    const [val, text] = Array.isArray(option) ? option : [option, option];
    node.append(el("option", { value: val, text, selected: val === value }));
  }
  return node;
}

// A table whose cells are text or nodes; wrapped so narrow screens scroll it sideways.
export function table(headers, rows, attrs = {}) {
  const head = el("tr", {}, headers.map((h) => el("th", { text: h })));
  // data-label: on a phone each row becomes a card whose cells name their column (app.css).
  const body = rows.map((cells) => el("tr", {}, cells.map((c, i) => el("td", { "data-label": headers[i] || null },
    c ?? ""))));
  return el("div", { class: "table-wrap" }, el("table", attrs, el("thead", {}, head), el("tbody", {}, body)));
}

export function message(kind, text) {
  return el("p", { class: kind, role: kind === "error" ? "alert" : "status", text });
}

export function badge(text, kind = text) {
  return el("span", { class: `badge badge-${kind}`, text });
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}
