// The official openai npm package against the appliance: `node client.mjs BASE_URL KEY EMBED_MODEL [CHAT_MODEL]`.
// Trusts the appliance's CA only through NODE_EXTRA_CA_CERTS, as docs/trusting-the-box.md tells a user to.
// Prints one JSON line: what the SDK got back (tests/tls judge it).
import OpenAI from "openai";

const [baseURL, apiKey, embedModel, chatModel] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });
const result = {};
try {
  const models = [];
  for await (const model of client.models.list()) models.push(model.id);
  result.models = models;
  const embedding = await client.embeddings.create({ model: embedModel, input: ["over TLS"] });
  result.dimensions = embedding.data[0].embedding.length;
  if (chatModel) {
    const stream = await client.chat.completions.create({
      model: chatModel, messages: [{ role: "user", content: "Hello" }], max_tokens: 8, stream: true,
    });
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      chunks += 1;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    result.chat = { chunks, finish };
  }
} catch (error) {
  // fetch wraps the TLS failure in causes: the innermost says what went wrong (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE)
  const causes = [];
  for (let cause = error.cause; cause; cause = cause.cause) causes.push(cause.code || cause.message);
  result.error = `${error.constructor.name}: ${error.message}` + (causes.length ? ` (${causes.join(" <- ")})` : "");
}
console.log(JSON.stringify(result));
