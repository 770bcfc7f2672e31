// Shared by the browser scripts: finding playwright-core and Debian's chromium, launching it
// headless with a fresh profile, recording everything the page complains about, and taking
// screenshots at the two widths the console is made for.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/// The desktop and phone sizes every page is checked at.
export const WIDE = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export function print(report) {
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
}

/// Ends the script with a report saying the tooling is missing (exit 2).
export function missing(message) {
  print({ ok: false, error: message, missing: true });
  process.exit(2);
}

export function options(names) {
  const args = process.argv.slice(2);
  const out = {};
  for (const name of names) {
    const at = args.indexOf(`--${name}`);
    if (at >= 0 && at + 1 < args.length) out[name] = args[at + 1];
  }
  return out;
}

export function loadChromium() {
  for (const from of [resolve(repo, ".tools/node/package.json"), import.meta.url]) {
    try {
      return createRequire(from)("playwright-core").chromium;
    } catch {
      // try NODE_PATH next
    }
  }
  missing("playwright-core is not installed in .tools/node: run scripts/install-tools.sh browser (make test does)");
}

/// Launches chromium with a fresh profile; `run(context)` does the work. The profile is removed
/// afterwards whatever happens. `contextOptions`: more Playwright context options
/// (permissions, timezoneId, …).
export async function withBrowser(run, contextOptions = {}) {
  const chromium = loadChromium();
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    missing(`${executablePath} not found: run scripts/install-tools.sh browser (make test does)`);
  }
  const profile = mkdtempSync(join(tmpdir(), "jetway-chromium-"));
  let context;
  try {
    // launchPersistentContext is how Playwright takes a --user-data-dir of our choosing.
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      timeout: 30000,
      viewport: WIDE,
      ...contextOptions,
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
    return await run(context);
  } finally {
    await context?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

/// Records what a page complains about: console errors and warnings, uncaught exceptions,
/// failed requests, and every URL it requested (to check that no token ever travels in one).
export function watch(page) {
  const seen = { console_errors: [], console_warnings: [], page_errors: [], failed_requests: [], urls: [], requests: [] };
  page.on("console", (message) => {
    const text = `${message.text()} (${message.location()?.url ?? "?"})`;
    if (message.type() === "error") seen.console_errors.push(text);
    if (message.type() === "warning") seen.console_warnings.push(text);
  });
  page.on("pageerror", (error) => seen.page_errors.push(`${error.name}: ${error.message}`));
  page.on("requestfailed", (request) => {
    // A long poll or socket the test itself ends is not a failure of the page.
    const failure = request.failure()?.errorText ?? "";
    if (!failure.includes("ERR_ABORTED")) seen.failed_requests.push(`${request.method()} ${request.url()}: ${failure}`);
  });
  page.on("request", (request) => {
    seen.urls.push(request.url());
    seen.requests.push({ method: request.method(), url: request.url(), headers: request.headers() });
  });
  page.on("websocket", (socket) => seen.urls.push(socket.url()));
  return seen;
}

/// Saves full-page screenshots of the page as it is now at both widths (and restores the
/// desktop size): `<dir>/<name>-1280.png`, `<dir>/<name>-390.png`.
export async function screenshots(page, dir, name, shots) {
  mkdirSync(dir, { recursive: true });
  for (const size of [WIDE, PHONE]) {
    await page.setViewportSize(size);
    // Let layout settle for the new size: two animation frames.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const file = join(dir, `${name}-${size.width}.png`);
    await page.screenshot({ path: file, fullPage: true });
    shots.push(file);
  }
  await page.setViewportSize(WIDE);
}
