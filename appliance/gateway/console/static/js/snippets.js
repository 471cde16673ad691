// The curl and Python equivalents of a request the playground made (the key as $APPLIANCE_KEY, never inline).

import { el } from "./dom.js";

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function pyLiteral(value, indent = 0) {
  return JSON.stringify(value, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False")
    .replace(/\bnull\b/g, "None").replace(/\n/g, "\n" + " ".repeat(indent));
}

// ``request``: {path, json} or {path, form: {field: value}, file: "name"}; ``stream``, ``output``: what the
// Python does with the answer.
export function snippets(request) {
  const url = `${location.origin}${request.path}`;
  let curl;
  let python;
  if (request.json) {
    curl = [`curl -s${request.stream ? "N" : ""} ${url}`, `-H "Authorization: Bearer $APPLIANCE_KEY"`,
      `-H 'Content-Type: application/json'`, `-d ${shellQuote(JSON.stringify(request.json))}`];
    if (request.output) curl.push(`-o ${request.output}`);
    const call = `response = requests.post(\n    "${url}",\n    headers={"Authorization": f"Bearer {key}"},\n` +
      `    json=${pyLiteral(request.json, 4)},${request.stream ? "\n    stream=True," : ""}\n)`;
    const after = request.stream
      ? "for line in response.iter_lines():\n    if line.startswith(b\"data: \") and line != b\"data: [DONE]\":\n" +
        "        print(json.loads(line[6:])[\"choices\"][0][\"delta\"].get(\"content\") or \"\", end=\"\")"
      : request.output ? `open("${request.output}", "wb").write(response.content)`
        : "print(response.json()[\"data\"])";
    python = `import json, os\nimport requests\n\nkey = os.environ["APPLIANCE_KEY"]\n${call}\n${after}`;
  } else {
    curl = [`curl -s ${url}`, `-H "Authorization: Bearer $APPLIANCE_KEY"`,
      ...Object.entries(request.form).map(([k, v]) => `-F ${shellQuote(`${k}=${v}`)}`),
      `-F file=@${request.file}`];
    python = `import os\nimport requests\n\nkey = os.environ["APPLIANCE_KEY"]\n` +
      `with open("${request.file}", "rb") as audio:\n    response = requests.post(\n        "${url}",\n` +
      `        headers={"Authorization": f"Bearer {key}"},\n        data=${pyLiteral(request.form, 8)},\n` +
      `        files={"file": audio},\n    )\nprint(response.json()["data"])`;
  }
  return el("details", { class: "snippets" }, el("summary", { text: "The same request with curl and Python" }),
    el("h4", { text: "curl" }), el("pre", { class: "snippet-curl" }, el("code", { text: curl.join(" \\\n  ") })),
    el("h4", { text: "Python (requests)" }), el("pre", { class: "snippet-python" }, el("code", { text: python })));
}
