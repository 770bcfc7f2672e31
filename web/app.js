// The jetway operator console: streams, a live tail with a message inspector, consumers and
// their lag, and a publish form. Plain ES modules served by the gateway itself; hash routes
// (#/, #/streams/NAME, …) so that nothing but the page's own path ever reaches the server.

import { api, describeToken, enc, getToken, setToken } from "./api.js";
import {
  $,
  checkbox,
  dialog,
  el,
  field,
  fmtBytes,
  fmtNumber,
  fmtRate,
  fmtTime,
  parseCount,
  parseSize,
  problemBox,
  select,
  sparkline,
  toast,
} from "./dom.js";
import { inspect } from "./inspect.js";
import { KEPT, LiveTail } from "./tail.js";

const view = $("#view");
/// Samples kept for sparklines (one per refresh).
const HISTORY = 60;
/// How often the stream page refreshes stream and consumer state.
const REFRESH_MS = 2000;
/// Description jetway gives the ordered consumers behind WebSocket and SSE subscriptions.
const ORDERED_DESCRIPTION = "jetway replay (ordered, ephemeral)";
/// Description jetway gives the durable consumer behind a push subscription.
/// Characters of a push subscription's last error shown in its row (the rest in its title).
const ERROR_SHOWN = 80;

let current = null;

// --- Routing ------------------------------------------------------------------------------------

function route() {
  if (current && current.destroy) current.destroy();
  current = null;
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = (link.dataset.nav === "publish") === (parts[0] === "publish");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (parts.length === 0 || (parts[0] === "streams" && parts.length === 1)) current = streamsView();
  else if (parts[0] === "new-stream") current = streamFormView(null);
  else if (parts[0] === "streams" && parts.length === 2) current = streamPage(parts[1]);
  else if (parts[0] === "streams" && parts[2] === "edit") current = streamFormView(parts[1]);
  else if (parts[0] === "publish") current = publishView();
  else {
    view.replaceChildren(heading("Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the streams")));
  }
  window.scrollTo(0, 0);
  const h1 = view.querySelector("h1");
  if (h1 && !view.contains(document.activeElement)) h1.focus({ preventScroll: true });
}

/// "1 message", "2 messages".
function plural(n, word) {
  return `${fmtNumber(n)} ${word}${n === 1 ? "" : "s"}`;
}

function heading(text, ...extra) {
  return el("h1", { tabindex: "-1" }, text, ...extra);
}

