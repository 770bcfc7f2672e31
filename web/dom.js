// DOM helpers. Server data only ever becomes text nodes or attribute values: no markup is ever
// parsed from strings (the page's Trusted Types policy would refuse it anyway).

export const $ = (selector, root = document) => root.querySelector(selector);

/// el("tr", {class: "x", onclick: fn, dataset: {seq: 1}}, child, "text", [more])
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/// A labelled form field: <div class="field"><label for=id>…</label><input id=id …><small>hint</small></div>
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintNode = hint ? el("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return el("div", { class: "field" }, el("label", { for: id }, label), control, hintNode);
}

export function checkbox(label, attrs) {
  const input = el("input", { type: "checkbox", ...attrs });
  return el("div", { class: "field check" }, el("label", {}, input, " ", label));
}

export function select(attrs, options, selected) {
  return el(
    "select",
    attrs,
    options.map(([value, label]) => el("option", { value, selected: value === selected }, label)),
  );
}

// --- Formatting -------------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat("en-US");

export function fmtNumber(n) {
  return n === undefined || n === null ? "–" : numberFormat.format(n);
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/// RFC 3339 (UTC, ns) → "2026-11-26 09:00:00.123Z".
export function fmtTime(value) {
  if (!value) return "–";
  return value.replace("T", " ").replace(/\.(\d{3})\d*Z$/, ".$1Z");
}

/// RFC 3339 → "09:00:00.123" (UTC), for dense rows.
export function fmtClock(value) {
  const match = /T(\d\d:\d\d:\d\d)(\.\d{1,3})?/.exec(value || "");
  return match ? `${match[1]}${(match[2] || ".000").padEnd(4, "0")}` : "";
}

export function fmtRate(perSecond) {
  if (!Number.isFinite(perSecond)) return "–";
  return perSecond >= 100 ? numberFormat.format(Math.round(perSecond)) : perSecond.toFixed(perSecond >= 10 ? 0 : 1);
}

/// Parses "1048576", "512KiB", "1 GB", "10MiB" into bytes; "" → undefined; NaN when invalid.
export function parseSize(text) {
  const value = text.trim();
  if (!value) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?$/i.exec(value);
  if (!match) return NaN;
  const unit = (match[2] || "").toLowerCase().replace(/b$/, "");
  const powers = { "": 0, k: 1, m: 2, g: 3, t: 4, ki: 1, mi: 2, gi: 3, ti: 4 };
  if (!(unit in powers)) return NaN;
  const base = unit.endsWith("i") || unit === "" ? 1024 : 1000;
  return Math.round(Number(match[1]) * base ** powers[unit]);
}

export function parseCount(text) {
  const value = text.trim();
  if (!value) return undefined;
  return /^\d+$/.test(value) ? Number(value) : NaN;
}

// --- Errors, toasts, dialogs ------------------------------------------------------------------

/// A problem+json error as the user sees it: title, code, detail, JetStream's code.
export function problemBox(error) {
  const box = el(
    "div",
    { class: "note problem", role: "alert" },
    el("strong", { class: "problem-title" }, `${error.status ? `${error.status} ` : ""}${error.title || "Request failed"}`),
    error.code ? el("span", { class: "tag" }, error.code) : null,
    error.detail ? el("div", { class: "problem-detail" }, error.detail) : null,
    error.jetstreamCode ? el("div", { class: "muted" }, `JetStream error code ${error.jetstreamCode}`) : null,
  );
  if (error.status === 401) {
    box.append(el("div", {}, "Paste a token under ", el("strong", {}, "Token"), " at the top of the page."));
  }
  return box;
}

export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  const item = el("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/// A modal dialog. On confirm it runs `action()` (which may be async) and closes with its
/// result; an error thrown by `action` is shown in the dialog, which stays open. Cancel or Esc:
/// null. `confirmWith`: a text the user must type before the confirm button enables.
export function dialog({ title, body = [], confirm = "Confirm", danger = false, confirmWith, action }) {
  return new Promise((resolve) => {
    const titleId = `d-${Math.random().toString(36).slice(2, 9)}`;
    const typed = confirmWith
      ? el("input", { type: "text", autocomplete: "off", spellcheck: "false", class: "mono" })
      : null;
    const ok = el("button", { type: "submit", class: danger ? "danger" : "" }, confirm);
    const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
    const error = el("div", { class: "dialog-error" });
    const form = el(
      "form",
      { class: "dialog-form" },
      el("h2", { id: titleId }, title),
      el("div", { class: "dialog-body" }, body),
      typed ? field(`Type ${confirmWith} to confirm`, typed) : null,
      error,
      el("div", { class: "row end" }, cancel, ok),
    );
    const box = el("dialog", { "aria-labelledby": titleId }, form);
    let result = null;
    let busy = false;
    if (typed) {
      ok.disabled = true;
      typed.addEventListener("input", () => {
        ok.disabled = typed.value !== confirmWith;
      });
    }
    cancel.addEventListener("click", () => box.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (busy || (typed && typed.value !== confirmWith)) return;
      busy = true;
      ok.disabled = true;
      error.replaceChildren();
      try {
        result = action ? await action(form) : true;
        box.close();
      } catch (err) {
        error.replaceChildren(err.status !== undefined ? problemBox(err) : el("div", { class: "note problem", role: "alert" }, err.message));
      } finally {
        busy = false;
        ok.disabled = Boolean(typed && typed.value !== confirmWith);
      }
    });
    box.addEventListener("close", () => {
      box.remove();
      resolve(result);
    });
    document.body.append(box);
    box.showModal();
    (typed || box.querySelector("input:not([disabled]), select:not([disabled]), textarea") || ok).focus();
  });
}

// --- Sparklines -------------------------------------------------------------------------------

/// A small line chart of `values` (numbers), drawn as inline SVG. The label says what it shows
/// for screen readers; the last value is printed next to it by the caller.
export function sparkline(values, { label, width = 120, height = 28, kind = "" } = {}) {
  const points = values.filter((v) => Number.isFinite(v));
  const min = Math.min(0, ...points);
  const max = Math.max(1, ...points);
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const y = (v) => (height - 2 - ((v - min) / (max - min)) * (height - 4)).toFixed(1);
  const coords = points.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`);
  if (coords.length === 1) coords.push(`${width},${y(points[0])}`);
  const summary = points.length
    ? `${label}: last ${points[points.length - 1]}, min ${Math.min(...points)}, max ${Math.max(...points)} over ${points.length} samples`
    : `${label}: no samples yet`;
  return svg(
    "svg",
    {
      class: `spark ${kind}`,
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": summary,
    },
    svg("title", {}, summary),
    coords.length
      ? [
          svg("polygon", { class: "area", points: `0,${height} ${coords.join(" ")} ${width},${height}` }),
          svg("polyline", { class: "line", points: coords.join(" ") }),
        ]
      : svg("line", { class: "baseline", x1: 0, y1: height - 1, x2: width, y2: height - 1 }),
  );
}
