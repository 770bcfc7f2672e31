// The message inspector: metadata, headers, the payload as JSON, text or a hex dump, and the
// message as a curl command (to read it, or to publish it again).

import { baseUrl, enc, getToken } from "./api.js";
import { el, fmtTime } from "./dom.js";
import { bytesToBase64, classify, hexDump, prettyJson, utf8 } from "./payload.js";

/// Single-quoted for a POSIX shell.
export function shellQuote(text) {
  return `'${String(text).replace(/'/g, `'\\''`)}'`;
}

const NOT_REPUBLISHED = /^nats-(expected-|msg-id$|rollup$)/i;

const CONTENT_TYPE_OF_KIND = { json: "application/json", text: "text/plain; charset=utf-8", binary: "application/octet-stream" };

/// A curl command that publishes the same message again (same subject, headers and bytes).
/// A message stored without a Content-Type gets the one that reads back the same way.
export function publishCurl(frame, { bytes, kind }) {
  const lines = [`curl -X POST ${shellQuote(`${baseUrl()}/v1/publish/${enc(frame.subject)}`)}`];
  if (getToken()) lines.push(`-H "Authorization: Bearer $JETWAY_TOKEN"`);
  let contentType = null;
  for (const [name, value] of Object.entries(frame.headers || {})) {
    const lower = name.toLowerCase();
    if (lower === "content-type") contentType = value;
    else if (lower === "nats-msg-id") lines.push(`-H ${shellQuote(`Idempotency-Key: ${value}`)}`);
    else if (lower === "nats-ttl") lines.push(`-H ${shellQuote(`Nats-TTL: ${value}`)}`);
    else if (NOT_REPUBLISHED.test(name) || lower.startsWith("nats-")) continue;
    else if (lower === "traceparent" || lower === "tracestate") lines.push(`-H ${shellQuote(`${name}: ${value}`)}`);
    else lines.push(`-H ${shellQuote(`X-Msg-${name}: ${value}`)}`);
  }
  lines.push(`-H ${shellQuote(`Content-Type: ${contentType || CONTENT_TYPE_OF_KIND[kind]}`)}`);
  const text = utf8(bytes);
  if (text !== null && !text.includes("\0")) {
    lines.push(`--data-binary ${shellQuote(text)}`);
    return lines.join(" \\\n  ");
  }
  lines.push("--data-binary @-");
  return `printf %s ${shellQuote(bytesToBase64(bytes))} | base64 -d |\n${lines.join(" \\\n  ")}`;
}

/// A curl command that reads the message.
export function readCurl(frame) {
  const lines = [`curl -s ${shellQuote(`${baseUrl()}/v1/streams/${enc(frame.stream)}/messages/${frame.seq}`)}`];
  if (getToken()) lines.push(`-H "Authorization: Bearer $JETWAY_TOKEN"`);
  return lines.join(" \\\n  ");
}

/// Renders `frame` into `box`.
export function inspect(box, frame) {
  const headers = Object.entries(frame.headers || {});
  const payload = classify(frame);
  const view = {
    json: () => el("pre", { class: "payload json" }, prettyJson(payload.text)),
    text: () => el("pre", { class: "payload text" }, payload.text),
    binary: () => el("pre", { class: "payload hex" }, hexDump(payload.bytes)),
  }[payload.kind]();
  const kind = { json: "JSON", text: "UTF-8 text", binary: "binary, shown in hex" }[payload.kind];
  const curlOut = el("pre", { class: "curl", hidden: true, tabindex: "0", "aria-label": "curl command" });
  const copyStatus = el("span", { class: "muted", "aria-live": "polite" });

  async function copy(which) {
    const command = which === "read" ? readCurl(frame) : publishCurl(frame, payload);
    curlOut.textContent = command;
    curlOut.hidden = false;
    try {
      await navigator.clipboard.writeText(command);
      copyStatus.textContent = "Copied to the clipboard.";
    } catch {
      copyStatus.textContent = "The browser did not allow copying: select the command below.";
    }
  }

  box.replaceChildren(
    el("h3", { id: "inspector-title", tabindex: "-1" }, `Message #${frame.seq}`),
    el(
      "dl",
      { class: "meta" },
      el("dt", {}, "Subject"),
      el("dd", { class: "mono" }, frame.subject),
      el("dt", {}, "Stored"),
      el("dd", { class: "mono", title: frame.time }, fmtTime(frame.time)),
      el("dt", {}, "Payload"),
      el("dd", {}, `${kind}, ${payload.bytes.length} bytes`),
    ),
    el("h4", {}, `Headers (${headers.length})`),
    headers.length
      ? el(
          "table",
          { class: "headers" },
          el("tbody", {}, headers.map(([k, v]) => el("tr", {}, el("th", { scope: "row", class: "mono" }, k), el("td", { class: "mono" }, v)))),
        )
      : el("p", { class: "muted" }, "none"),
    el("h4", {}, "Payload"),
    view,
    el(
      "div",
      { class: "row" },
      el("button", { type: "button", class: "secondary", onclick: () => copy("publish") }, "Copy as curl"),
      el("button", { type: "button", class: "secondary", onclick: () => copy("read") }, "Copy read command"),
      copyStatus,
    ),
    curlOut,
  );
}
