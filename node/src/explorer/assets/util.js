// Small helpers shared by the explorer's pages: API access, element building, formatting.

/// An API answer that is not 2xx: `status`, and the node's machine-readable `code` and `message`.
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/// GET a JSON route of the node that served this page (same origin, relative path).
export async function api(path, { signal } = {}) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: "application/json" }, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiFailure(0, "unreachable", `the node did not answer ${path}: ${e.message}`);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    throw new ApiFailure(res.status, "bad_json", `${path} did not answer JSON (status ${res.status})`);
  }
  if (!res.ok) {
    const err = body && body.error ? body.error : { code: "http_" + res.status, message: res.statusText };
    throw new ApiFailure(res.status, err.code, err.message);
  }
  return body;
}

/// Build an element: h("a", {href: "#/"}, "text", child, ...). Strings become text nodes (never HTML).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/// Replace an element's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// A shortened hash or address with the full value on hover, as a link when `href` is given.
export function short(value, href, keep = 10) {
  const text = value.length > keep * 2 + 1 ? `${value.slice(0, keep)}…${value.slice(-6)}` : value;
  return href ? h("a", { href, title: value, class: "mono" }, text) : h("span", { title: value, class: "mono" }, text);
}

/// A timestamp (ms since the epoch) in the visitor's local time, with the exact UTC value on hover.
/// `text` replaces the shown value (e.g. an age), the exact value staying on hover.
export function time(ms, text) {
  const d = new Date(Number(ms));
  return h(
    "time",
    { datetime: d.toISOString(), title: `${d.toLocaleString()} local; ${d.toISOString()} UTC (${Number(ms)} ms since 1970)` },
    text ?? d.toLocaleString(),
  );
}

/// "3 s ago" style age of a timestamp.
export function age(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - Number(ms)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function num(n) {
  return Number(n).toLocaleString();
}

export const isHeight = (q) => /^[0-9]{1,19}$/.test(q);
export const isHash = (q) => /^[0-9a-fA-F]{64}$/.test(q);
export const isAddress = (q) => /^ldg[0-9a-fA-F]{72}$/.test(q);

/// A two-column table of labelled values.
export function fields(rows) {
  return h(
    "dl",
    { class: "fields" },
    rows.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/// A table with a header row; `rows` are arrays of cells.
export function table(headers, rows, { empty = "Nothing yet.", cls = "" } = {}) {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: cls },
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}
