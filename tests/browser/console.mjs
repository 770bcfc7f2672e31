// Drives the operator console in a real browser, one scenario per run, and prints what it saw
// as one JSON report on stdout; tests/it/console.rs arranges JetStream before, asserts on the
// report and on what JetStream stored after.
//
//   {"scenario": "...", "ok": true | false, "error": "step: why" | null, "steps": [...],
//    "observed": {...},                      what the scenario read off the page
//    "screenshots": [...],                   files written (both widths)
//    "console_errors": [...], "console_warnings": [...], "page_errors": [...],
//    "failed_requests": [...], "token_in_urls": [...], "overflow": [...]}
//
// Usage: node tests/browser/console.mjs --base http://127.0.0.1:PORT --scenario NAME
//          [--screenshots DIR] [--token JWT] [--readonly-token JWT] [--backlog N --live N]
//          [--phase pause|resume|delete]
//
// Scenarios: streams, tail, replay, gap, consumers, push, auth, throughput. Every wait has a
// deadline; nothing sleeps. Exit status: 0 when the scenario ran to its end, 1 when a step
// failed, 2 when the tooling is missing.

import { join } from "node:path";
import { options, print, repo, screenshots, watch, withBrowser, PHONE } from "./lib.mjs";

const opts = options(["base", "scenario", "screenshots", "token", "readonly-token", "backlog", "live", "phase"]);
if (!opts.base || !opts.scenario) {
  process.stderr.write("usage: console.mjs --base http://127.0.0.1:PORT --scenario NAME\n");
  process.exit(64);
}
const base = opts.base.replace(/\/$/, "");
const shotDir = opts.screenshots ?? join(repo, "target/console-screenshots");
const WAIT = 15000;

const report = {
  scenario: opts.scenario,
  ok: false,
  error: null,
  steps: [],
  observed: {},
  screenshots: [],
  overflow: [],
};
let currentStep = "start";

function step(name) {
  currentStep = name;
  report.steps.push(name);
}

// --- Page helpers ---------------------------------------------------------------------------------

async function open(page, hash) {
  await page.goto(`${base}/${hash}`, { waitUntil: "load", timeout: WAIT });
  await page.locator("main h1").first().waitFor({ timeout: WAIT });
}

/// Waits until `predicate(arg)` holds in the page.
async function until(page, what, predicate, arg, timeout = WAIT) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (err) {
    throw new Error(`timed out waiting for ${what}: ${err.message.split("\n")[0]}`);
  }
}

const tailState = (page) =>
  page.evaluate(() => {
    const badge = document.getElementById("tail-state");
    return badge ? { ...badge.dataset } : null;
  });

/// Every item the tail keeps, in order: the view is virtual (only rows on screen exist), so
/// this scrolls through it a screen at a time, then back.
const tailItems = (page) =>
  page.evaluate(async () => {
    const scroller = document.getElementById("tail-scroll");
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const seen = new Map();
    const saved = scroller.scrollTop;
    for (let top = 0; ; top += Math.max(1, scroller.clientHeight - 56)) {
      scroller.scrollTop = top;
      await frame();
      for (const row of document.querySelectorAll("#tail-rows .trow:not([hidden])")) {
        const kind = row.classList.contains("msg") ? "msg" : row.classList.contains("gap") ? "gap" : "caught_up";
        seen.set(Number(row.dataset.id), { kind, seq: Number(row.dataset.seq), from: Number(row.dataset.from), to: Number(row.dataset.to), text: row.textContent });
      }
      if (top + scroller.clientHeight >= scroller.scrollHeight) break;
    }
    scroller.scrollTop = saved > scroller.scrollHeight - scroller.clientHeight - 28 ? scroller.scrollHeight : saved;
    await frame();
    return [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([, item]) => item);
  });

const rowSeqs = async (page) => (await tailItems(page)).filter((i) => i.kind === "msg").map((i) => i.seq);

