// The explorer's entry point: hash routes (#/block/12, #/tx/ID, #/account/ADDR, ...), the search box, and
// the live feed of committed blocks over /events (server-sent events).

import { api, h, fill } from "./util.js";
import * as pages from "./pages.js";

const view = document.getElementById("view");

// ---------------------------------------------------------------------------------------------- live feed

/// Recent committed blocks and transactions. At start, the last minute of block summaries comes from
/// /blocks (header time and tx count only, so a busy chain costs a few pages, not every transaction), and
/// /events replays the last few blocks' transactions then follows new blocks; EventSource resumes with
/// Last-Event-ID after a drop.
const live = {
  recentBlocks: [],
  recentTxs: [],
  listeners: new Set(),
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};
const KEEP_BLOCKS = 400;
const KEEP_TXS = 10;
const REPLAY_BLOCKS = 3;
const HISTORY_MS = 60_000;
const HISTORY_PAGES = 4;

async function startLive() {
  let from = 1;
  try {
    const status = await api("/status");
    from = Math.max(1, status.height - REPLAY_BLOCKS + 1);
    // Block summaries back to a minute before the tip (at most HISTORY_PAGES pages of 100).
    const seed = [];
    let before = null;
    for (let i = 0; i < HISTORY_PAGES; i++) {
      const page = await api(`/blocks?limit=100${before ? `&before=${before}` : ""}`);
      for (const b of page.blocks) {
        seed.push({ height: b.height, hash: b.hash, time: b.header.timestamp_ms, tx_count: b.tx_count, proposer: b.header.proposer });
      }
      const oldest = seed[seed.length - 1];
      if (!page.next || !oldest || oldest.time < status.latest_block_time - HISTORY_MS) break;
      before = page.next;
    }
    seed.reverse();
    if (live.recentBlocks.length === 0) live.recentBlocks.push(...seed.filter((b) => b.height < from));
    // The latest transactions before the replay: from the newest seeded blocks that have any (at most 3).
    const withTxs = live.recentBlocks.filter((b) => b.tx_count > 0).slice(-3).reverse();
    const txs = [];
    for (const b of withTxs) {
      if (txs.length >= KEEP_TXS) break;
      const full = await api(`/blocks/${b.height}`);
      const mine = full.txs.map((t, index) => ({ ...t, height: b.height, index, block_hash: b.hash }));
      txs.unshift(...mine.slice(-(KEEP_TXS - txs.length)));
    }
    if (live.recentTxs.length === 0) live.recentTxs.push(...txs);
  } catch {
    // The feed starts from the first block; it still follows new ones.
  }
  const es = new EventSource(`/events?from_height=${from}`);
  let pending = false;
  const notify = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      for (const fn of live.listeners) fn();
    });
  };
  es.addEventListener("tx", (e) => {
    try {
      live.recentTxs.push(JSON.parse(e.data));
      if (live.recentTxs.length > KEEP_TXS) live.recentTxs.splice(0, live.recentTxs.length - KEEP_TXS);
    } catch {
      // A malformed event is skipped.
    }
  });
  es.addEventListener("block", (e) => {
    try {
      const b = JSON.parse(e.data);
      const last = live.recentBlocks[live.recentBlocks.length - 1];
      if (last && b.height <= last.height) return;
      live.recentBlocks.push(b);
      if (live.recentBlocks.length > KEEP_BLOCKS) live.recentBlocks.splice(0, live.recentBlocks.length - KEEP_BLOCKS);
      setConnection("live", `live: block ${b.height}`);
      notify();
    } catch {
      // A malformed event is skipped.
    }
  });
  es.addEventListener("error", () => setConnection("down", "reconnecting to the node…"));
  es.addEventListener("open", () => setConnection("live", "live"));
}

function setConnection(state, text) {
  const el = document.getElementById("conn");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

// ---------------------------------------------------------------------------------------------- routing

const routes = [
  [/^\/?$/, pages.home],
  [/^\/block\/([^/]+)$/, pages.block],
  [/^\/tx\/([^/]+)$/, pages.tx],
  [/^\/account\/([^/]+)$/, pages.account],
  [/^\/validators$/, pages.validators],
  [/^\/network$/, pages.network],
  [/^\/evidence$/, pages.evidence],
  [/^\/search\/(.*)$/, search],
];

let cleanup = null;
let generation = 0;

async function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?", 2);
  const query = new URLSearchParams(qs || "");
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const mine = ++generation;
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#${path}`);
  }
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    const params = m.slice(1).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    view.setAttribute("aria-busy", "true");
    try {
      const c = await page(view, params, page === pages.home ? live : query);
      if (mine === generation) cleanup = c;
      else if (typeof c === "function") c();
    } catch (e) {
      if (mine === generation) pages.failure(view, e);
    } finally {
      if (mine === generation) view.setAttribute("aria-busy", "false");
    }
    return;
  }
  pages.notFound(view, `There is no page at #${path}.`);
  view.setAttribute("aria-busy", "false");
}

/// #/search/QUERY: ask the node what the query is, then go there (replacing the search in history).
async function search(v, [q]) {
  const query = q.trim();
  if (!query) return pages.notFound(v, "Type a height, a block hash, a transaction id or an address.");
  if (query.length > 256) return pages.notFound(v, "That search is too long.");
  const found = await api(`/explorer/lookup/${encodeURIComponent(query)}`);
  if (found.kind === "none") return pages.notFound(v, `Nothing found for "${query.slice(0, 100)}".`, found.message);
  location.replace(found.target);
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("q");
  const q = input.value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
  input.blur();
});

window.addEventListener("hashchange", route);
route();
startLive();
