// A real browser replays a stream over WebSocket from the gateway's console page, and prints what
// it received as one JSON report on stdout:
//
//   {"console": {"status": 200, "csp": "..."},   the page the socket was opened from
//    "url": "ws://…",                            the socket's URL
//    "frames": [...],                            every frame received, parsed, up to caught_up
//    "caught_up": true | false,
//    "close": {"code", "reason"} | null,         when the socket closed before caught_up
//    "error": "..." | null,                      why no caught_up arrived
//    "csp_violations": [...],                    securitypolicyviolation events of the page
//    "console_messages": [...]}                  the page's console errors and warnings
//
// Usage: node tests/browser/replay.mjs --base http://127.0.0.1:PORT --stream ORDERS
//                                      [--query start_seq=1] [--timeout-ms 20000]
//
// Debian's /usr/bin/chromium runs headless with a fresh profile (CHROMIUM overrides the path);
// playwright-core drives it and never downloads a browser. Both are installed by
// `scripts/install-tools.sh browser` (make test runs it). Exit status: 0 when caught_up arrived,
// 1 when not, 2 when the tooling is missing.

import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function print(report) {
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
}

function missing(message) {
  print({ caught_up: false, frames: [], error: message, missing: true });
  process.exit(2);
}

const args = process.argv.slice(2);
function option(name, fallback) {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
}
const base = option("--base");
const stream = option("--stream");
const query = option("--query", "start_seq=1");
const timeoutMs = Number(option("--timeout-ms", "20000"));
if (!base || !stream) {
  process.stderr.write("usage: replay.mjs --base http://127.0.0.1:PORT --stream NAME\n");
  process.exit(64);
}

let chromium;
for (const from of [resolve(repo, ".tools/node/package.json"), import.meta.url]) {
  try {
    ({ chromium } = createRequire(from)("playwright-core"));
    break;
  } catch {
    // try NODE_PATH next
  }
}
if (!chromium) {
  missing(
    "playwright-core is not installed in .tools/node: run scripts/install-tools.sh browser " +
      "(make test does)",
  );
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  missing(`${executablePath} not found: run scripts/install-tools.sh browser (make test does)`);
}

const origin = new URL(base);
const socketUrl = `ws://${origin.host}/v1/streams/${encodeURIComponent(stream)}/ws?${query}`;
const profile = mkdtempSync(join(tmpdir(), "jetway-chromium-"));
const report = {
  console: null,
  url: socketUrl,
  frames: [],
  caught_up: false,
  close: null,
  error: null,
  csp_violations: [],
  console_messages: [],
};

let context;
try {
  // launchPersistentContext is how Playwright takes a --user-data-dir of our choosing.
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: 30000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (["error", "warning"].includes(message.type())) {
      report.console_messages.push(`${message.type()}: ${message.text()}`);
    }
  });
  const response = await page.goto(`${origin.origin}/`, { waitUntil: "load", timeout: 15000 });
  report.console = {
    status: response?.status() ?? null,
    csp: (await response?.allHeaders())?.["content-security-policy"] ?? null,
  };
  const outcome = await page.evaluate(
    ({ url, timeoutMs }) =>
      new Promise((resolve) => {
        const frames = [];
        const violations = [];
        let socket;
        let timer;
        let finished = false;
        const done = (result) => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          if (socket) {
            socket.onclose = null;
            socket.onmessage = null;
            if (socket.readyState <= WebSocket.OPEN) socket.close(1000);
          }
          // Let a securitypolicyviolation event (dispatched asynchronously) arrive first.
          setTimeout(() => resolve({ frames, violations, ...result }), 50);
        };
        // A blocked connection neither throws nor closes: the violation event is the signal.
        document.addEventListener("securitypolicyviolation", (event) => {
          violations.push({
            directive: event.effectiveDirective,
            blocked: event.blockedURI,
            policy: event.originalPolicy,
          });
          done({ error: `the page's Content-Security-Policy blocked ${event.blockedURI}` });
        });
        timer = setTimeout(
          () => done({ error: `no caught_up frame within ${timeoutMs} ms` }),
          timeoutMs,
        );
        try {
          socket = new WebSocket(url);
        } catch (err) {
          done({ error: `new WebSocket(...) threw ${err.name}: ${err.message}` });
          return;
        }
        socket.onmessage = (event) => {
          let frame;
          try {
            frame = JSON.parse(event.data);
          } catch {
            frame = { unparsed: String(event.data) };
          }
          frames.push(frame);
          if (frame.type === "caught_up") done({ caught_up: true });
        };
        socket.onclose = (event) =>
          done({
            error: "the socket closed before caught_up",
            close: { code: event.code, reason: event.reason },
          });
      }),
    { url: socketUrl, timeoutMs },
  );
  report.frames = outcome.frames;
  report.caught_up = outcome.caught_up === true;
  report.close = outcome.close ?? null;
  report.error = outcome.error ?? null;
  report.csp_violations = outcome.violations;
} catch (err) {
  report.error = `browser: ${err.message}`;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
print(report);
process.exit(report.caught_up ? 0 : 1);