async function waitLive(page, caughtUp) {
  await until(
    page,
    `the tail to be live${caughtUp === undefined ? "" : ` (caught up at #${caughtUp})`}`,
    (want) => {
      const badge = document.getElementById("tail-state");
      if (!badge || badge.dataset.state !== "live") return false;
      return want === null || badge.dataset.caughtUp === String(want);
    },
    caughtUp === undefined ? null : caughtUp,
  );
}

async function waitRow(page, seq) {
  await page.locator(`#tail-rows .msg[data-seq="${seq}"]`).waitFor({ timeout: WAIT });
}

/// Starts the tail from the controls.
async function startTail(page, { start, seq, time, filter = "" }) {
  await page.selectOption("#tail-start", start);
  if (seq !== undefined) await page.fill("#tail-seq", String(seq));
  if (time !== undefined) await page.fill("#tail-time", time);
  await page.fill("#tail-filter", filter);
  await page.click("#tail-apply");
}

async function publishWithForm(page, { subject, payload, headers = "", key = "", contentType = "" }) {
  await page.fill("#pub-subject", subject);
  await page.fill("#pub-content-type", contentType);
  await page.fill("#pub-headers", headers);
  await page.fill("#pub-payload", payload);
  await page.fill("#pub-key", key);
  const before = await page.locator("#publish-result").evaluate((node) => node.textContent);
  await page.click("#pub-submit");
  await until(page, "the publish result", (old) => {
    const node = document.getElementById("publish-result");
    return node && node.textContent !== "" && node.firstElementChild && node.textContent !== old;
  }, before);
  return page.evaluate(() => {
    const node = document.querySelector("#publish-result > .note");
    return {
      text: node ? node.textContent : "",
      seq: node && node.dataset.seq ? Number(node.dataset.seq) : null,
      duplicate: node && node.dataset.duplicate ? node.dataset.duplicate === "true" : null,
      problem: node && node.classList.contains("problem"),
      title: node?.querySelector(".problem-title")?.textContent ?? null,
      detail: node?.querySelector(".problem-detail")?.textContent ?? null,
    };
  });
}

async function inspectRow(page, seq) {
  await page.click(`#tail-rows .msg[data-seq="${seq}"]`);
  await until(page, `the inspector to show #${seq}`, (s) => document.getElementById("inspector-title")?.textContent === `Message #${s}`, seq);
  return inspector(page);
}

const inspector = (page) =>
  page.evaluate(() => {
    const box = document.getElementById("inspector");
    const payload = box.querySelector("pre.payload");
    return {
      title: box.querySelector("h3")?.textContent ?? null,
      headers: Object.fromEntries(Array.from(box.querySelectorAll("table.headers tr"), (tr) => [tr.cells[0].textContent, tr.cells[1].textContent])),
      kind: payload ? payload.className.replace("payload", "").trim() : null,
      payload: payload ? payload.textContent : null,
    };
  });

/// Screenshots at both widths, with a check that nothing is wider than the phone screen.
async function shoot(page, name, { dark = false } = {}) {
  if (dark) await page.emulateMedia({ colorScheme: "dark" });
  await screenshots(page, shotDir, name, report.screenshots);
  await page.setViewportSize(PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) report.overflow.push(`${name}: ${overflow}px wider than ${window.innerWidth ?? 390}px`);
  await page.setViewportSize({ width: 1280, height: 800 });
  if (dark) await page.emulateMedia({ colorScheme: "light" });
}

async function apiCall(method, path, body, token = opts.token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// What a row of the push subscriptions table shows.
const pushRow = (page, name) =>
  page.evaluate((key) => {
    const row = document.querySelector(`#push tr[data-key="${key}"]`);
    if (!row) return null;
    const text = (selector) => row.querySelector(selector)?.textContent ?? null;
    const value = (selector) => {
      const node = row.querySelector(selector);
      return node ? Number(node.dataset.value) : null;
    };
    const pause = row.querySelector("td.actions button:first-child");
    return {
      name: text("td.name strong"),
      description: text(".push-description"),
      url: text(".push-url .url"),
      state: row.querySelector(".push-state .badge")?.dataset.state ?? null,
      state_text: text("td.state"),
      problem: text(".push-problem"),
      lag: value(".lag"),
      in_flight: value(".in-flight"),
      acked: value(".acked"),
      failed: value(".failed"),
      dead_lettered: value(".dead-lettered"),
      last_status: text(".last-status"),
      last_error: text(".last-error"),
      last_error_title: row.querySelector(".last-error")?.title ?? null,
      last_success: text(".last-success"),
      consecutive_failures: value(".consecutive"),
      consecutive_highlighted: row.querySelector(".consecutive")?.classList.contains("failing") ?? null,
      pause_label: pause?.getAttribute("aria-label") ?? null,
      pause_text: pause?.textContent ?? null,
      pause_disabled: pause?.disabled ?? null,
    };
  }, name);

/// Waits until the push subscription `key` shows `state` (active, paused, problem).
async function waitPushState(page, key, state) {
  await until(
    page,
    `${key} to be ${state}`,
    ([k, s]) => document.querySelector(`#push tr[data-key="${k}"] .push-state .badge`)?.dataset.state === s,
    [key, state],
  );
}

/// Deletes a push subscription through the confirmation dialog opened by `button`.
async function confirmPushDelete(page, button, name) {
  await page.getByRole("button", { name: button, exact: true }).click();
  const dialog = page.locator("dialog[open]");
  await dialog.waitFor({ timeout: WAIT });
  const seen = { title: await dialog.locator("h2").textContent() };
  const confirm = dialog.getByRole("button", { name: "Delete push subscription", exact: true });
  seen.disabled_before_typing = await confirm.isDisabled();
  await dialog.getByLabel(`Type ${name} to confirm`).fill(name.slice(0, -1));
  seen.disabled_when_mistyped = await confirm.isDisabled();
  await dialog.getByLabel(`Type ${name} to confirm`).fill(name);
  await confirm.click();
  await dialog.waitFor({ state: "detached", timeout: WAIT });
  await page.locator(`#push tr[data-key="${name}"]`).waitFor({ state: "detached", timeout: WAIT });
  await page.locator(`#consumers tr[data-key="${name}"]`).waitFor({ state: "detached", timeout: WAIT });
  return seen;
}

// --- Scenarios ------------------------------------------------------------------------------------

const scenarios = {
  // Create a stream through the UI, edit its limits, delete another one with confirmation.
  async streams(page) {
    step("list");
    await open(page, "#/");
    await page.locator('tr[data-key="TEMP"]').waitFor({ timeout: WAIT });
    await shoot(page, "streams-list");
    await shoot(page, "streams-list-dark", { dark: true });
    const colours = async (scheme) => {
      await page.emulateMedia({ colorScheme: scheme });
      return page.evaluate(() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]);
    };
    report.observed.colours = { dark: await colours("dark"), light: await colours("light") };

    step("create");
    await page.getByRole("link", { name: "New stream" }).first().click();
    await page.getByLabel("Name", { exact: true }).fill("AUDIT");
    await page.getByLabel("Subjects").fill("audit.>");
    await page.getByLabel("Description").fill("Audit trail");
    await page.getByLabel("Max age").fill("24h");
    await page.getByLabel("Max bytes").fill("1MiB");
    await page.getByLabel("Duplicate window").fill("5m");
    await shoot(page, "stream-new");
    await page.getByRole("button", { name: "Create stream" }).click();
    await page.getByRole("heading", { level: 1, name: "AUDIT" }).waitFor({ timeout: WAIT });
    await waitLive(page, 0);
    report.observed.created_heading = true;

    step("edit");
    await page.getByRole("link", { name: "Edit", exact: true }).click();
    await until(page, "the edit form to load", () => document.getElementById("stream-subjects")?.value === "audit.>");
    report.observed.edit_form = await page.evaluate(() => ({
      name_disabled: document.getElementById("stream-name").disabled,
      max_age: document.getElementById("stream-max-age").value,
      max_bytes: document.getElementById("stream-max-bytes").value,
      dup_window: document.getElementById("stream-dup-window").value,
    }));
    await page.getByLabel("Max messages", { exact: true }).fill("1000");
    await shoot(page, "stream-edit");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByRole("heading", { level: 1, name: "AUDIT" }).waitFor({ timeout: WAIT });
    await until(page, "max_msgs 1000 in the configuration", () =>
      Array.from(document.querySelectorAll(".config dt")).some((dt) => dt.textContent === "max_msgs" && dt.nextElementSibling.textContent === "1000"),
    );

    step("delete with confirmation");
    await open(page, "#/");
    await page.locator('tr[data-key="AUDIT"]').waitFor({ timeout: WAIT });
    await page.getByRole("button", { name: "Delete TEMP" }).click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor({ timeout: WAIT });
    const confirm = dialog.getByRole("button", { name: "Delete stream" });
    report.observed.confirm_disabled_before_typing = await confirm.isDisabled();
    await dialog.getByLabel("Type TEMP to confirm").fill("TEM");
    report.observed.confirm_disabled_when_mistyped = await confirm.isDisabled();
    await shoot(page, "confirm-delete");
    await dialog.getByLabel("Type TEMP to confirm").fill("TEMP");
    await confirm.click();
    await page.locator('tr[data-key="TEMP"]').waitFor({ state: "detached", timeout: WAIT });
    report.observed.rows = await page.evaluate(() => Array.from(document.querySelectorAll("tbody tr[data-key]"), (tr) => tr.dataset.key));
    await shoot(page, "streams-after");
  },

  // Inspect stored messages, publish through the form and see it in the live tail, pause and
  // resume, a duplicate, a problem+json error, copy as curl, keyboard use.
  async tail(page) {
    step("open the stream page");
    await open(page, "#/streams/ORDERS");
    await waitLive(page, 3);
    report.observed.initial_rows = await rowSeqs(page);

    step("inspect");
    report.observed.inspect_json = await inspectRow(page, 1);
    report.observed.inspect_text = await inspectRow(page, 2);
    report.observed.inspect_binary = await inspectRow(page, 3);
    await shoot(page, "inspector-binary");

    step("publish through the form");
    report.observed.published = await publishWithForm(page, {
      subject: "orders.new",
      headers: "Order-Type: express",
      payload: '{"order_id": 42, "items": [1, 2]}',
      key: "order-42",
    });
    await waitRow(page, report.observed.published.seq);
    report.observed.inspect_published = await inspectRow(page, report.observed.published.seq);
    await shoot(page, "stream-page");
    await shoot(page, "stream-page-dark", { dark: true });

    step("publish the same key again");
    report.observed.republished = await publishWithForm(page, {
      subject: "orders.new",
      headers: "Order-Type: express",
      payload: '{"order_id": 42, "items": [1, 2]}',
      key: "order-42",
    });

    step("copy as curl");
    await inspectRow(page, report.observed.published.seq);
    await page.getByRole("button", { name: "Copy as curl" }).click();
    await until(page, "the copy to finish", () => /Copied|select the command/.test(document.querySelector("#inspector [aria-live]")?.textContent ?? ""));
    report.observed.curl_status = await page.evaluate(() => document.querySelector("#inspector [aria-live]").textContent);
    report.observed.curl = await page.evaluate(() => navigator.clipboard.readText());
    report.observed.curl_shown = await page.evaluate(() => document.querySelector("#inspector pre.curl").textContent);

    step("pause");
    await page.click("#tail-pause");
    await until(page, "the tail to pause", () => document.getElementById("tail-state").dataset.state === "paused");
    report.observed.paused_publish = await publishWithForm(page, { subject: "orders.new", payload: '{"order_id": 43}', key: "order-43" });
    const pausedSeq = report.observed.paused_publish.seq;
    await until(page, "the paused message to wait in the page", () => document.getElementById("tail-state").dataset.waiting === "1");
    report.observed.paused_rows_has_new = (await rowSeqs(page)).includes(pausedSeq);
    report.observed.paused_text = await page.evaluate(() => document.getElementById("tail-text").textContent);
    await shoot(page, "tail-paused");

    step("resume");
    await page.click("#tail-pause");
    await waitRow(page, pausedSeq);
    report.observed.resumed_state = (await tailState(page)).state;

    step("problem+json error");
    report.observed.error = await publishWithForm(page, { subject: "nowhere.else", payload: "lost" });
    await shoot(page, "publish-error");

    step("keyboard");
    await page.focus("#tail-scroll");
    await page.keyboard.press("Home");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    await until(page, "the inspector to show #2 from the keyboard", () => document.getElementById("inspector-title")?.textContent === "Message #2");
    report.observed.keyboard_inspected = await page.evaluate(() => document.getElementById("inspector-title").textContent);
    report.observed.unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll("input, select, textarea"))
        .filter((c) => !c.labels?.length && !c.getAttribute("aria-label"))
        .map((c) => c.id || c.outerHTML.slice(0, 60)),
    );

    step("publish page");
    await open(page, "#/publish");
    report.observed.publish_page = await publishWithForm(page, { subject: "orders.page", payload: "from the publish page" });
    await shoot(page, "publish-page");
  },

  // Replays from a sequence, with a filter, from a time, last, new and first.
  async replay(page) {
    step("open");
    await open(page, "#/streams/ORDERS");
    await waitLive(page, 30);

    step("from sequence 11");
    await startTail(page, { start: "seq", seq: 11 });
    await waitLive(page, 30);
    report.observed.from_seq = await rowSeqs(page);
    report.observed.from_seq_markers = (await tailItems(page)).filter((i) => i.kind !== "msg").map((i) => i.text);
    await shoot(page, "replay-from-sequence");

    step("from sequence 11, filtered");
    await startTail(page, { start: "seq", seq: 11, filter: "orders.b" });
    await waitLive(page);
    report.observed.filtered = await rowSeqs(page);
    report.observed.filtered_subjects = await page.evaluate(() => Array.from(document.querySelectorAll("#tail-rows .msg .subject"), (span) => span.textContent));

    step("from a time");
    const first = await apiCall("GET", "/v1/streams/ORDERS/messages/1");
    const time = first.time.slice(0, 19); // datetime-local, seconds, in the browser's UTC
    report.observed.time_input = time;
    await startTail(page, { start: "time", time });
    await waitLive(page, 30);
    report.observed.from_time = await rowSeqs(page);

    step("last");
    await startTail(page, { start: "last" });
    await waitLive(page, 30);
    report.observed.last = await rowSeqs(page);

    step("new");
    await startTail(page, { start: "new" });
    await waitLive(page, 30);
    report.observed.new_before = await rowSeqs(page);
    const ack = await fetch(`${base}/v1/publish/orders.a`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "live one" }).then((r) => r.json());
    report.observed.new_published = ack.seq;
    await waitRow(page, ack.seq);
    report.observed.new_after = await rowSeqs(page);

    step("first");
    await startTail(page, { start: "all" });
    await waitLive(page, ack.seq);
    report.observed.all = await rowSeqs(page);
  },

  // A purge through the UI (with confirmation), then a replay from 1 shows the gaps.
  async gap(page) {
    step("open");
    await open(page, "#/streams/ORDERS");
    await waitLive(page, 10);

    step("purge below 6");
    await page.getByRole("button", { name: "Purge", exact: true }).click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor({ timeout: WAIT });
    await dialog.getByLabel("Below sequence (optional)").fill("6");
    await shoot(page, "confirm-purge");
    await dialog.getByRole("button", { name: "Purge" }).click();
    await dialog.waitFor({ state: "detached", timeout: WAIT });
    await page.getByText("Purged 5 messages from ORDERS.").waitFor({ timeout: WAIT });
    report.observed.toast = "Purged 5 messages from ORDERS.";

    step("replay from 1");
    await startTail(page, { start: "seq", seq: 1 });
    await waitLive(page, 10);
    report.observed.rows = await rowSeqs(page);
    report.observed.gaps = await page.evaluate(() => Array.from(document.querySelectorAll("#tail-gaps li"), (li) => ({ from: Number(li.dataset.from), to: Number(li.dataset.to), text: li.textContent })));
    report.observed.gap_rows = (await tailItems(page)).filter((i) => i.kind === "gap").map(({ from, to }) => ({ from, to }));
    report.observed.gaps_visible = await page.locator("#tail-gaps").isVisible();
    await shoot(page, "gap");
  },

  // Consumers: create through the UI, watch lag and ack pending move after a fetch and acks
  // through the API, edit one, delete another with confirmation.
  async consumers(page) {
    step("open");
    await open(page, "#/streams/ORDERS");
    await page.locator('#consumers tr[data-key="spare"]').waitFor({ timeout: WAIT });

    step("create");
    await page.click("#consumer-new");
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor({ timeout: WAIT });
    await dialog.getByLabel("Name", { exact: true }).fill("workers");
    await dialog.getByLabel("Ack wait").fill("30s");
    await dialog.getByLabel("Description").fill("Order workers");
    await shoot(page, "consumer-new");
    await dialog.getByRole("button", { name: "Create consumer" }).click();
    await dialog.waitFor({ state: "detached", timeout: WAIT });
    await until(page, "workers with lag 10", () => document.querySelector('#consumers tr[data-key="workers"] .lag')?.dataset.value === "10");
    const read = () =>
      page.evaluate(() => {
        const row = document.querySelector('#consumers tr[data-key="workers"]');
        return {
          lag: Number(row.querySelector(".lag").dataset.value),
          ack_pending: row.querySelector("td.ack-pending").textContent,
          lag_points: (row.querySelector("svg.spark.lag polyline")?.getAttribute("points") ?? "").split(" ").filter(Boolean).length,
          ack_floor: row.cells[7].textContent,
        };
      });
    report.observed.before = await read();

    step("fetch through the API");
    const fetched = await apiCall("POST", "/v1/streams/ORDERS/consumers/workers/fetch", { max_messages: 4, wait: "2s" });
    report.observed.fetched = fetched.messages.map((m) => m.seq);
    await until(page, "lag 6 and 4 acks pending", () => {
      const row = document.querySelector('#consumers tr[data-key="workers"]');
      return row.querySelector(".lag").dataset.value === "6" && row.querySelector("td.ack-pending").textContent === "4";
    });
    report.observed.after_fetch = await read();

    step("ack through the API");
    const acks = await apiCall("POST", "/v1/acks", { acks: fetched.messages.map((m) => ({ ack_id: m.ack_id, action: "ack" })) });
    report.observed.ack_statuses = acks.results.map((r) => r.status);
    await until(page, "no acks pending and the ack floor at #4", () => {
      const row = document.querySelector('#consumers tr[data-key="workers"]');
      return row.querySelector("td.ack-pending").textContent === "0" && row.cells[7].textContent === "#4";
    });
    report.observed.after_ack = await read();
    await shoot(page, "consumers");

    step("edit");
    await page.getByRole("button", { name: "Edit consumer workers" }).click();
    await dialog.waitFor({ timeout: WAIT });
    report.observed.edit_name_disabled = await dialog.getByLabel("Name", { exact: true }).isDisabled();
    await dialog.getByLabel("Max ack pending").fill("50");
    await dialog.getByRole("button", { name: "Save consumer" }).click();
    await dialog.waitFor({ state: "detached", timeout: WAIT });
    await page.getByText("Saved consumer workers.").waitFor({ timeout: WAIT });

    step("delete");
    await page.getByRole("button", { name: "Delete consumer spare" }).click();
    await dialog.waitFor({ timeout: WAIT });
    await dialog.getByLabel("Type spare to confirm").fill("spare");
    await dialog.getByRole("button", { name: "Delete consumer" }).click();
    await page.locator('#consumers tr[data-key="spare"]').waitFor({ state: "detached", timeout: WAIT });
    report.observed.rows = await page.evaluate(() => Array.from(document.querySelectorAll("#consumers tr[data-key]"), (tr) => tr.dataset.key));
    report.observed.ephemeral_note = await page.evaluate(() => document.getElementById("ephemeral-note").textContent);
  },

  // Push subscriptions (created through the API by the test), one phase per run so that the
  // test can check JetStream between them: "pause" reads the rows and pauses one, "resume"
  // resumes it, "delete" deletes every subscription through the confirmation dialogs.
  async push(page) {
    const phase = opts.phase ?? "pause";
    step(`${phase}: open`);
    await open(page, "#/streams/ORDERS");
    await page.locator('#push tr[data-key="hook"]').waitFor({ timeout: WAIT });
    await page.locator('#consumers tr[data-key="hook"]').waitFor({ timeout: WAIT });

    if (phase === "pause") {
      step("read the rows");
      await page.locator('#push tr[data-key="orphan"]').waitFor({ timeout: WAIT });
      await page.locator('#consumers tr[data-key="side"]').waitFor({ timeout: WAIT });
      report.observed.rows = await page.evaluate(() => Array.from(document.querySelectorAll("#push tr[data-key]"), (tr) => tr.dataset.key));
      report.observed.hook = await pushRow(page, "hook");
      report.observed.orphan = await pushRow(page, "orphan");
      report.observed.consumers = await page.evaluate(() =>
        Object.fromEntries(
          Array.from(document.querySelectorAll("#consumers tr[data-key]"), (tr) => [
            tr.dataset.key,
            {
              push_badge: tr.querySelector(".push-tag")?.textContent ?? null,
              edit: Boolean(tr.querySelector('button[aria-label^="Edit consumer"]')),
              delete: Boolean(tr.querySelector('button[aria-label^="Delete consumer"]')),
            },
          ]),
        ),
      );
      report.observed.hint = await page.evaluate(() => document.getElementById("push-hint").textContent);
      await shoot(page, "push");
      await shoot(page, "push-dark", { dark: true });

      step("pause");
      await page.getByRole("button", { name: "Pause push subscription hook" }).click();
      await waitPushState(page, "hook", "paused");
      await page.getByText("Paused push subscription hook.").waitFor({ timeout: WAIT });
      report.observed.paused = await pushRow(page, "hook");
      report.observed.api_paused = (await apiCall("GET", "/v1/streams/ORDERS/push/hook")).state.paused;
      await shoot(page, "push-paused");
    } else if (phase === "resume") {
      step("paused after a reload");
      await waitPushState(page, "hook", "paused");
      report.observed.before = await pushRow(page, "hook");

      step("resume");
      await page.getByRole("button", { name: "Resume push subscription hook" }).click();
      await waitPushState(page, "hook", "active");
      await page.getByText("Resumed push subscription hook.").waitFor({ timeout: WAIT });
      report.observed.after = await pushRow(page, "hook");
      await shoot(page, "push-resumed");
    } else if (phase === "delete") {
      step("delete hook from its row");
      report.observed.hook = await confirmPushDelete(page, "Delete push subscription hook", "hook");
      await shoot(page, "push-deleted");

      step("delete side from the consumers table");
      report.observed.side = await confirmPushDelete(page, "Delete consumer side", "side");

      step("delete orphan");
      report.observed.orphan = await confirmPushDelete(page, "Delete push subscription orphan", "orphan");
      await page.locator("#push-empty").waitFor({ state: "visible", timeout: WAIT });
      report.observed.empty = await page.evaluate(() => ({
        text: document.getElementById("push-empty").textContent,
        table_hidden: document.getElementById("push").hidden,
      }));
      report.observed.consumer_rows = await page.evaluate(() => Array.from(document.querySelectorAll("#consumers tr[data-key]"), (tr) => tr.dataset.key));
      await shoot(page, "push-empty");
    } else {
      throw new Error(`unknown phase ${phase}`);
    }
  },

  // Authentication on: the console asks for a token, keeps it in sessionStorage only, uses it
  // on HTTP (Authorization) and on the WebSocket (subprotocol), and shows 401/403 problems.
  async auth(page) {
    if (!opts.token || !opts["readonly-token"]) throw new Error("--token and --readonly-token are needed");
    step("no token");
    await open(page, "#/");
    await page.locator("#token-panel").waitFor({ state: "visible", timeout: WAIT });
    await page.locator("main .note.problem").waitFor({ timeout: WAIT });
    report.observed.unauthorized = await page.evaluate(() => ({
      title: document.querySelector("main .problem-title").textContent,
      detail: document.querySelector("main .problem-detail")?.textContent ?? null,
      focused: document.activeElement?.id ?? null,
    }));
    await shoot(page, "auth-required");

    step("read-only token");
    await page.fill("#token-input", opts["readonly-token"]);
    await page.click("#token-form button[type=submit]");
    await page.locator('tr[data-key="ORDERS"]').waitFor({ timeout: WAIT });
    report.observed.token_info = await page.evaluate(() => document.getElementById("token-info").textContent);
    await page.click('a[href="#/streams/ORDERS"]');
    await waitLive(page, 2);
    report.observed.readonly_rows = await rowSeqs(page);
    // Listing push subscriptions needs admin: a short note, not a problem box.
    await page.locator("#push-forbidden").waitFor({ timeout: WAIT });
    report.observed.push_forbidden = await page.evaluate(() => ({
      text: document.getElementById("push-forbidden").textContent,
      problem: document.querySelector("#push-status .problem") !== null,
    }));
    report.observed.forbidden = await publishWithForm(page, { subject: "orders.new", payload: '{"order_id": 7}' });

    step("admin token");
    await page.click("#token-toggle");
    await page.fill("#token-input", opts.token);
    await page.click("#token-form button[type=submit]");
    await waitLive(page, 2);
    report.observed.published = await publishWithForm(page, { subject: "orders.new", payload: '{"order_id": 8}', key: "order-8" });
    await waitRow(page, report.observed.published.seq);
    report.observed.rows = await rowSeqs(page);
    await shoot(page, "auth-stream");

    step("storage");
    report.observed.session_token_is_admin = await page.evaluate((t) => sessionStorage.getItem("jetway.token") === t, opts.token);
    report.observed.local_storage_keys = await page.evaluate(() => Object.keys(localStorage));
    report.observed.page_url = page.url();

    step("forget the token");
    await page.click("#token-toggle");
    await page.click("#token-forget");
    await page.locator("main .note.problem").first().waitFor({ timeout: WAIT });
    report.observed.after_forget = await page.evaluate(() => ({
      title: document.querySelector("main .problem-title")?.textContent ?? null,
      session: sessionStorage.getItem("jetway.token"),
    }));
  },

  // Thousands of messages a second: a replay of a large backlog, then live publishing.
  async throughput(page) {
    const backlog = Number(opts.backlog ?? "0");
    step("open");
    await open(page, "#/streams/ORDERS");
    await waitLive(page);
    await installFrameSampler(page);

    step("replay the backlog");
    const started = Date.now();
    await startTail(page, { start: "all" });
    await waitLive(page, backlog);
    const replayMs = Date.now() - started;
    const replayFrames = await frameStats(page);
    const replayRows = await page.evaluate(() => document.querySelectorAll("#tail-rows > *").length);
    const replayKept = Number((await tailState(page)).kept);
    const replayState = await tailState(page);
    report.observed.replay = {
      messages: backlog,
      ms: replayMs,
      per_second: Math.round((backlog * 1000) / replayMs),
      frames: replayFrames,
      render: renderCost(replayState, { renders: "0", renderMs: "0" }),
      rows_in_dom: replayRows,
      kept: replayKept,
      received: Number(replayState.received),
    };
    report.observed.replay_last_row = (await rowSeqs(page)).at(-1);
    await shoot(page, "throughput");

    step("publish live while tailing");
    await installFrameSampler(page);
    const live = Number(opts.live ?? "20000");
    const batch = 500;
    const publishStarted = Date.now();
    for (let i = 0; i < live; i += batch) {
      const items = [];
      for (let j = i; j < Math.min(i + batch, live); j += 1) items.push({ subject: "orders.live", data: { n: j } });
      await publishBatch(items);
    }
    const publishMs = Date.now() - publishStarted;
    await until(page, `all ${live} live messages to be received`, (want) => Number(document.getElementById("tail-state").dataset.received) >= want, backlog + live, 60000);
    await until(page, "the last live message to be rendered", (want) => document.querySelector(`#tail-rows .msg[data-seq="${want}"]`) !== null, backlog + live, 30000);
    const liveMs = Date.now() - publishStarted;
    report.observed.live = {
      messages: live,
      publish_ms: publishMs,
      publish_per_second: Math.round((live * 1000) / publishMs),
      tail_ms: liveMs,
      tail_per_second: Math.round((live * 1000) / liveMs),
      frames: await frameStats(page),
      rows_in_dom: await page.evaluate(() => document.querySelectorAll("#tail-rows > *").length),
    };
    const state = await tailState(page);
    report.observed.live.render = renderCost(state, replayState);
    report.observed.render_max_ms = Number(state.renderMaxMs);
    report.observed.received = Number(state.received);
    report.observed.kept = Number(state.kept);
    const rows = await rowSeqs(page);
    report.observed.last_row = rows.at(-1);
    report.observed.rows_kept = rows.length;
    report.observed.rows_in_order = rows.every((seq, i) => i === 0 || seq === rows[i - 1] + 1);
  },
};

