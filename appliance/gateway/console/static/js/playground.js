// Playground: chat (streamed; images and sounds attached), embeddings (cosine of two texts), rerank, images,
// transcription, speech.

import { ApiFailure, explain, failureOf, get, post, query, send, session } from "./api.js";
import { abbreviated, attachments } from "./attachments.js";
import { clear, el, field, message, select, table } from "./dom.js";
import { recordButton } from "./record.js";
import { readChatStream } from "./sse.js";
import { snippets } from "./snippets.js";
import { guarded, section } from "./page.js";

const TRANSCRIBERS = new Set(["faster-whisper"]);
const SPEAKERS = new Set(["piper"]);

// Models that serve now come first, so the preselected one answers without a load (or a failure).
const HEALTH_ORDER = ["healthy", "loading", "idle", "restarting", "unhealthy"];

function modelSelect(models) {
  models = [...models].sort((a, b) => HEALTH_ORDER.indexOf(a.health_status) - HEALTH_ORDER.indexOf(b.health_status));
  if (!models.length) return el("select", { disabled: true }, el("option", { text: "no model of this kind" }));
  return select(models.map((m) => [m.slug, m.display_name === m.slug ? m.slug : `${m.display_name} (${m.slug})`]),
    models[0].slug);
}

// Run one playground action: its button is busy meanwhile, its failure a sentence in ``out``.
function action(button, out, work) {
  return async (event) => {
    if (event) event.preventDefault();
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      out.append(message("error", explain(error, "models:use")));
    } finally {
      button.disabled = false;
    }
  };
}

function chat(models, urls) {
  const model = modelSelect(models);
  const prompt = el("textarea", { rows: 3, text: "Write a haiku about a quiet server room." });
  const maxTokens = el("input", { type: "number", min: 1, max: 4096, value: 64 });
  const media = attachments(urls);
  const fit = () => media.fitTo(models.find((m) => m.slug === model.value));
  model.addEventListener("change", fit);
  fit();
  const run = el("button", { type: "submit", text: "Send" });
  const stop = el("button", { type: "button", class: "secondary", text: "Stop", disabled: true });
  const output = el("pre", { class: "output", id: "chat-output", "aria-live": "polite" });
  const transcript = el("div", { class: "transcript", id: "chat-transcript" }, output);
  const out = el("div");
  let controller = null;
  stop.addEventListener("click", () => controller && controller.abort());
  const form = el("form", { class: "grid" }, field("Model", model), field("Max tokens", maxTokens),
    el("div", { class: "field wide" }, el("label", { text: "Message" }), prompt), media.node,
    el("div", { class: "row" }, run, stop));
  form.addEventListener("submit", action(run, out, async () => {
    // With attachments the message is a list of parts: the text, then each image or sound.
    const content = media.count() ? [{ type: "text", text: prompt.value }, ...await media.parts()] : prompt.value;
    const body = { model: model.value, messages: [{ role: "user", content }],
      max_tokens: Number(maxTokens.value), stream: true };
    clear(out, snippets({ path: "/v1/inference/chat", json: abbreviated(body), stream: true }));
    output.textContent = "";
    clear(transcript, el("div", { class: "turn user" }, el("p", { class: "who", text: "You" }),
      el("p", { class: "said", text: prompt.value }), media.previews()),
    el("div", { class: "turn model" }, el("p", { class: "who", text: model.value }), output));
    controller = new AbortController();
    stop.disabled = false;
    try {
      const response = await fetch("/v1/inference/chat", { method: "POST", signal: controller.signal,
        headers: { Authorization: `Bearer ${session.key}`,
          "Content-Type": "application/json" }, body: JSON.stringify(body) })
        .catch((error) => {
          if (error.name === "AbortError") throw error;
          throw new ApiFailure("NETWORK", `The appliance could not be reached (${error.message}).`);
        });
      if (!response.ok) throw await failureOf(response);
      await readChatStream(response, (text) => { output.textContent += text; });
      out.prepend(message("muted done", "Stream complete."));
    } catch (error) {
      if (error.name === "AbortError" || (error.code === "STREAM_LOST" && controller.signal.aborted)) {
        out.prepend(message("muted", "Stopped."));
      } else {
        throw error;
      }
    } finally {
      stop.disabled = true;
      controller = null;
    }
  }));
  return section("Chat", form, transcript, out);
}

