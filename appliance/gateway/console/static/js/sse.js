// Reading a chat stream (text/event-stream) from fetch's ReadableStream, frame by frame.

import { ApiFailure } from "./api.js";

// Calls onDelta(text) per content fragment; resolves at [DONE]; an `event: error` frame rejects with its code.
export async function readChatStream(response, onDelta) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let failure = null;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      throw new ApiFailure("STREAM_LOST", `The connection was lost during the stream (${error.message}); ` +
        "the text above is what arrived.");
    }
    if (chunk.done) break;
    buffer += chunk.value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of frame.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      const text = data.join("\n");
      if (text === "[DONE]") {
        if (failure) throw failure;
        return;
      }
      if (!text) continue;
      const payload = JSON.parse(text);
      if (event === "error") {
        failure = new ApiFailure(payload.code || "BACKEND_ERROR", payload.message || "The stream failed.");
        continue;
      }
      const delta = payload.choices && payload.choices[0] && payload.choices[0].delta;
      if (delta && delta.content) onDelta(delta.content);
    }
  }
  throw failure || new ApiFailure("STREAM_LOST", "The stream ended before it was complete; the text above is " +
    "what arrived.");
}