/// Runs `task` now and every `ms` after it finished, while the tab is visible. A task that
/// answers "stop" (a 401: nothing changes until a token is given, which re-renders the view)
/// ends the polling.
function poll(task, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (!document.hidden && (await task()) === "stop") stopped = true;
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/// Keeps a table body in step with `items` without rebuilding rows that stay (focus and
/// selection survive a refresh). `cells(item)` answers [label, value, class?] triples; a value
/// is text, a Node (replaced on every refresh) or {keep: Node} (built once).
function syncRows(tbody, items, keyOf, cells) {
  const existing = new Map(Array.from(tbody.rows, (row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let row = existing.get(key);
    const specs = cells(item);
    if (row) existing.delete(key);
    else {
      row = el("tr", { dataset: { key } });
      for (const [label, , cls] of specs) row.append(el("td", { class: cls || "", dataset: { label } }));
    }
    specs.forEach(([, value], i) => {
      const td = row.cells[i];
      if (value && value.keep) {
        if (!td.firstChild) td.append(value.keep);
      } else if (value instanceof Node) td.replaceChildren(value);
      else {
        const text = String(value ?? "");
        if (td.textContent !== text) td.textContent = text;
      }
    });
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (wanted !== row) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

function table(caption, headers, cls = "") {
  const tbody = el("tbody");
  const node = el(
    "table",
    { class: `cards ${cls}` },
    el("caption", { class: "visually-hidden" }, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => (Array.isArray(h) ? el("th", { scope: "col", class: h[1] }, h[0]) : el("th", { scope: "col" }, h))))),
    tbody,
  );
  return { node, tbody };
}

function seqTime(seq, time) {
  return el("span", {}, el("span", { class: "mono" }, `#${fmtNumber(seq)}`), el("br"), el("small", { class: "muted mono" }, fmtTime(time)));
}

// --- Streams list -------------------------------------------------------------------------------

function streamsView() {
  const status = el("div");
  const { node, tbody } = table("Streams", [
    "Stream",
    "Subjects",
    ["Messages", "num"],
    ["Bytes", "num"],
    "First",
    "Last",
    ["Consumers", "num"],
    "Storage",
    "Actions",
  ]);
  const empty = el("p", { class: "muted", hidden: true }, "No streams yet. ", el("a", { href: "#/new-stream" }, "Create one"), ".");
  node.hidden = true;
  const refresh = async () => {
    try {
      const { streams } = await api("GET", "/v1/streams");
      status.replaceChildren();
      streams.sort((a, b) => a.name.localeCompare(b.name));
      empty.hidden = streams.length > 0;
      node.hidden = streams.length === 0;
      syncRows(tbody, streams, (s) => s.name, (s) => [
        ["Stream", { keep: el("span", {}, el("a", { href: `#/streams/${enc(s.name)}`, class: "mono strong" }, s.name)) }, "name"],
        ["Subjects", s.config.subjects.join(", "), "mono"],
        ["Messages", fmtNumber(s.state.messages), "num"],
        ["Bytes", fmtBytes(s.state.bytes), "num"],
        ["First", s.state.messages ? seqTime(s.state.first_seq, s.state.first_time) : "–"],
        ["Last", s.state.last_seq ? seqTime(s.state.last_seq, s.state.last_time) : "–"],
        ["Consumers", fmtNumber(s.state.consumer_count), "num"],
        ["Storage", `${s.config.storage} · R${s.config.replicas} · ${s.config.retention}`],
        ["Actions", { keep: streamActions(s.name, refresh) }, "actions"],
      ]);
    } catch (err) {
      status.replaceChildren(problemBox(err));
      if (err.status === 401) return "stop";
    }
    return "";
  };
  view.replaceChildren(
    el(
      "div",
      { class: "page-head" },
      heading("Streams"),
      el("span", { class: "spacer" }),
      el("a", { class: "button", href: "#/new-stream" }, "New stream"),
      el("button", { type: "button", class: "secondary", onclick: refresh }, "Refresh"),
    ),
    status,
    empty,
    el("div", { class: "table-box" }, node),
  );
  return { destroy: poll(refresh, 5000) };
}

function streamActions(name, after) {
  return el(
    "span",
    { class: "row tight" },
    el("a", { class: "button secondary small", href: `#/streams/${enc(name)}/edit`, "aria-label": `Edit ${name}` }, "Edit"),
    el("button", { type: "button", class: "secondary small", "aria-label": `Purge ${name}`, onclick: async () => (await purgeStream(name)) && after() }, "Purge"),
    el("button", { type: "button", class: "danger small", "aria-label": `Delete ${name}`, onclick: async () => (await deleteStream(name)) && after() }, "Delete"),
  );
}

async function purgeStream(name) {
  const subject = el("input", { class: "mono", autocomplete: "off", placeholder: "every subject" });
  const keep = el("input", { inputmode: "numeric", autocomplete: "off" });
  const upTo = el("input", { inputmode: "numeric", autocomplete: "off" });
  const result = await dialog({
    title: `Purge ${name}`,
    body: [
      el("p", {}, "Removes messages and keeps the stream. Sequence numbers continue where they were; readers that start before the first remaining message are told about the gap."),
      field("Only this subject (optional)", subject, "Wildcards allowed, e.g. orders.cart.>"),
      field("Keep the newest (optional)", keep, "This many messages stay."),
      field("Below sequence (optional)", upTo, "Removes messages with a lower sequence. Not together with keep."),
    ],
    confirm: "Purge",
    danger: true,
    action: async () => {
      const body = {};
      if (subject.value.trim()) body.subject = subject.value.trim();
      const k = parseCount(keep.value);
      const u = parseCount(upTo.value);
      if (Number.isNaN(k) || Number.isNaN(u)) throw new Error("Keep and below sequence are whole numbers.");
      if (k !== undefined) body.keep = k;
      if (u !== undefined) body.up_to_seq = u;
      return api("POST", `/v1/streams/${enc(name)}/purge`, body);
    },
  });
  if (result) toast(`Purged ${plural(result.purged, "message")} from ${name}.`);
  return Boolean(result);
}

async function deleteStream(name) {
  const result = await dialog({
    title: `Delete ${name}`,
    body: el("p", {}, "Deletes the stream, every message in it and its consumers. This cannot be undone."),
    confirm: "Delete stream",
    danger: true,
    confirmWith: name,
    action: () => api("DELETE", `/v1/streams/${enc(name)}`).then(() => true),
  });
  if (result) toast(`Deleted stream ${name}.`);
  return Boolean(result);
}

// --- Stream create / edit -----------------------------------------------------------------------

function streamFormView(name) {
  const editing = name !== null;
  const status = el("div");
  const form = el("form", { class: "stack", novalidate: true });
  view.replaceChildren(
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, el("a", { href: "#/" }, "Streams"), editing ? [" / ", el("a", { href: `#/streams/${enc(name)}` }, name)] : null),
    heading(editing ? `Edit ${name}` : "New stream"),
    status,
    form,
  );
  if (editing) {
    form.append(el("p", { class: "muted" }, "Loading…"));
    api("GET", `/v1/streams/${enc(name)}`)
      .then((info) => fillStreamForm(form, status, info))
      .catch((err) => {
        form.replaceChildren();
        status.replaceChildren(problemBox(err));
      });
  } else {
    fillStreamForm(form, status, null);
  }
  return {};
}

function fillStreamForm(form, status, info) {
  const c = info ? info.config : { subjects: [], retention: "limits", storage: "file", replicas: 1, discard: "old" };
  const input = (attrs, value) => el("input", { autocomplete: "off", spellcheck: "false", ...attrs, value: value ?? "" });
  const f = {
    name: input({ id: "stream-name", class: "mono", required: true, disabled: Boolean(info), pattern: "[^.*>/\\\\\\s]+" }, info ? info.name : ""),
    subjects: input({ id: "stream-subjects", class: "mono" }, c.subjects.join(", ")),
    description: input({ id: "stream-description" }, c.description),
    storage: select({ id: "stream-storage", disabled: Boolean(info) }, [["file", "file (survives restarts)"], ["memory", "memory"]], c.storage),
    retention: select({ id: "stream-retention" }, [["limits", "limits"], ["interest", "interest"], ["workqueue", "workqueue"]], c.retention),
    replicas: select({ id: "stream-replicas" }, [["1", "1"], ["3", "3"], ["5", "5"]], String(c.replicas)),
    discard: select({ id: "stream-discard" }, [["old", "old: remove the oldest"], ["new", "new: refuse new messages"]], c.discard),
    maxAge: input({ id: "stream-max-age", class: "mono", placeholder: "unlimited" }, c.max_age),
    maxBytes: input({ id: "stream-max-bytes", class: "mono", placeholder: "unlimited", inputmode: "numeric" }, c.max_bytes),
    maxMsgs: input({ id: "stream-max-msgs", class: "mono", placeholder: "unlimited", inputmode: "numeric" }, c.max_msgs),
    maxPerSubject: input({ id: "stream-max-per-subject", class: "mono", placeholder: "unlimited", inputmode: "numeric" }, c.max_msgs_per_subject),
    maxMsgSize: input({ id: "stream-max-msg-size", class: "mono", placeholder: "server's max_payload", inputmode: "numeric" }, c.max_msg_size),
    dupWindow: input({ id: "stream-dup-window", class: "mono", placeholder: "2m" }, c.duplicate_window),
  };
  const ttl = checkbox("Allow a per-message TTL (Nats-TTL)", { id: "stream-allow-ttl", checked: Boolean(c.allow_msg_ttl) });
  const atomic = checkbox("Allow atomic batch publishes", { id: "stream-allow-atomic", checked: Boolean(c.allow_atomic) });
  const submit = el("button", { type: "submit" }, info ? "Save changes" : "Create stream");
  form.replaceChildren(
    el(
      "fieldset",
      {},
      el("legend", {}, "Stream"),
      el(
        "div",
        { class: "grid" },
        field("Name", f.name, info ? "A stream's name cannot change." : "No dots, spaces, wildcards (* >) or slashes."),
        field("Subjects", f.subjects, "Comma-separated; wildcards allowed (orders.>). Default: the name."),
        field("Description", f.description),
        field("Storage", f.storage, info ? "Cannot change after creation." : "Cannot change later."),
        field("Retention", f.retention, "limits: keep until a limit; interest: while consumers need them; workqueue: until acked."),
        field("Replicas", f.replicas, "Copies in a JetStream cluster."),
      ),
    ),
    el(
      "fieldset",
      {},
      el("legend", {}, "Limits"),
      el(
        "div",
        { class: "grid" },
        field("Max age", f.maxAge, "A duration: 30s, 15m, 72h. Empty: unlimited."),
        field("Max bytes", f.maxBytes, "Bytes, or with a unit: 512MiB, 1GiB."),
        field("Max messages", f.maxMsgs),
        field("Max messages per subject", f.maxPerSubject, "1 keeps only the latest per subject."),
        field("Max message size", f.maxMsgSize, "Bytes, or with a unit: 64KiB."),
        field("When full, discard", f.discard),
      ),
    ),
    el(
      "fieldset",
      {},
      el("legend", {}, "Publishing"),
      el("div", { class: "grid" }, field("Duplicate window", f.dupWindow, "How long an Idempotency-Key is remembered (default 2m)."), ttl, atomic),
    ),
    el("div", { class: "row" }, submit, el("a", { class: "button secondary", href: info ? `#/streams/${enc(info.name)}` : "#/" }, "Cancel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const name = f.name.value.trim();
    const sizes = {
      max_bytes: parseSize(f.maxBytes.value),
      max_msgs: parseCount(f.maxMsgs.value),
      max_msgs_per_subject: parseCount(f.maxPerSubject.value),
      max_msg_size: parseSize(f.maxMsgSize.value),
    };
    const bad = Object.entries(sizes).filter(([, v]) => Number.isNaN(v));
    if (!name || bad.length) {
      status.replaceChildren(
        el("div", { class: "note problem", role: "alert" }, !name ? "A stream needs a name." : `Not a number: ${bad.map(([k]) => k).join(", ")}.`),
      );
      return;
    }
    const config = {
      subjects: f.subjects.value.split(/[\s,]+/).filter(Boolean),
      retention: f.retention.value,
      storage: f.storage.value,
      replicas: Number(f.replicas.value),
      discard: f.discard.value,
      allow_msg_ttl: ttl.querySelector("input").checked,
      allow_atomic: atomic.querySelector("input").checked,
    };
    for (const [key, value] of Object.entries(sizes)) if (value !== undefined) config[key] = value;
    if (f.maxAge.value.trim()) config.max_age = f.maxAge.value.trim();
    if (f.dupWindow.value.trim()) config.duplicate_window = f.dupWindow.value.trim();
    if (f.description.value.trim()) config.description = f.description.value.trim();
    submit.disabled = true;
    try {
      await api("PUT", `/v1/streams/${enc(name)}`, config);
      toast(info ? `Saved ${name}.` : `Created stream ${name}.`);
      location.hash = `#/streams/${enc(name)}`;
    } catch (err) {
      status.replaceChildren(problemBox(err));
      status.scrollIntoView({ block: "nearest" });
    } finally {
      submit.disabled = false;
    }
  });
  (info ? f.subjects : f.name).focus();
}

// --- Stream page ----------------------------------------------------------------------------------

function streamPage(name) {
  const status = el("div");
  const stats = el("dl", { class: "stats" });
  const rates = [];
  let lastInfo = null;
  let lastSample = null;
  let gone = false;

  // Live tail -------------------------------------------------------------------------------
  const startSelect = select(
    { id: "tail-start" },
    [
      ["recent", "Recent (last 100 sequences)"],
      ["new", "New messages only"],
      ["last", "Last message"],
      ["all", "First stored message"],
      ["seq", "From sequence…"],
      ["time", "From time…"],
    ],
    "recent",
  );
  const seqInput = el("input", { id: "tail-seq", type: "number", min: "1", step: "1", class: "mono", inputmode: "numeric" });
  const timeInput = el("input", { id: "tail-time", type: "datetime-local", step: "1" });
  const filterInput = el("input", { id: "tail-filter", class: "mono", autocomplete: "off", spellcheck: "false", placeholder: "every subject" });
  const seqField = field("Start sequence", seqInput);
  const timeField = field("Start time (your time zone)", timeInput);
  const pauseButton = el("button", { type: "button", class: "secondary", id: "tail-pause", "aria-pressed": "false" }, "Pause");
  const stopButton = el("button", { type: "button", class: "secondary", id: "tail-stop" }, "Stop");
  const clearButton = el("button", { type: "button", class: "secondary", id: "tail-clear" }, "Clear");
  const tailForm = el(
    "form",
    { class: "row controls", id: "tail-form" },
    field("Start", startSelect),
    seqField,
    timeField,
    field("Filter subjects", filterInput),
    el("div", { class: "row tight buttons" }, el("button", { type: "submit", id: "tail-apply" }, "Start"), pauseButton, stopButton, clearButton),
  );
  const tailState = el("span", { class: "badge", id: "tail-state", dataset: { state: "idle" } }, "idle");
  const tailText = el("span", { id: "tail-text" });
  const tailCounters = el("span", { class: "muted", id: "tail-counters" });
  const tailProblem = el("div", { id: "tail-problem" });
  const gapList = el("ul", { class: "gaps", id: "tail-gaps", hidden: true, role: "alert" });
  const rows = el("div", { id: "tail-rows", class: "tail-body", role: "presentation" });
  const scroller = el(
    "div",
    {
      class: "tail-scroll",
      id: "tail-scroll",
      tabindex: "0",
      role: "listbox",
      "aria-label": "Messages of the live tail: arrow keys move, Enter inspects",
    },
    el("div", { class: "tail-head", "aria-hidden": "true" }, ["Seq", "Time (UTC)", "Subject", "Payload"].map((h) => el("span", {}, h))),
    rows,
  );
  const inspector = el("aside", { class: "inspector", id: "inspector", "aria-label": "Message inspector" }, el("p", { class: "muted" }, "Select a message to inspect it."));

  let renderedGaps = 0;
  let shownProblem = null;
  const tail = new LiveTail({
    stream: name,
    body: rows,
    scroller,
    onSelect: (frame) => {
      inspect(inspector, frame);
      if (window.matchMedia("(max-width: 900px)").matches) inspector.scrollIntoView({ block: "start" });
    },
    onStatus: (t) => {
      const waiting = t.waiting();
      const state = t.paused && t.socket ? "paused" : t.phase;
      tailState.dataset.state = state;
      tailState.dataset.waiting = String(waiting);
      tailState.dataset.received = String(t.received);
      tailState.textContent = state;
      if (t.caughtUpSeq !== null) tailState.dataset.caughtUp = String(t.caughtUpSeq);
      else delete tailState.dataset.caughtUp;
      tailText.textContent =
        {
          idle: "",
          connecting: "Opening the socket…",
          replaying: "Replaying stored messages…",
          live: `Caught up at #${t.caughtUpSeq}: everything stored has been delivered; new messages appear as they are stored.`,
          paused: `Paused: ${plural(waiting, "message")} waiting in the page; the gateway holds back the rest until you resume (credit).`,
          reconnecting: `Connection lost (${t.closeInfo ? t.closeInfo.code : "?"}); resuming after #${Math.max(t.lastSeq, t.caughtUpSeq || 0)}…`,
          closed: t.closeInfo && t.closeInfo.code === 1008 ? "Closed: the token expired. Paste a fresh one and start again." : "Closed.",
          stopped: "Stopped.",
        }[state] || "";
      tailState.dataset.kept = String(t.items.length);
      tailState.dataset.renders = String(t.renders);
      tailState.dataset.renderMs = t.renderMs.toFixed(1);
      tailState.dataset.renderMaxMs = t.renderMaxMs.toFixed(1);
      tailCounters.textContent = `${fmtNumber(t.received)} received · ${fmtRate(t.rate)} msg/s · last #${fmtNumber(t.lastSeq)} · the newest ${fmtNumber(KEPT)} are kept to scroll back through`;
      pauseButton.textContent = t.paused ? "Resume" : "Pause";
      pauseButton.setAttribute("aria-pressed", String(t.paused));
      if (t.problem !== shownProblem) {
        shownProblem = t.problem;
        const p = t.problem;
        if (p) tailProblem.replaceChildren(problemBox({ status: p.status, title: p.title, detail: p.detail, code: p.code, jetstreamCode: p.jetstream_code }));
        else tailProblem.replaceChildren();
      }
      if (t.gaps.length !== renderedGaps) {
        renderedGaps = t.gaps.length;
        gapList.hidden = renderedGaps === 0;
        gapList.replaceChildren(
          ...t.gaps.map((g) =>
            el(
              "li",
              { dataset: { from: g.from, to: g.to } },
              el("strong", {}, g.from === g.to ? `Gap #${g.from}` : `Gap #${g.from}–#${g.to}`),
              `: ${plural(g.to - g.from + 1, "message")} will never be delivered; removed (by the stream's limits, a purge or a delete) before they could be read.`,
            ),
          ),
        );
      }
    },
  });

  const syncStartFields = () => {
    seqField.hidden = startSelect.value !== "seq";
    timeField.hidden = startSelect.value !== "time";
  };
  startSelect.addEventListener("change", syncStartFields);
  syncStartFields();

  function position() {
    switch (startSelect.value) {
      case "seq": {
        const seq = parseCount(seqInput.value);
        if (!seq) throw new Error("Give a start sequence of 1 or more.");
        return { start_seq: String(seq) };
      }
      case "time": {
        const when = timeInput.value ? new Date(timeInput.value) : null;
        if (!when || Number.isNaN(when.getTime())) throw new Error("Give a start time.");
        return { start_time: when.toISOString() };
      }
      case "recent": {
        const s = lastInfo ? lastInfo.state : null;
        if (!s || s.messages === 0) return { deliver: "new" };
        return { start_seq: String(Math.max(s.first_seq, s.last_seq - 99)) };
      }
      default:
        return { deliver: startSelect.value };
    }
  }

  function startTail() {
    let pos;
    try {
      pos = position();
    } catch (err) {
      tail.problem = { title: "The tail cannot start", detail: err.message };
      tail.emit();
      return;
    }
    renderedGaps = -1;
    inspector.replaceChildren(el("p", { class: "muted" }, "Select a message to inspect it."));
    tail.paused = false;
    tail.start(pos, filterInput.value.split(/[\s,]+/).filter(Boolean));
  }

  tailForm.addEventListener("submit", (event) => {
    event.preventDefault();
    startTail();
  });
  pauseButton.addEventListener("click", () => (tail.paused ? tail.resume() : tail.pause()));
  stopButton.addEventListener("click", () => tail.stop());
  clearButton.addEventListener("click", () => {
    tail.clear();
    inspector.replaceChildren(el("p", { class: "muted" }, "Select a message to inspect it."));
  });

  // Consumers -------------------------------------------------------------------------------
  const consumersStatus = el("div");
  const consumersTable = table(
    "Consumers",
    ["Consumer", "Filter", "Lag (pending)", ["Ack pending", "num"], ["Redelivered", "num"], ["Waiting", "num"], "Delivered/s", ["Ack floor", "num"], "Actions"],
    "consumers",
  );
  consumersTable.node.id = "consumers";
  consumersTable.node.hidden = true;
  const consumersEmpty = el("p", { class: "muted", hidden: true }, "No durable consumers.");
  const ephemeralNote = el("p", { class: "muted", id: "ephemeral-note" });
  const history = new Map();

  async function refreshConsumers() {
    if (gone) return;
    let list;
    try {
      ({ consumers: list } = await api("GET", `/v1/streams/${enc(name)}/consumers`));
      consumersStatus.replaceChildren();
    } catch (err) {
      consumersStatus.replaceChildren(problemBox(err));
      return err.status === 401 || err.status === 404 ? "stop" : "";
    }
    const now = performance.now();
    const durable = list.filter((c) => c.config.description !== ORDERED_DESCRIPTION).sort((a, b) => a.name.localeCompare(b.name));
    const ephemeral = list.length - durable.length;
    ephemeralNote.textContent = ephemeral
      ? `${ephemeral} live reader${ephemeral === 1 ? "" : "s"} not listed: the ordered, ephemeral consumers behind WebSocket and SSE subscriptions (this page's tail among them).`
      : "";
    for (const c of durable) {
      const h = history.get(c.name) || { lag: [], rate: [], last: null };
      const delivered = c.state.delivered.consumer_seq;
      if (h.last) {
        const dt = (now - h.last.at) / 1000;
        h.rate.push(dt > 0 ? Math.max(0, (delivered - h.last.delivered) / dt) : 0);
      }
      h.lag.push(c.state.num_pending);
      h.last = { at: now, delivered };
      if (h.lag.length > HISTORY) h.lag.shift();
      if (h.rate.length > HISTORY) h.rate.shift();
      history.set(c.name, h);
    }
    consumersEmpty.hidden = durable.length > 0;
    consumersTable.node.hidden = durable.length === 0;
    syncRows(consumersTable.tbody, durable, (c) => c.name, (c) => {
      const h = history.get(c.name);
      const rate = h.rate.length ? h.rate[h.rate.length - 1] : 0;
      const push = pushOf(c);
      return [
        [
          "Consumer",
          {
            keep: el(
              "span",
              {},
              el("strong", { class: "mono" }, c.name),
              push ? [" ", el("span", { class: "tag push-tag", title: `Delivers push subscription ${push}: see Push subscriptions below` }, "push")] : null,
              c.config.description ? [el("br"), el("small", { class: "muted" }, c.config.description)] : null,
            ),
          },
        ],
        ["Filter", (c.config.filter_subjects || []).join(", ") || "every subject", "mono"],
        ["Lag (pending)", el("span", { class: "metric" }, el("span", { class: "num lag", dataset: { value: c.state.num_pending } }, fmtNumber(c.state.num_pending)), sparkline(h.lag, { label: `Lag of ${c.name}`, kind: "lag" })), "lag-cell"],
        ["Ack pending", fmtNumber(c.state.num_ack_pending), "num ack-pending"],
        ["Redelivered", fmtNumber(c.state.num_redelivered), "num redelivered"],
        ["Waiting", fmtNumber(c.state.num_waiting), "num waiting"],
        ["Delivered/s", el("span", { class: "metric" }, el("span", { class: "num" }, fmtRate(rate)), sparkline(h.rate.map((r) => Math.round(r * 10) / 10), { label: `Delivery rate of ${c.name} (msg/s)`, kind: "rate" }))],
        ["Ack floor", `#${fmtNumber(c.state.ack_floor.stream_seq)}`, "num mono"],
        ["Actions", { keep: consumerActions(c.name, push) }, "actions"],
      ];
    });
  }

  /// The push subscription a consumer delivers, or null. Such a consumer is changed through
  /// the push API only (the consumer API answers 409), so it has no Edit button, and its
  /// Delete deletes the subscription with it.
  function pushOf(consumer) {
    return consumer.push_subscription ? consumer.name : null;
  }

  function consumerActions(consumer, push) {
    return el(
      "span",
      { class: "row tight" },
      push ? null : el("button", { type: "button", class: "secondary small", "aria-label": `Edit consumer ${consumer}`, onclick: () => editConsumer(consumer) }, "Edit"),
      el(
        "button",
        { type: "button", class: "danger small", "aria-label": `Delete consumer ${consumer}`, onclick: () => (push ? removePush(push, consumer) : removeConsumer(consumer)) },
        "Delete",
      ),
    );
  }

  async function editConsumer(consumer) {
    let info = null;
    if (consumer) {
      try {
        info = await api("GET", `/v1/streams/${enc(name)}/consumers/${enc(consumer)}`);
      } catch (err) {
        consumersStatus.replaceChildren(problemBox(err));
        return;
      }
    }
    const saved = await consumerDialog(name, info);
    if (saved) {
      toast(info ? `Saved consumer ${saved.name}.` : `Created consumer ${saved.name}.`);
      refreshLists();
    }
  }

  async function removeConsumer(consumer) {
    const done = await dialog({
      title: `Delete consumer ${consumer}`,
      body: el("p", {}, "Deletes the consumer and what it remembers (delivered and acknowledged positions). The messages stay in the stream."),
      confirm: "Delete consumer",
      danger: true,
      confirmWith: consumer,
      action: () => api("DELETE", `/v1/streams/${enc(name)}/consumers/${enc(consumer)}`).then(() => true),
    });
    if (done) {
      history.delete(consumer);
      toast(`Deleted consumer ${consumer}.`);
      refreshLists();
    }
  }

  // Push subscriptions ------------------------------------------------------------------------
  // Listed with the consumers, on the same poll. Listing them needs the admin claim: a token
  // without it gets a short note once, and the page stops asking.
  const pushStatus = el("div", { id: "push-status" });
  const pushTable = table(
    "Push subscriptions",
    [
      "Subscription",
      "URL",
      "State",
      ["Lag", "num"],
      ["In flight", "num"],
      ["Acked", "num"],
      ["Failed", "num"],
      ["Dead-lettered", "num"],
      "Last status",
      "Last success",
      ["Consecutive failures", "num"],
      "Actions",
    ],
    "push",
  );
  pushTable.node.id = "push";
  pushTable.node.hidden = true;
  const pushEmpty = el("p", { class: "muted", id: "push-empty", hidden: true }, "No push subscriptions.");
  const pushHint = el(
    "p",
    { class: "muted", id: "push-hint" },
    "Push subscriptions are created and changed through the API: ",
    el("code", {}, `PUT /v1/streams/${name}/push/{name}`),
    ".",
  );
  /// Pause/Resume and Delete of each row, built once (focus survives a refresh) and updated.
  const pushActions = new Map();
  let pushForbidden = false;
  let pushAsked = 0;
  let pushShown = 0;

  async function refreshPush() {
    if (gone || pushForbidden) return "";
    const ticket = ++pushAsked;
    let list;
    try {
      ({ push: list } = await api("GET", `/v1/streams/${enc(name)}/push`));
    } catch (err) {
      if (ticket < pushShown) return "";
      pushShown = ticket;
      if (err.status === 403) {
        pushForbidden = true;
        pushTable.node.hidden = true;
        pushEmpty.hidden = true;
        pushStatus.replaceChildren(el("p", { class: "muted", id: "push-forbidden" }, "Push subscriptions are listed for tokens with the admin claim only."));
        return "";
      }
      pushStatus.replaceChildren(problemBox(err));
      return err.status === 401 || err.status === 404 ? "stop" : "";
    }
    // An answer older than one already shown (an action refreshes outside the poll) is dropped.
    if (ticket < pushShown) return "";
    pushShown = ticket;
    pushStatus.replaceChildren();
    list.sort((a, b) => a.name.localeCompare(b.name));
    pushEmpty.hidden = list.length > 0;
    pushTable.node.hidden = list.length === 0;
    for (const key of pushActions.keys()) if (!list.some((p) => p.name === key)) pushActions.delete(key);
    syncRows(pushTable.tbody, list, (p) => p.name, (p) => {
      const s = p.state;
      const c = p.config;
      let actions = pushActions.get(p.name);
      if (!actions) {
        actions = pushRowActions(p.name);
        pushActions.set(p.name, actions);
      }
      actions.update(p);
      const count = (n, cls) => el("span", { class: cls, dataset: { value: n } }, fmtNumber(n));
      return [
        ["Subscription", el("span", {}, el("strong", { class: "mono" }, p.name), c.description ? [el("br"), el("small", { class: "muted push-description" }, c.description)] : null), "name"],
        [
          "URL",
          el(
            "span",
            { class: "push-url" },
            el("span", { class: "mono url" }, c.url),
            c.filter_subjects && c.filter_subjects.length ? [el("br"), el("small", { class: "muted mono" }, `only ${c.filter_subjects.join(", ")}`)] : null,
          ),
        ],
        ["State", pushState(s), "state"],
        ["Lag", count(s.lag, "num lag"), "num"],
        ["In flight", count(s.in_flight, "num in-flight"), "num"],
        ["Acked", count(s.acked, "num acked"), "num"],
        ["Failed", count(s.failed, "num failed"), "num"],
        ["Dead-lettered", count(s.dead_lettered, "num dead-lettered"), "num"],
        ["Last status", lastOutcome(s), "last"],
        ["Last success", el("span", { class: "mono last-success" }, s.last_success_at ? fmtTime(s.last_success_at) : "never"), "mono"],
        [
          "Consecutive failures",
          el(
            "span",
            { class: `num consecutive${s.consecutive_failures > 0 ? " failing" : ""}`, dataset: { value: s.consecutive_failures }, title: s.consecutive_failures > 0 ? "Attempts failed since the last accepted delivery" : null },
            fmtNumber(s.consecutive_failures),
          ),
          "num",
        ],
        ["Actions", { keep: actions.node }, "actions"],
      ];
    });
    return "";
  }

  function pushState(s) {
    if (s.problem) {
      return el("span", { class: "push-state" }, el("span", { class: "badge", dataset: { state: "problem" } }, "Problem"), el("br"), el("small", { class: "push-problem" }, s.problem));
    }
    if (s.paused) {
      // A pause until resumed has no end.
      const until = s.pause_until ? el("small", { class: "muted" }, ` until ${fmtTime(s.pause_until)}`) : null;
      return el("span", { class: "push-state" }, el("span", { class: "badge", dataset: { state: "paused" } }, "Paused"), until);
    }
    return el("span", { class: "push-state" }, el("span", { class: "badge", dataset: { state: "active" } }, "Active"));
  }

  function lastOutcome(s) {
    if (s.last_status === undefined && !s.last_error) return el("span", { class: "muted" }, s.last_attempt_at ? "no answer" : "no attempt yet");
    const error = s.last_error || "";
    const chars = Array.from(error);
    const shown = chars.length > ERROR_SHOWN ? `${chars.slice(0, ERROR_SHOWN).join("")}…` : error;
    return el(
      "span",
      { class: "push-last", title: s.last_attempt_at ? `Last attempt ${fmtTime(s.last_attempt_at)}` : null },
      el("strong", { class: `mono last-status${s.last_status >= 200 && s.last_status < 300 ? "" : " failing"}` }, s.last_status === undefined ? "no answer" : String(s.last_status)),
      error ? [el("br"), el("small", { class: "last-error", title: error }, shown)] : null,
    );
  }

  function pushRowActions(push) {
    let current = null;
    let busy = false;
    const pause = el("button", { type: "button", class: "secondary small" }, "Pause");
    pause.addEventListener("click", async () => {
      if (busy || !current) return;
      const resuming = current.state.paused;
      busy = true;
      pause.disabled = true;
      try {
        await api(resuming ? "DELETE" : "POST", `/v1/streams/${enc(name)}/push/${enc(push)}/pause`);
        toast(resuming ? `Resumed push subscription ${push}.` : `Paused push subscription ${push}.`);
      } catch (err) {
        pushStatus.replaceChildren(problemBox(err));
      } finally {
        busy = false;
        pause.disabled = Boolean(current && current.state.problem);
      }
      refreshLists();
    });
    const remove = el("button", { type: "button", class: "danger small", "aria-label": `Delete push subscription ${push}`, onclick: () => removePush(push) }, "Delete");
    return {
      node: el("span", { class: "row tight" }, pause, remove),
      update(info) {
        current = info;
        const label = info.state.paused ? "Resume" : "Pause";
        if (pause.textContent !== label) pause.textContent = label;
        pause.setAttribute("aria-label", `${label} push subscription ${push}`);
        if (!busy) pause.disabled = Boolean(info.state.problem);
      },
    };
  }

  /// Deletes a push subscription (its consumer and counts too). From the consumers table,
  /// `consumer` is given: a consumer left behind by a subscription that no longer exists is
  /// deleted as a consumer.
  async function removePush(push, consumer) {
    const done = await dialog({
      title: `Delete push subscription ${push}`,
      body: [
        el("p", {}, "Deletes the push subscription, its consumer and its counts: nothing more is delivered to its URL. The messages stay in the stream."),
        consumer ? el("p", { class: "muted" }, `The consumer ${consumer} belongs to this push subscription.`) : null,
      ],
      confirm: "Delete push subscription",
      danger: true,
      confirmWith: push,
      action: async () => {
        try {
          await api("DELETE", `/v1/streams/${enc(name)}/push/${enc(push)}`);
        } catch (err) {
          if (!(consumer && err.status === 404 && err.code === "push_not_found")) throw err;
          await api("DELETE", `/v1/streams/${enc(name)}/consumers/${enc(consumer)}`);
        }
        return true;
      },
    });
    if (done) {
      history.delete(consumer || push);
      toast(`Deleted push subscription ${push}.`);
      refreshLists();
    }
  }

  /// Consumers, then push subscriptions (not asked for when the consumers answered 401 or 404).
  async function refreshLists() {
    if ((await refreshConsumers()) === "stop") return "stop";
    return refreshPush();
  }

  // Stream state ------------------------------------------------------------------------------
  const subjectsList = el("datalist", { id: "stream-subject-list" });
  const configBox = el("dl", { class: "config" });
  const title = heading(name);
  const description = el("p", { class: "muted" });

  async function refreshStream() {
    if (gone) return;
    let info;
    try {
      info = await api("GET", `/v1/streams/${enc(name)}`);
      status.replaceChildren();
    } catch (err) {
      status.replaceChildren(problemBox(err));
      if (err.status === 404) {
        gone = true;
        tail.stop();
      }
      return err.status === 401 || err.status === 404 ? "stop" : "";
    }
    const first = lastInfo === null;
    lastInfo = info;
    const now = performance.now();
    if (lastSample) {
      const dt = (now - lastSample.at) / 1000;
      rates.push(dt > 0 ? Math.max(0, (info.state.last_seq - lastSample.seq) / dt) : 0);
      if (rates.length > HISTORY) rates.shift();
    }
    lastSample = { at: now, seq: info.state.last_seq };
    const s = info.state;
    const c = info.config;
    description.textContent = c.description || "";
    const stat = (label, ...value) => [el("div", { class: "stat" }, el("dt", {}, label), el("dd", {}, ...value))];
    const rate = rates.length ? rates[rates.length - 1] : 0;
    stats.replaceChildren(
      ...stat("Messages", el("span", { id: "stat-messages" }, fmtNumber(s.messages))),
      ...stat("Bytes", fmtBytes(s.bytes)),
      ...stat("First", s.messages ? seqTime(s.first_seq, s.first_time) : "–"),
      ...stat("Last", s.last_seq ? seqTime(s.last_seq, s.last_time) : "–"),
      ...stat("Subjects", el("span", { class: "mono" }, c.subjects.join(", ")), el("br"), el("small", { class: "muted" }, `${fmtNumber(s.num_subjects)} stored`)),
      ...stat("Consumers", fmtNumber(s.consumer_count)),
      ...stat("Deleted inside", fmtNumber(s.num_deleted)),
      ...stat("Publish rate", el("span", { class: "metric" }, `${fmtRate(rate)} msg/s`, sparkline(rates.map((r) => Math.round(r * 10) / 10), { label: "Messages stored per second", kind: "rate" }))),
    );
    subjectsList.replaceChildren(...c.subjects.filter((x) => !/[*>]/.test(x)).map((x) => el("option", { value: x })));
    configBox.replaceChildren(
      ...Object.entries(c).flatMap(([k, v]) => [el("dt", { class: "mono" }, k), el("dd", { class: "mono" }, Array.isArray(v) ? v.join(", ") : String(v))]),
      el("dt", { class: "mono" }, "created"),
      el("dd", { class: "mono" }, fmtTime(info.created)),
    );
    if (first) startTail();
  }

  const publish = publishForm({ subjects: subjectsList, placeholderFrom: () => (lastInfo ? lastInfo.config.subjects[0] : "") });

  view.replaceChildren(
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, el("a", { href: "#/" }, "Streams"), " / ", name),
    el(
      "div",
      { class: "page-head" },
      title,
      el("span", { class: "spacer" }),
      el("a", { class: "button secondary", href: `#/streams/${enc(name)}/edit` }, "Edit"),
      el("button", { type: "button", class: "secondary", onclick: async () => (await purgeStream(name)) && refreshStream() }, "Purge"),
      el("button", { type: "button", class: "danger", onclick: async () => (await deleteStream(name)) && (location.hash = "#/") }, "Delete"),
    ),
    description,
    status,
    stats,
    el(
      "section",
      { class: "panel", "aria-labelledby": "tail-title" },
      el("h2", { id: "tail-title" }, "Live tail"),
      tailForm,
      el("p", { class: "tail-status", "aria-live": "polite" }, tailState, " ", tailText),
      el("p", { class: "tail-counters" }, tailCounters),
      tailProblem,
      gapList,
      el("div", { class: "tail-split" }, scroller, inspector),
    ),
    el(
      "section",
      { class: "panel", "aria-labelledby": "consumers-title" },
      el("div", { class: "page-head" }, el("h2", { id: "consumers-title" }, "Consumers"), el("span", { class: "spacer" }), el("button", { type: "button", class: "secondary", id: "consumer-new", onclick: () => editConsumer(null) }, "New consumer")),
      consumersStatus,
      consumersEmpty,
      el("div", { class: "table-box" }, consumersTable.node),
      ephemeralNote,
    ),
    el(
      "section",
      { class: "panel", "aria-labelledby": "push-title" },
      el("h2", { id: "push-title" }, "Push subscriptions"),
      pushStatus,
      pushEmpty,
      el("div", { class: "table-box" }, pushTable.node),
      pushHint,
    ),
    el(
      "div",
      { class: "columns" },
      el("section", { class: "panel", "aria-labelledby": "publish-title" }, el("h2", { id: "publish-title" }, "Publish"), publish),
      el("section", { class: "panel", "aria-labelledby": "config-title" }, el("h2", { id: "config-title" }, "Configuration"), configBox),
    ),
    subjectsList,
  );
  const stopStream = poll(refreshStream, REFRESH_MS);
  const stopConsumers = poll(refreshLists, REFRESH_MS);
  return {
    destroy() {
      gone = true;
      stopStream();
      stopConsumers();
      tail.destroy();
    },
  };
}

// --- Consumer create / edit ---------------------------------------------------------------------

async function consumerDialog(stream, info) {
  const c = info ? info.config : { deliver_policy: "all" };
  const input = (attrs, value) => el("input", { autocomplete: "off", spellcheck: "false", class: "mono", ...attrs, value: value ?? "" });
  const f = {
    name: input({ id: "consumer-name", required: true, disabled: Boolean(info) }, info ? info.name : ""),
    deliver: select(
      { id: "consumer-deliver", disabled: Boolean(info) },
      [
        ["all", "all: every stored message"],
        ["last", "last"],
        ["new", "new: from now on"],
        ["last_per_subject", "last per subject"],
        ["by_start_sequence", "from a sequence"],
        ["by_start_time", "from a time"],
      ],
      c.deliver_policy,
    ),
    startSeq: input({ id: "consumer-start-seq", inputmode: "numeric" }, c.opt_start_seq),
    startTime: input({ id: "consumer-start-time", placeholder: "2026-11-26T08:00:00Z" }, c.opt_start_time),
    filters: input({ id: "consumer-filters" }, (c.filter_subjects || []).join(", ")),
    ackWait: input({ id: "consumer-ack-wait", placeholder: "30s" }, c.ack_wait),
    maxDeliver: input({ id: "consumer-max-deliver", inputmode: "numeric", placeholder: "unlimited" }, c.max_deliver),
    backoff: input({ id: "consumer-backoff", placeholder: "1s, 10s, 1m" }, (c.backoff || []).join(", ")),
    maxAckPending: input({ id: "consumer-max-ack-pending", inputmode: "numeric", placeholder: "1000" }, c.max_ack_pending),
    maxWaiting: input({ id: "consumer-max-waiting", inputmode: "numeric", placeholder: "512" }, c.max_waiting),
    inactive: input({ id: "consumer-inactive", placeholder: "never" }, c.inactive_threshold),
    description: el("input", { id: "consumer-description", autocomplete: "off", value: c.description ?? "" }),
    deadLetter: input({ id: "consumer-dead-letter", placeholder: "none" }, c.dead_letter_subject),
  };
  return dialog({
    title: info ? `Edit consumer ${info.name}` : `New consumer on ${stream}`,
    body: el(
      "div",
      { class: "grid" },
      field("Name", f.name, info ? "A consumer's name cannot change." : "A durable pull consumer: workers fetch from it and ack."),
      field("Deliver", f.deliver, info ? "Fixed once created: delete and recreate to change." : "Where it starts."),
      field("Start sequence", f.startSeq, "With “from a sequence”."),
      field("Start time", f.startTime, "RFC 3339, with “from a time”."),
      field("Filter subjects", f.filters, "Comma-separated; empty: every subject."),
      field("Ack wait", f.ackWait, "Redelivered when not acked within this."),
      field("Max deliver", f.maxDeliver),
      field("Backoff", f.backoff, "Redelivery delays, comma-separated."),
      field("Max ack pending", f.maxAckPending),
      field("Max waiting fetches", f.maxWaiting),
      field("Inactive threshold", f.inactive, "Deleted after this long without fetches."),
      field("Dead letter subject", f.deadLetter, "Copies of given-up and terminated messages."),
      field("Description", f.description),
    ),
    confirm: info ? "Save consumer" : "Create consumer",
    action: async () => {
      const name = f.name.value.trim();
      if (!name) throw new Error("A consumer needs a name.");
      const config = { deliver_policy: f.deliver.value };
      const numbers = { max_deliver: f.maxDeliver, max_ack_pending: f.maxAckPending, max_waiting: f.maxWaiting, opt_start_seq: f.startSeq };
      for (const [key, control] of Object.entries(numbers)) {
        const value = parseCount(control.value);
        if (Number.isNaN(value)) throw new Error(`${key} is a whole number.`);
        if (value !== undefined) config[key] = value;
      }
      const text = { opt_start_time: f.startTime, ack_wait: f.ackWait, inactive_threshold: f.inactive, description: f.description, dead_letter_subject: f.deadLetter };
      for (const [key, control] of Object.entries(text)) if (control.value.trim()) config[key] = control.value.trim();
      const filters = f.filters.value.split(/[\s,]+/).filter(Boolean);
      if (filters.length) config.filter_subjects = filters;
      const backoff = f.backoff.value.split(/[\s,]+/).filter(Boolean);
      if (backoff.length) config.backoff = backoff;
      if (info && info.config.metadata) config.metadata = info.config.metadata;
      return api("PUT", `/v1/streams/${enc(stream)}/consumers/${enc(name)}`, config);
    },
  });
}

// --- Publish --------------------------------------------------------------------------------------

/// The publish form: subject, content type, headers, payload, idempotency key. It publishes
/// through `POST /v1/publish` (JSON), with the payload's exact bytes in `data_base64`.
function publishForm({ subjects, placeholderFrom }) {
  const subject = el("input", { id: "pub-subject", class: "mono", required: true, autocomplete: "off", spellcheck: "false", list: subjects ? subjects.id : null });
  const contentType = el("input", { id: "pub-content-type", class: "mono", autocomplete: "off", list: "pub-content-types", placeholder: "automatic" });
  const types = el("datalist", { id: "pub-content-types" }, ["application/json", "text/plain; charset=utf-8", "application/octet-stream"].map((v) => el("option", { value: v })));
  const headers = el("textarea", { id: "pub-headers", class: "mono", rows: "2", spellcheck: "false", placeholder: "Order-Type: express" });
  const payload = el("textarea", { id: "pub-payload", class: "mono", rows: "5", spellcheck: "false", placeholder: '{"order_id": 1001}' });
  const key = el("input", { id: "pub-key", class: "mono", autocomplete: "off", spellcheck: "false", placeholder: "order-1001" });
  const submit = el("button", { type: "submit", id: "pub-submit" }, "Publish");
  const result = el("div", { id: "publish-result", "aria-live": "polite" });
  const form = el(
    "form",
    { class: "stack publish", id: "publish-form" },
    field("Subject", subject),
    field("Content type", contentType, "Empty: application/json when the payload parses as JSON, else text/plain."),
    types,
    field("Headers", headers, "One “Name: value” a line; stored as message headers."),
    field("Payload", payload),
    field("Idempotency key", key, "Optional: the same key within the stream's duplicate window stores one message."),
    el("div", { class: "row" }, submit),
    result,
  );
  if (placeholderFrom) subject.addEventListener("focus", () => subject.placeholder || (subject.placeholder = placeholderFrom() || ""));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const item = { subject: subject.value.trim() };
    const text = payload.value;
    let type = contentType.value.trim();
    if (!type) {
      try {
        JSON.parse(text);
        type = "application/json";
      } catch {
        type = "text/plain; charset=utf-8";
      }
    }
    item.content_type = type;
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    item.data_base64 = btoa(binary);
    const parsed = {};
    for (const line of headers.value.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf(":");
      if (at <= 0) {
        result.replaceChildren(el("div", { class: "note problem", role: "alert" }, `Not a header line (Name: value): ${line}`));
        return;
      }
      parsed[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    if (Object.keys(parsed).length) item.headers = parsed;
    if (key.value.trim()) item.idempotency_key = key.value.trim();
    submit.disabled = true;
    try {
      const answer = await api("POST", "/v1/publish", [item]);
      const r = answer.results[0];
      if (r.error) {
        result.replaceChildren(problemBox({ status: r.status, title: r.error.title, detail: r.error.detail, code: r.error.code, jetstreamCode: r.error.jetstream_code }));
      } else {
        result.replaceChildren(
          el(
            "div",
            { class: `note ${r.duplicate ? "warn" : "ok"}`, dataset: { seq: r.seq, duplicate: r.duplicate } },
            r.duplicate
              ? [el("strong", {}, "Duplicate"), `: ${r.stream} #${r.seq} was already stored with this idempotency key; nothing new was stored.`]
              : [el("strong", {}, "Stored"), ` in ${r.stream} as `, el("a", { href: `#/streams/${enc(r.stream)}` }, `#${r.seq}`), "."],
          ),
        );
      }
    } catch (err) {
      result.replaceChildren(problemBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function publishView() {
  const subjects = el("datalist", { id: "all-subjects" });
  view.replaceChildren(
    heading("Publish"),
    el("p", { class: "muted" }, "Publishes one message. A 2xx answer means JetStream stored it."),
    el("section", { class: "panel narrow" }, publishForm({ subjects })),
    subjects,
  );
  api("GET", "/v1/streams")
    .then(({ streams }) => {
      const options = streams.flatMap((s) => s.config.subjects).filter((x) => !/[*>]/.test(x));
      subjects.replaceChildren(...options.map((x) => el("option", { value: x })));
    })
    .catch(() => {});
  return {};
}

// --- Header: token and readiness ------------------------------------------------------------------

function setupToken() {
  const panel = $("#token-panel");
  const toggle = $("#token-toggle");
  const input = $("#token-input");
  const info = $("#token-info");
  const alert = $("#token-alert");
  const show = (open) => {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
  };
  const describe = () => {
    const token = getToken();
    toggle.textContent = token ? "Token: set" : "Token";
    if (!token) {
      info.textContent = "No token in this tab.";
      return;
    }
    const claims = describeToken(token);
    if (!claims) {
      info.textContent = "A token is set (not a JWT this page can read; the gateway decides).";
      return;
    }
    const grants = claims.jetway || {};
    const parts = [`Token of ${claims.sub || "an unnamed subject"}`];
    if (claims.exp) {
      const minutes = Math.round((claims.exp * 1000 - Date.now()) / 60000);
      parts.push(minutes >= 0 ? `expires in ${minutes} min` : `expired ${-minutes} min ago`);
    }
    const can = [];
    if (grants.admin) can.push("admin");
    if (grants.read && grants.read.length) can.push(`read ${grants.read.join(", ")}`);
    if (grants.publish && grants.publish.length) can.push(`publish ${grants.publish.join(", ")}`);
    parts.push(can.length ? `grants ${can.join("; ")}` : "no grants");
    info.textContent = `${parts.join(" · ")}.`;
  };
  toggle.addEventListener("click", () => {
    show(panel.hidden);
    if (!panel.hidden) input.focus();
  });
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value);
    input.value = "";
    alert.hidden = true;
    toast(getToken() ? "Token kept for this tab." : "Token cleared.");
    show(false);
    route();
  });
  $("#token-forget").addEventListener("click", () => {
    setToken("");
    input.value = "";
    toast("Token forgotten.");
    route();
  });
  window.addEventListener("jetway:token", describe);
  window.addEventListener("jetway:unauthorized", () => {
    alert.hidden = false;
    if (!panel.hidden) return;
    show(true);
    input.focus();
  });
  describe();
}

async function checkReady() {
  const pill = $("#ready");
  const label = pill.querySelector(".label");
  try {
    const response = await fetch("/readyz", { cache: "no-store", credentials: "omit" });
    pill.className = `pill ${response.ok ? "ready" : "unready"}`;
    label.textContent = response.ok ? "ready" : "not ready";
    pill.title = response.ok ? "GET /readyz: JetStream answers" : "GET /readyz: JetStream does not answer";
  } catch {
    pill.className = "pill unready";
    label.textContent = "unreachable";
  }
}

setupToken();
checkReady();
setInterval(checkReady, 10000);
window.addEventListener("hashchange", route);
route();