function cosine(a, b) {
  let dot = 0; let na = 0; let nb = 0;
  for (let i = 0; i < a.length; i += 1) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

function embed(models) {
  const model = modelSelect(models);
  const first = el("input", { value: "The cat sat on the mat." });
  const second = el("input", { value: "A cat is sitting on a rug." });
  const run = el("button", { type: "submit", text: "Compare" });
  const out = el("div");
  const form = el("form", { class: "grid" }, field("Model", model), field("First text", first),
    field("Second text", second), el("div", { class: "row" }, run));
  form.addEventListener("submit", action(run, out, async () => {
    const body = { model: model.value, input: [first.value, second.value] };
    clear(out, snippets({ path: "/v1/inference/embed", json: body }));
    const data = await post("/v1/inference/embed", body);
    const [a, b] = data.data.map((d) => d.embedding);
    out.prepend(el("p", { class: "result", id: "cosine" }, "Cosine similarity: ",
      el("strong", { text: cosine(a, b).toFixed(4) }), el("span", { class: "muted",
        text: ` (${a.length} dimensions, ${data.usage.prompt_tokens} tokens)` })));
  }));
  return section("Embeddings", form, out);
}

function rerank(models) {
  const model = modelSelect(models);
  const query = el("input", { value: "What is the capital of France?" });
  const documents = el("textarea", { rows: 4, text: ["Berlin is the capital of Germany.",
    "Paris is the capital of France.", "France borders Spain and Italy."].join("\n") });
  const run = el("button", { type: "submit", text: "Rank" });
  const out = el("div");
  const form = el("form", { class: "grid" }, field("Model", model), field("Query", query),
    el("div", { class: "field wide" }, el("label", { text: "Documents, one a line" }), documents),
    el("div", { class: "row" }, run));
  form.addEventListener("submit", action(run, out, async () => {
    const lines = documents.value.split("\n").map((line) => line.trim()).filter(Boolean);
    const body = { model: model.value, query: query.value, documents: lines };
    clear(out, snippets({ path: "/v1/inference/rerank", json: body }));
    const data = await post("/v1/inference/rerank", body);
    out.prepend(table(["#", "Score", "Document"], data.results.map((r, rank) => [String(rank + 1),
      r.relevance_score.toFixed(4), lines[r.index]]), { id: "rerank-results" }),
    el("p", { class: "muted", text: `${data.usage.total_tokens} tokens read` }));
  }));
  return section("Rerank", form, out);
}

function base64ToBlob(b64, type) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

function image(models, urls) {
  const model = modelSelect(models);
  const prompt = el("input", { value: "a lighthouse at dawn, watercolour" });
  const run = el("button", { type: "submit", text: "Generate" });
  const out = el("div");
  const form = el("form", { class: "grid" }, field("Model", model), field("Prompt", prompt),
    el("div", { class: "row" }, run));
  form.addEventListener("submit", action(run, out, async () => {
    const body = { model: model.value, prompt: prompt.value, n: 1, response_format: "b64_json" };
    clear(out, snippets({ path: "/v1/inference/images/generate", json: body }));
    const data = await post("/v1/inference/images/generate", body);
    const url = urls.make(base64ToBlob(data.data[0].b64_json, "image/png"));
    out.prepend(el("figure", {}, el("img", { src: url, id: "generated-image", alt: `generated: ${prompt.value}` }),
      el("figcaption", { class: "muted", text: data.data[0].revised_prompt || "" })));
  }));
  return section("Images", form, out);
}

function transcribe(models) {
  const model = modelSelect(models);
  const file = el("input", { type: "file", accept: "audio/*", id: "audio-file" });
  const record = el("button", { type: "button", class: "secondary", text: "Record" });
  const run = el("button", { type: "submit", text: "Transcribe" });
  const status = el("span", { class: "muted", role: "status" });
  const out = el("div");
  let recorded = null;
  recordButton(record, (blob) => {
    recorded = blob;
    status.textContent = `Recorded ${(blob.size / 1024).toFixed(0)} KB; press Transcribe.`;
  }, (text) => { status.textContent = text; });
  const form = el("form", { class: "grid" }, field("Model", model), field("Audio file", file),
    el("div", { class: "row" }, record, run, status));
  form.addEventListener("submit", action(run, out, async () => {
    const audio = file.files[0] || recorded;
    if (!audio) throw new ApiFailure("NO_AUDIO", "Choose an audio file or record one first.");
    const name = audio.name || "recording.webm";
    const fields = { model: model.value, response_format: "json" };
    clear(out, snippets({ path: "/v1/inference/audio/transcribe", form: fields, file: name }));
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append("file", audio, name);
    const response = await send("POST", "/v1/inference/audio/transcribe", { form });
    const data = (await response.json()).data;
    out.prepend(el("p", { class: "result" }, "Transcript: ",
      el("q", { id: "transcript", text: data.text || "(silence)" })));
  }));
  return section("Transcription", form, out);
}

function speech(models, urls) {
  const model = modelSelect(models);
  const text = el("textarea", { rows: 2, text: "Hello from the appliance. Everything is running." });
  const voice = select(["alloy", "echo", "fable", "onyx", "nova", "shimmer"], "alloy");
  const format = select(["mp3", "wav", "opus", "flac"], "mp3");
  const run = el("button", { type: "submit", text: "Speak" });
  const out = el("div");
  const form = el("form", { class: "grid" }, field("Model", model), field("Voice", voice), field("Format", format),
    el("div", { class: "field wide" }, el("label", { text: "Text" }), text), el("div", { class: "row" }, run));
  form.addEventListener("submit", action(run, out, async () => {
    const body = { model: model.value, input: text.value, voice: voice.value, response_format: format.value };
    clear(out, snippets({ path: "/v1/inference/audio/synthesize", json: body, output: `speech.${format.value}` }));
    const response = await send("POST", "/v1/inference/audio/synthesize", { json: body });
    const blob = await response.blob();
    const player = el("audio", { controls: true, src: urls.make(blob), id: "speech-audio" });
    out.prepend(player);
    player.play().catch(() => { /* autoplay may be refused; the controls are there */ });
  }));
  return section("Speech", form, out);
}

export default {
  title: "Playground",
  permission: "models:use",
  render(container, ctx) {
    const made = [];
    const urls = { make(blob) { const url = URL.createObjectURL(blob); made.push(url); return url; } };
    const slot = el("div", {}, el("p", { class: "muted", text: "Loading the models…" }));
    container.append(slot);
    guarded(slot, () => get(`/v1/models${query({ limit: 100 })}`), { permission: "models:list", ctx })
      .then((listing) => {
        if (!listing) return;
        const of = (test) => listing.items.filter(test);
        const audio = of((m) => m.modality === "audio");
        // Audio is one modality in the API: the engine tells a transcriber from a voice (a remote may be either).
        const prefer = (engines) => audio.filter((m) => engines.has(m.engine) || m.engine === "remote");
        container.append(el("div", { class: "playground" },
          chat(of((m) => m.modality === "chat"), urls), embed(of((m) => m.modality === "embedding")),
          rerank(of((m) => m.modality === "rerank")),
          image(of((m) => m.modality === "image"), urls), transcribe(prefer(TRANSCRIBERS)),
          speech(prefer(SPEAKERS), urls)));
      });
    return () => made.forEach((url) => URL.revokeObjectURL(url));
  },
};
