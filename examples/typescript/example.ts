// jetway from TypeScript with openapi-fetch and types generated from openapi/openapi.json.
//
//   node generate.mjs ../../openapi/openapi.json schema.d.ts && npx tsc
//   JETWAY_URL=http://127.0.0.1:8081 JETWAY_TOKEN=$(jetway token --admin --read '*' --publish '>') \
//     node out/example.js
//
// It creates a stream, publishes bytes with an Idempotency-Key (twice: the repeat is a
// duplicate), shows a failed precondition as a typed Problem, publishes a batch, creates a
// consumer, fetches with a long poll, acks, and reads a message back raw. Every step checks what
// it got; the last line printed is a JSON summary.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];
// Node's own, declared here so that the example needs no @types/node.
declare const process: { env: Record<string, string | undefined> };

const STREAM = process.env.JETWAY_STREAM ?? "SDK_TS";
const SUBJECT = `${STREAM.toLowerCase()}.orders`;
// Keys and the consumer are new on every run, so that the program can run again and again.
const RUN = Math.random().toString(16).slice(2, 10);
// Bytes that are neither UTF-8 nor JSON: they must come back exactly as sent.
const PAYLOAD = Uint8Array.from({ length: 256 }, (_, i) => i);

const client = createClient<paths>({
  baseUrl: process.env.JETWAY_URL ?? "http://127.0.0.1:8080",
  headers: { Authorization: `Bearer ${process.env.JETWAY_TOKEN}` },
});

function fail(what: string, detail: unknown): never {
  throw new Error(`${what}: ${JSON.stringify(detail)}`);
}

/** Publishes bytes with an Idempotency-Key, retrying what is safe to retry with the same key. */
async function publish(key: string, payload: Uint8Array) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const { data, error, response } = await client.POST("/v1/publish/{subject}", {
      params: { path: { subject: SUBJECT }, header: { "Idempotency-Key": key } },
      body: payload,
      // The body goes out as it is, not as JSON.
      bodySerializer: (body) => body as Uint8Array,
      headers: { "Content-Type": "application/octet-stream" },
    });
    if (data) return data;
    // 429 and 503 carry Retry-After; after a 504 the outcome is unknown. The same key stores the
    // message at most once.
    if ([429, 503, 504].includes(response.status)) {
      const seconds = Number(response.headers.get("retry-after") ?? "1");
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    fail(`publish answered ${response.status}`, error);
  }
  fail("publish", "no success after 5 attempts");
}

// 1. A stream (201 created, or 200 when it already exists so configured).
{
  const { error } = await client.PUT("/v1/streams/{stream}", {
    params: { path: { stream: STREAM } },
    body: { subjects: [`${STREAM.toLowerCase()}.>`] },
  });
  if (error) fail("create stream", error);
}

// 2. Bytes, byte-exact, with an Idempotency-Key; the same key again is a duplicate.
const first = await publish(`order-${RUN}-1`, PAYLOAD);
const again = await publish(`order-${RUN}-1`, PAYLOAD);
if (first.duplicate || !again.duplicate || again.seq !== first.seq) fail("duplicate", { first, again });

// 3. A precondition that does not hold: 412, a typed Problem with a stable code.
const late = await client.POST("/v1/publish/{subject}", {
  params: {
    path: { subject: SUBJECT },
    header: { "Nats-Expected-Last-Subject-Sequence": String(first.seq + 1000) },
  },
  body: new TextEncoder().encode("late"),
  bodySerializer: (body) => body as Uint8Array,
  headers: { "Content-Type": "application/octet-stream" },
});
const problem: Problem | undefined = late.error;
if (late.response.status !== 412 || problem?.code !== "precondition_failed") fail("precondition", late.error);

// 4. A batch: each item gets its own result.
const batch = await client.POST("/v1/publish", {
  body: [
    { subject: SUBJECT, data: { order_id: 1002 }, idempotency_key: `order-${RUN}-2` },
    { subject: SUBJECT, data: "plain text" },
  ],
});
if (batch.response.status !== 200 || batch.data?.stored !== 2) fail("batch", batch.data ?? batch.error);

// 5. A durable consumer from the first message, a long-poll fetch, and an ack of what came.
const consumer = `workers-${RUN}`;
const created = await client.PUT("/v1/streams/{stream}/consumers/{consumer}", {
  params: { path: { stream: STREAM, consumer } },
  body: { deliver_policy: "by_start_sequence", opt_start_seq: first.seq, ack_wait: "30s", max_deliver: 5 },
});
if (created.response.status !== 201) fail("create consumer", created.error);
const fetched = await client.POST("/v1/streams/{stream}/consumers/{consumer}/fetch", {
  params: { path: { stream: STREAM, consumer } },
  body: { max_messages: 10, wait: "5s" },
});
const messages = fetched.data?.messages ?? fail("fetch", fetched.error);
if (messages[0]?.seq !== first.seq) fail("fetch order", messages);
const acked = await client.POST("/v1/acks", {
  body: { acks: messages.map((m) => ({ ack_id: m.ack_id ?? fail("ack_id", m), action: "ack" as const })) },
});
if (acked.response.status !== 200 || !acked.data?.results.every((r) => r.status === 200)) {
  fail("ack", acked.data ?? acked.error);
}

// 6. The first message back, raw.
const raw = await client.GET("/v1/streams/{stream}/messages/{seq}", {
  params: { path: { stream: STREAM, seq: first.seq } },
  headers: { Accept: "application/octet-stream" },
  parseAs: "arrayBuffer",
});
const bytes = new Uint8Array(raw.data ?? fail("raw read", raw.error));
const equal = bytes.length === PAYLOAD.length && bytes.every((b, i) => b === PAYLOAD[i]);
if (!equal) fail("raw bytes differ", Array.from(bytes.slice(0, 16)));

console.log(
  JSON.stringify({
    stream: STREAM,
    seq: first.seq,
    duplicate: again.duplicate,
    precondition: problem.code,
    batch_stored: batch.data.stored,
    fetched: messages.length,
    acked: acked.data.results.length,
    raw_bytes_equal: equal,
    raw_content_type: raw.response.headers.get("content-type"),
  }),
);
