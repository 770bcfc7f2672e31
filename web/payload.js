// Message payloads. The tail asks for `encoding=base64`, so the page holds the stored bytes
// exactly and decides itself how to show them, by the gateway's own rule: JSON when the bytes
// are valid JSON and the Content-Type is JSON or absent, text when they are UTF-8, else bytes.
// JSON is re-indented as written (key order and number spelling kept), never re-serialised.

export function base64ToBytes(b64) {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function base64Length(b64) {
  const padding = (/=+$/.exec(b64) || [""])[0].length;
  return Math.floor((b64.length * 3) / 4) - padding;
}

/// The text of `bytes` when they are valid UTF-8, else null. `partial`: the bytes may end in
/// the middle of a character (a prefix of a longer payload).
export function utf8(bytes, partial = false) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes, { stream: partial });
  } catch {
    return null;
  }
}

function header(frame, name) {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(frame.headers || {})) if (key.toLowerCase() === wanted) return value;
  return null;
}

function jsonContentType(value) {
  if (value === null) return true;
  const type = value.split(";")[0].trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

/// {kind: "json" | "text" | "binary", bytes, text}
export function classify(frame) {
  const bytes = frame.encoding === "base64" ? base64ToBytes(String(frame.data)) : new TextEncoder().encode(frame.encoding === "json" ? JSON.stringify(frame.data) : String(frame.data ?? ""));
  const text = utf8(bytes);
  if (text === null) return { kind: "binary", bytes, text };
  if (jsonContentType(header(frame, "Content-Type")) && text.trim() !== "") {
    try {
      JSON.parse(text);
      return { kind: "json", bytes, text };
    } catch {
      // not JSON: text
    }
  }
  return { kind: "text", bytes, text };
}

/// A short, one-line preview for a tail row, decoding only the start of a large payload.
export function preview(frame) {
  if (frame.encoding !== "base64") {
    const text = frame.encoding === "json" ? JSON.stringify(frame.data) : String(frame.data ?? "");
    return text.length > 160 ? `${text.slice(0, 160)}…` : text;
  }
  const b64 = String(frame.data);
  const size = base64Length(b64);
  const head = b64.length > 400 ? base64ToBytes(b64.slice(0, 400)) : base64ToBytes(b64);
  const text = utf8(head, b64.length > 400);
  if (text === null) return `binary, ${size} bytes`;
  const line = text.slice(0, 200).replace(/\s+/g, " ");
  return line.length > 160 || size > head.length ? `${line.slice(0, 160)}…` : line;
}

/// Re-indents valid JSON text with two spaces, keeping every token as written.
export function prettyJson(text) {
  let out = "";
  let depth = 0;
  let inString = false;
  let escaped = false;
  const newline = () => `\n${"  ".repeat(depth)}`;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (inString) {
      out += c;
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    switch (c) {
      case '"':
        inString = true;
        out += c;
        break;
      case "{":
      case "[": {
        let j = i + 1;
        while (j < text.length && " \t\r\n".includes(text[j])) j += 1;
        if (text[j] === (c === "{" ? "}" : "]")) {
          out += c + text[j];
          i = j;
        } else {
          depth += 1;
          out += c + newline();
        }
        break;
      }
      case "}":
      case "]":
        depth -= 1;
        out += newline() + c;
        break;
      case ",":
        out += `,${newline()}`;
        break;
      case ":":
        out += ": ";
        break;
      case " ":
      case "\t":
      case "\r":
      case "\n":
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// 16 bytes a line: offset, hex, printable ASCII.
export function hexDump(bytes, limit = 4096) {
  const lines = [];
  const shown = Math.min(bytes.length, limit);
  for (let offset = 0; offset < shown; offset += 16) {
    const chunk = bytes.subarray(offset, Math.min(offset + 16, shown));
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(chunk, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47, " ")}  ${ascii}`);
  }
  if (bytes.length > shown) lines.push(`… ${bytes.length - shown} more bytes`);
  return lines.join("\n");
}
