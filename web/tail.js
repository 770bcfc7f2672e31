// The live tail: one single-stream WebSocket with credit-based flow control. Frames are queued
// as they arrive and taken in one batch per animation frame; the view is virtual: the last
// KEPT items are held in memory and only the rows on screen (plus a few) exist in the DOM, so
// the cost of a frame does not grow with the message rate. Pausing stops taking frames and
// stops granting credit: the server stops within one credit window and the backlog stays in
// the stream, not in the page.

import { tailSocket, api, enc } from "./api.js";
import { el, fmtClock } from "./dom.js";
import { preview } from "./payload.js";

/// Messages (and gap and caught-up markers) kept to scroll back through; older ones are dropped.
export const KEPT = 1000;
/// Messages the server may send before the page grants more (the `credit` query parameter).
export const CREDIT_WINDOW = 1000;
/// Credit is granted back in chunks of at least this many taken messages.
const CREDIT_CHUNK = CREDIT_WINDOW / 4;
/// Height of a row and of the header, in CSS pixels (the stylesheet uses the same).
const ROW_HEIGHT = 28;
/// Rows drawn above and below the visible ones.
const OVERSCAN = 8;

export class LiveTail {
  /// `body`: the element rows go into (its height is the whole list's); `scroller`: the
  /// focusable element that scrolls it.
  constructor({ stream, body, scroller, onStatus, onSelect, window = CREDIT_WINDOW }) {
    Object.assign(this, { stream, body, scroller, onStatus, onSelect, window });
    this.items = [];
    this.nextId = 1;
    this.pool = [];
    this.follow = true;
    this.activeId = null;
    this.selectedId = null;
    this.socket = null;
    this.queue = [];
    this.scheduled = false;
    this.owed = 0;
    this.paused = false;
    this.retryTimer = null;
    this.rateTimer = setInterval(() => this.sampleRate(), 1000);
    this.resetCounters();
    this.phase = "idle";
    this.emittedAt = 0;
    this.problem = null;
    this.closeInfo = null;
    scroller.addEventListener("keydown", (event) => this.onKey(event));
    scroller.addEventListener(
      "scroll",
      () => {
        this.follow = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - ROW_HEIGHT;
        this.scheduleDraw();
      },
      { passive: true },
    );
    this.resizes = new ResizeObserver(() => this.scheduleDraw());
    this.resizes.observe(scroller);
    body.addEventListener("click", (event) => {
      const row = event.target.closest(".trow");
      if (row && row.dataset.id) this.select(Number(row.dataset.id));
    });
  }

  resetCounters() {
    this.received = 0;
    this.renders = 0;
    this.renderMs = 0;
    this.renderMaxMs = 0;
    this.lastSeq = 0;
    this.caughtUpSeq = null;
    this.gaps = [];
    this.rate = 0;
    this.rateBase = { at: performance.now(), count: 0 };
  }

  /// Opens the tail. `position`: {deliver}, {start_seq} or {start_time}; `filters`: subjects.
  start(position, filters) {
    this.stop();
    this.clear();
    this.resetCounters();
    this.position = position;
    this.filters = filters;
    this.opened = false;
    this.connect(position);
  }

  connect(position) {
    // base64: the page gets the stored bytes exactly (see payload.js).
    const params = { ...position, encoding: "base64", credit: String(this.window) };
    if (this.filters.length) params.filter = this.filters.join(",");
    this.owed = 0;
    this.problem = null;
    this.closeInfo = null;
    this.phase = "connecting";
    this.emit();
    const socket = tailSocket(this.stream, params);
    this.socket = socket;
    socket.onopen = () => {
      this.opened = true;
      this.attempts = 0;
      this.phase = "replaying";
      this.emit();
    };
    socket.onmessage = (event) => this.onFrame(event.data);
    socket.onclose = (event) => this.onClose(socket, event);
  }

  onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "msg":
        this.received += 1;
        this.lastSeq = frame.seq;
        this.queue.push(frame);
        break;
      case "caught_up":
      case "gap":
        if (frame.type === "gap") this.gaps.push({ from: frame.from, to: frame.to });
        this.queue.push(frame);
        break;
      case "error":
        this.problem = frame.problem || { title: "Subscription failed" };
        this.emit();
        return;
      default:
        return;
    }
    this.schedule();
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.closeInfo = { code: event.code, reason: event.reason };
    // Reconnect and resume after the last sequence seen, unless the close says not to.
    const resumable = this.opened && event.code !== 1008 && event.code !== 1011 && !this.problem;
    if (!resumable) {
      this.phase = "closed";
      this.emit();
      if (!this.opened) this.diagnose();
      return;
    }
    this.phase = "reconnecting";
    this.emit();
    this.attempts = (this.attempts || 0) + 1;
    const delay = Math.min(10000, 500 * 2 ** Math.min(this.attempts, 5));
    this.retryTimer = setTimeout(() => {
      const last = Math.max(this.lastSeq, this.caughtUpSeq || 0);
      this.connect(last > 0 ? { start_seq: String(last + 1) } : this.position);
    }, delay);
  }

  /// A socket refused at the upgrade says nothing to the page; the same checks over HTTP do.
  async diagnose() {
    try {
      await api("GET", `/v1/streams/${enc(this.stream)}`);
      this.problem = {
        title: "The gateway refused the live tail",
        detail:
          "The WebSocket was closed before it opened. Check the start position and the filter, " +
          "and that your token may read this stream.",
      };
    } catch (err) {
      this.problem = { title: err.title, detail: err.detail, code: err.code, status: err.status };
    }
    this.emit();
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.socket) {
      const socket = this.socket;
      socket.onmessage = null;
      socket.onclose = null;
      // Closing a socket that is still connecting makes the browser log an error; let it open.
      if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000);
      else socket.close(1000);
      this.socket = null;
      this.phase = "stopped";
    }
    this.queue = [];
    this.emit();
  }

  destroy() {
    this.stop();
    clearInterval(this.rateTimer);
    this.resizes.disconnect();
  }

  pause() {
    this.paused = true;
    this.emit();
  }

  resume() {
    this.paused = false;
    this.schedule();
    this.emit();
  }

  clear() {
    this.items = [];
    this.activeId = null;
    this.selectedId = null;
    this.follow = true;
    this.draw();
  }

  schedule() {
    if (this.scheduled || this.paused) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.render());
  }

  /// Redraws the visible rows at the next frame (after a scroll or a resize).
  scheduleDraw() {
    if (this.drawScheduled) return;
    this.drawScheduled = true;
    requestAnimationFrame(() => {
      this.drawScheduled = false;
      this.draw();
    });
  }

  /// One batch per animation frame: everything queued since the last one (at most a credit
  /// window of messages), appended to the kept items, then the visible rows redrawn.
  render() {
    this.scheduled = false;
    if (this.paused) return;
    const began = performance.now();
    const batch = this.queue;
    this.queue = [];
    let messages = 0;
    let phaseChanged = false;
    for (const frame of batch) {
      if (frame.type === "msg") messages += 1;
      else if (frame.type === "caught_up") {
        this.caughtUpSeq = frame.seq;
        this.phase = "live";
        phaseChanged = true;
      }
      this.items.push({ id: this.nextId++, frame });
    }
    const excess = this.items.length - KEPT;
    if (excess > 0) {
      this.items.splice(0, excess);
      // Keep what the reader looks at in place while older items go.
      if (!this.follow) this.scroller.scrollTop = Math.max(0, this.scroller.scrollTop - excess * ROW_HEIGHT);
    }
    this.draw();
    this.grant(messages);
    const spent = performance.now() - began;
    this.renders += 1;
    this.renderMs += spent;
    this.renderMaxMs = Math.max(this.renderMaxMs, spent);
    // The status line changes a few times a second at most, unless the phase changed.
    if (phaseChanged || began - this.emittedAt > 250) this.emit();
  }

  /// Sizes the list and fills the pooled rows with the items on screen.
  draw() {
    const items = this.items;
    const scroller = this.scroller;
    this.body.style.height = `${items.length * ROW_HEIGHT}px`;
    if (this.follow) scroller.scrollTop = scroller.scrollHeight;
    const top = scroller.scrollTop;
    const visible = Math.ceil(Math.max(0, scroller.clientHeight - ROW_HEIGHT) / ROW_HEIGHT) + 1;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(items.length, Math.floor(top / ROW_HEIGHT) + visible + OVERSCAN);
    while (this.pool.length < last - first) {
      const row = el(
        "div",
        { class: "trow", role: "option", id: `tail-row-${this.pool.length}`, "aria-selected": "false" },
        el("span", { class: "num" }, ""),
        el("span", { class: "time" }, ""),
        el("span", { class: "subject" }, ""),
        el("span", { class: "preview" }, ""),
      );
      this.pool.push(row);
      this.body.append(row);
    }
    let active = null;
    this.pool.forEach((row, slot) => {
      const index = first + slot;
      const item = items[index];
      if (!item) {
        if (!row.hidden) clearRow(row);
        return;
      }
      row.hidden = false;
      row.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
      row.setAttribute("aria-posinset", String(index + 1));
      row.setAttribute("aria-setsize", String(items.length));
      if (row.dataset.id !== String(item.id)) fill(row, item);
      row.classList.toggle("selected", item.id === this.selectedId);
      row.classList.toggle("active", item.id === this.activeId);
      row.setAttribute("aria-selected", String(item.id === this.selectedId));
      if (item.id === this.activeId) active = row;
    });
    if (active) scroller.setAttribute("aria-activedescendant", active.id);
    else scroller.removeAttribute("aria-activedescendant");
  }

  grant(consumed) {
    this.owed += consumed;
    if (this.owed < CREDIT_CHUNK || !this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(JSON.stringify({ op: "credit", n: this.owed }));
    this.owed = 0;
  }

  select(id) {
    const item = this.items.find((i) => i.id === id);
    if (!item || item.frame.type !== "msg") return;
    this.selectedId = id;
    this.activeId = id;
    this.draw();
    this.onSelect(item.frame);
  }

  /// Arrow keys, Page Up/Down, Home and End move the active row; Enter or Space inspects it.
  onKey(event) {
    const items = this.items;
    if (!items.length) return;
    let index = items.findIndex((i) => i.id === this.activeId);
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / ROW_HEIGHT) - 2);
    switch (event.key) {
      case "ArrowDown":
        index = index < 0 ? 0 : Math.min(items.length - 1, index + 1);
        break;
      case "ArrowUp":
        index = index < 0 ? items.length - 1 : Math.max(0, index - 1);
        break;
      case "PageDown":
        index = Math.min(items.length - 1, Math.max(0, index) + page);
        break;
      case "PageUp":
        index = Math.max(0, index - page);
        break;
      case "Home":
        index = 0;
        break;
      case "End":
        index = items.length - 1;
        break;
      case "Enter":
      case " ":
        if (index >= 0) {
          event.preventDefault();
          this.select(items[index].id);
        }
        return;
      default:
        return;
    }
    event.preventDefault();
    this.activeId = items[index].id;
    // Scroll the active row into view (below the sticky header).
    const scroller = this.scroller;
    const rowTop = index * ROW_HEIGHT;
    const room = scroller.clientHeight - ROW_HEIGHT;
    if (rowTop < scroller.scrollTop) scroller.scrollTop = rowTop;
    else if (rowTop + ROW_HEIGHT > scroller.scrollTop + room) scroller.scrollTop = rowTop + ROW_HEIGHT - room;
    this.follow = index === items.length - 1 && this.follow;
    this.draw();
  }

  sampleRate() {
    const now = performance.now();
    const elapsed = (now - this.rateBase.at) / 1000;
    if (elapsed <= 0) return;
    this.rate = (this.received - this.rateBase.count) / elapsed;
    this.rateBase = { at: now, count: this.received };
    this.emit();
  }

  /// Messages received but not shown yet (paused, or between two frames).
  waiting() {
    let n = 0;
    for (const frame of this.queue) if (frame.type === "msg") n += 1;
    return n;
  }

  emit() {
    this.emittedAt = performance.now();
    this.onStatus(this);
  }
}