/// POST /v1/publish, honouring 429 Retry-After (a fast gateway reaches the default
/// per-principal publish rate) like any well-behaved client.
async function publishBatch(items) {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const response = await fetch(`${base}/v1/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(items),
    });
    const text = await response.text();
    if (response.status === 429) {
      const seconds = Number(response.headers.get("retry-after") ?? "1");
      await new Promise((resolve) => setTimeout(resolve, Math.min(5, seconds) * 1000));
      continue;
    }
    const answer = JSON.parse(text);
    if (response.status !== 200 || answer.failed !== 0) throw new Error(`publish: ${response.status} ${text.slice(0, 300)}`);
    return;
  }
  throw new Error("publish: still rate limited after 20 attempts");
}

/// The tail's own rendering work between two readings of its status badge.
function renderCost(now, before) {
  const renders = Number(now.renders) - Number(before.renders);
  const ms = Number(now.renderMs) - Number(before.renderMs);
  return { batches: renders, total_ms: Math.round(ms), mean_ms: renders ? Math.round((ms / renders) * 10) / 10 : null };
}

/// Records the interval between animation frames, and long tasks, from now on.
async function installFrameSampler(page) {
  await page.evaluate(() => {
    if (window.__sampler) window.__sampler.stop = true;
    const sampler = { intervals: [], longTasks: [], stop: false };
    window.__sampler = sampler;
    let last = performance.now();
    const tick = (now) => {
      if (sampler.stop) return;
      sampler.intervals.push(now - last);
      last = now;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    try {
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) sampler.longTasks.push(entry.duration);
      }).observe({ type: "longtask" });
    } catch {
      // no long task API: frame intervals only
    }
  });
}

async function frameStats(page) {
  return page.evaluate(() => {
    const s = window.__sampler;
    const sorted = [...s.intervals].sort((a, b) => a - b);
    const pick = (q) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]) : null);
    return {
      frames: sorted.length,
      median_ms: pick(0.5),
      p95_ms: pick(0.95),
      max_ms: sorted.length ? Math.round(sorted[sorted.length - 1]) : null,
      long_tasks: s.longTasks.length,
      longest_task_ms: s.longTasks.length ? Math.round(Math.max(...s.longTasks)) : 0,
    };
  });
}

// --- Run --------------------------------------------------------------------------------------------

const scenario = scenarios[opts.scenario];
if (!scenario) {
  process.stderr.write(`unknown scenario ${opts.scenario}; one of ${Object.keys(scenarios).join(", ")}\n`);
  process.exit(64);
}

let seen = null;
await withBrowser(
  async (context) => {
    const page = context.pages()[0] ?? (await context.newPage());
    seen = watch(page);
    try {
      await scenario(page);
      report.ok = true;
    } catch (err) {
      report.error = `${currentStep}: ${err.message}`;
      await page.screenshot({ path: join(shotDir, `FAILED-${opts.scenario}.png`), fullPage: true }).catch(() => {});
    }
  },
  { permissions: ["clipboard-read", "clipboard-write"], timezoneId: "UTC" },
).catch((err) => {
  report.error = `browser: ${err.message}`;
});

if (seen) {
  report.console_errors = seen.console_errors;
  report.console_warnings = seen.console_warnings;
  report.page_errors = seen.page_errors;
  report.failed_requests = seen.failed_requests;
  const tokens = [opts.token, opts["readonly-token"]].filter(Boolean);
  report.token_in_urls = seen.urls.filter((url) => tokens.some((t) => url.includes(t) || url.includes(encodeURIComponent(t))));
  report.ws_urls = seen.urls.filter((url) => url.startsWith("ws"));
  // API requests sent without Authorization although a token was in sessionStorage.
  report.v1_requests = seen.requests.filter((r) => new URL(r.url).pathname.startsWith("/v1/")).map((r) => ({ method: r.method, path: new URL(r.url).pathname, authorization: r.headers.authorization ? r.headers.authorization.replace(/^Bearer .*/, "Bearer …") : null, content_type: r.headers["content-type"] ?? null }));
}
print(report);
process.exit(report.ok ? 0 : 1);
