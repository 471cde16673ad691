// The playground chat's attachments: images and sounds (uploaded or recorded) as the chat's content parts.
// Everything happens in the page: no library, nothing fetched. A recording, or audio that is neither WAV nor MP3,
// is decoded by the browser and sent as 16 kHz mono WAV (what the gateway would make of it anyway).

import { el } from "./dom.js";
import { recordButton } from "./record.js";

const AUDIO_RATE = 16000;

// The media type of a file by its first bytes (the gateway refuses a data: URL whose type lies about them).
export function sniff(bytes) {
  const starts = (...values) => values.every((v, i) => bytes[i] === v);
  const ascii = (from, text) => [...text].every((c, i) => bytes[from + i] === c.charCodeAt(0));
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (ascii(0, "GIF8")) return "image/gif";
  if (ascii(0, "RIFF") && ascii(8, "WEBP")) return "image/webp";
  if (ascii(0, "RIFF") && ascii(8, "WAVE")) return "audio/wav";
  if (ascii(0, "ID3") || (bytes[0] === 0xff && (bytes[1] & 0xe6) === 0xe2)) return "audio/mpeg";
  return null;
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// Any audio the browser can decode, as 16 kHz mono 16-bit WAV.
async function toWav(blob) {
  const context = new AudioContext();
  let decoded;
  try {
    decoded = await context.decodeAudioData(await blob.arrayBuffer());
  } finally {
    context.close();
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * AUDIO_RATE));
  const offline = new OfflineAudioContext(1, frames, AUDIO_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const samples = (await offline.startRendering()).getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, value) => [...value].forEach((c, i) => out.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); out.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, AUDIO_RATE, true); out.setUint32(28, AUDIO_RATE * 2, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, samples.length * 2, true);
  samples.forEach((s, i) => out.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new Uint8Array(out.buffer);
}

// The content part of one attachment.
async function partOf(item) {
  const bytes = new Uint8Array(await item.blob.arrayBuffer());
  const type = sniff(bytes);
  if (item.kind === "image") {
    return { type: "image_url", image_url: { url: `data:${type || item.blob.type};base64,${base64(bytes)}` } };
  }
  if (type === "audio/wav" || type === "audio/mpeg") {
    return { type: "input_audio", input_audio: { data: base64(bytes), format: type === "audio/wav" ? "wav" : "mp3" } };
  }
  return { type: "input_audio", input_audio: { data: base64(await toWav(item.blob)), format: "wav" } };
}

// The request as a snippet shows it: media data cut short (the real request carries all of it).
export function abbreviated(body) {
  return JSON.parse(JSON.stringify(body, (key, value) => {
    if (typeof value !== "string" || value.length < 200) return value;
    if (key === "url" || key === "data") return `${value.slice(0, 48)}…(${value.length} characters)`;
    return value;
  }));
}

// The attachment controls of a chat form; ``urls.make(blob)`` makes (and later revokes) an object URL.
export function attachments(urls) {
  const items = [];
  const input = el("input", { type: "file", accept: "image/*,audio/*", multiple: true, id: "chat-attach" });
  const record = el("button", { type: "button", class: "secondary", text: "Record" });
  const list = el("ul", { class: "attachments", id: "chat-attachments" });
  const hint = el("p", { class: "muted small", id: "chat-media-hint" });

  function show() {
    list.replaceChildren(...items.map((item, index) => el("li", {},
      el("span", { text: `${item.kind === "image" ? "Image" : "Sound"}: ${item.name}` }),
      el("button", { type: "button", class: "ghost", text: "Remove", "aria-label": `Remove ${item.name}`,
        onclick: () => { items.splice(index, 1); show(); } }))));
  }
  function add(blob, name) {
    const kind = (blob.type || "").startsWith("audio/") ? "audio" : "image";
    items.push({ blob, name, kind });
    show();
  }
  input.addEventListener("change", () => {
    for (const file of input.files) add(file, file.name);
    input.value = "";
  });
  recordButton(record, (blob) => { add(blob, "recording"); hint.textContent = "The recording is attached."; },
    (text) => { hint.textContent = text; });

  return {
    node: el("div", { class: "field wide" }, el("label", { for: input.id, text: "Attach images or sounds" }),
      el("div", { class: "row" }, input, record), list, hint),
    // What the selected model takes, from its capabilities in /v1/models.
    fitTo(model) {
      const caps = (model && model.capabilities) || [];
      const takes = [caps.includes("vision") && "images", caps.includes("audio_input") && "sounds"].filter(Boolean);
      hint.textContent = takes.length ? `This model takes ${takes.join(" and ")}.`
        : "This model takes text only: it refuses attachments.";
    },
    count: () => items.length,
    parts: () => Promise.all(items.map(partOf)),
    // The attachments as the transcript shows them.
    previews: () => items.map((item) => (item.kind === "image"
      ? el("img", { class: "attachment", src: urls.make(item.blob), alt: item.name })
      : el("audio", { class: "attachment", controls: true, src: urls.make(item.blob), title: item.name }))),
    clear() { items.length = 0; show(); },
  };
}