/// Empties a pooled row that has nothing to show.
function clearRow(row) {
  row.hidden = true;
  row.className = "trow";
  for (const key of ["id", "seq", "from", "to"]) delete row.dataset[key];
  row.classList.remove("selected", "active");
}

/// Puts `item` into a pooled row: a message, or a gap or caught-up marker across the row.
function fill(row, item) {
  const frame = item.frame;
  const [seq, time, subject, payload] = row.children;
  row.dataset.id = String(item.id);
  delete row.dataset.seq;
  delete row.dataset.from;
  delete row.dataset.to;
  if (frame.type === "msg") {
    row.className = "trow msg";
    row.dataset.seq = String(frame.seq);
    seq.textContent = String(frame.seq);
    time.textContent = fmtClock(frame.time);
    time.title = frame.time;
    subject.textContent = frame.subject;
    payload.textContent = preview(frame);
    row.title = "";
    return;
  }
  seq.textContent = "";
  time.textContent = "";
  time.title = "";
  subject.textContent = "";
  if (frame.type === "gap") {
    row.className = "trow marker gap";
    row.dataset.from = String(frame.from);
    row.dataset.to = String(frame.to);
    const range = frame.from === frame.to ? `#${frame.from}` : `#${frame.from}–#${frame.to}`;
    payload.textContent = `Gap: ${range} will never be delivered (removed before it could be read)`;
  } else {
    row.className = "trow marker caught-up";
    row.dataset.seq = String(frame.seq);
    payload.textContent = `Caught up at #${frame.seq}: everything stored was delivered; live from here`;
  }
  row.title = payload.textContent;
}
