// The official openai npm package against the appliance, as a user's Node program calls it:
// `node openai_compat.mjs` with OPENAI_BASE_URL, OPENAI_API_KEY, CHAT_MODEL, AUDIO_FILE and BATCH_FILE set.
// Prints one JSON object: per operation what the SDK returned (or the error it raised); tests/compat judges it.
import fs from "node:fs";
import OpenAI, { toFile } from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 120000 }); // base URL and key from the environment, as usual
const chatModel = process.env.CHAT_MODEL;
const hello = [{ role: "user", content: "Hello" }];
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    parameters: { type: "object", properties: { city: { type: "string", enum: ["Paris", "Oslo"] } },
                  required: ["city"], additionalProperties: false },
  },
};
const results = {};

async function run(name, operation) {
  try {
    results[name] = await operation();
  } catch (error) {
    results[name] = { error: error.constructor.name, status: error.status ?? null, code: error.code ?? null,
                      type: error.type ?? null, param: error.param ?? null, requestID: error.requestID ?? null,
                      message: String(error.message).slice(0, 300) };
  }
}

await run("models.list", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  return ids;
});
await run("models.retrieve", async () => (await client.models.retrieve("whisper-1")).id);
await run("chat", async () => {
  const completion = await client.chat.completions.create({ model: chatModel, messages: hello, max_tokens: 5 });
  return { content: completion.choices[0].message.content, finish: completion.choices[0].finish_reason,
           usage: completion.usage, requestID: completion._request_id };
});
await run("chat.stream", async () => {
  const stream = await client.chat.completions.create({ model: chatModel, messages: hello, max_tokens: 5,
                                                        stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    usage = chunk.usage ?? usage;
  }
  return { text, usage };
});
await run("chat.tools", async () => {
  const completion = await client.chat.completions.create({
    model: chatModel, messages: hello, tools: [weather], max_tokens: 200, seed: 3,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  return completion.choices[0].message.tool_calls.map((call) => JSON.parse(call.function.arguments));
});
await run("chat.runTools", async () => {
  // The SDK's own tool loop: it calls the function, sends its result back and returns the final message.
  const calls = [];
  const forced = { type: "function", function: { name: "get_weather" } };
  const tool = { ...weather.function, parse: JSON.parse, function: (args) => { calls.push(args); return "sunny"; } };
  const runner = client.chat.completions.runTools({
    model: chatModel, messages: hello, max_tokens: 200, seed: 3, tool_choice: forced,
    tools: [{ type: "function", function: tool }],
  }, { maxChatCompletions: 1 });
  await runner.finalChatCompletion();
  return calls;
});
await run("completions", async () => {
  const completion = await client.completions.create({ model: chatModel, prompt: "Once upon a time", max_tokens: 4 });
  return { text: completion.choices[0].text, usage: completion.usage };
});
await run("completions.stream", async () => {
  const stream = await client.completions.create({ model: chatModel, prompt: "Once upon a time", max_tokens: 4,
                                                   stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  return text;
});
await run("embeddings", async () => {
  const answer = await client.embeddings.create({ model: "text-embedding-3-small", input: ["first", "second"] });
  return { count: answer.data.length, dimensions: answer.data[0].embedding.length, usage: answer.usage };
});
await run("embeddings.tokens", async () => {
  const answer = await client.embeddings.create({ model: "text-embedding-3-small", input: [[15339, 1917]],
                                                  encoding_format: "float" });
  return { dimensions: answer.data[0].embedding.length };
});
await run("images.url", async () => {
  const answer = await client.images.generate({ model: "dall-e-3", prompt: "a lake", size: "64x64" });
  const png = await fetch(answer.data[0].url);
  return { url: answer.data[0].url, status: png.status, keys: Object.keys(answer.data[0]).sort() };
});
await run("images.b64_json", async () => {
  const answer = await client.images.generate({ model: "dall-e-3", prompt: "a lake", size: "64x64",
                                               response_format: "b64_json" });
  return { png: Buffer.from(answer.data[0].b64_json, "base64").subarray(1, 4).toString(),
           keys: Object.keys(answer.data[0]).sort() };
});
await run("audio.transcriptions", async () => {
  const file = fs.createReadStream(process.env.AUDIO_FILE);
  const answer = await client.audio.transcriptions.create({ model: "whisper-1", file });
  return { text: typeof answer.text };
});
await run("audio.transcriptions.verbose", async () => {
  const answer = await client.audio.transcriptions.create({ model: "whisper-1", response_format: "verbose_json",
                                                            file: fs.createReadStream(process.env.AUDIO_FILE) });
  return { duration: answer.duration, segments: Array.isArray(answer.segments) };
});
let fileId = null;
await run("files.create", async () => {
  const upload = await toFile(fs.createReadStream(process.env.BATCH_FILE), "in.jsonl");
  const file = await client.files.create({ purpose: "batch", file: upload });
  fileId = file.id;
  return { purpose: file.purpose, bytes: file.bytes };
});
await run("files.list", async () => {
  const ids = [];
  for await (const file of client.files.list()) ids.push(file.id);
  return ids.includes(fileId);
});
await run("files.content", async () => (await (await client.files.content(fileId)).text()).length);
await run("batches.create", async () => {
  const batch = await client.batches.create({ input_file_id: fileId, endpoint: "/v1/embeddings",
                                              completion_window: "24h" });
  let seen = batch;
  for (let i = 0; i < 120 && !["completed", "failed"].includes(seen.status); i++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    seen = await client.batches.retrieve(batch.id);
  }
  const output = await (await client.files.content(seen.output_file_id)).text();
  return { status: seen.status, counts: seen.request_counts, lines: output.trim().split("\n").length };
});
await run("batches.list", async () => {
  let count = 0;
  for await (const _batch of client.batches.list()) count += 1;
  return count;
});
await run("error.invalid", async () => client.chat.completions.create({ model: chatModel, messages: hello,
                                                                      temperature: 5 }));
await run("error.model", async () => client.chat.completions.create({ model: "nope/none", messages: hello }));
await run("error.context", async () => client.chat.completions.create({
  model: chatModel, messages: [{ role: "user", content: "hello world ".repeat(1500) }], max_tokens: 5 }));
await run("error.key", async () => new OpenAI({ apiKey: "sgk_wrong", maxRetries: 0 }).models.list());
console.log(JSON.stringify(results));
