// The explorer's pages. Each takes the view element and the route's parameters and fills the view; it
// returns an optional cleanup function (called when the visitor leaves the page).

import { api, ApiFailure, h, fill, short, time, age, num, fields, table, isHeight, isHash, isAddress } from "./util.js";
import { verifyTx, addressKey } from "./verify.js";

const blockLink = (height) => h("a", { href: `#/block/${height}` }, num(height));
const txLink = (id) => short(id, `#/tx/${id}`);
const accountLink = (a) => short(a, `#/account/${a}`);

/// Validators (addresses) whose precommit is in the certificate of at least one of the `n` blocks up to
/// `tip`. One certificate alone under-counts: it closes as soon as more than 2/3 of the power signed.
export const RECENT_CERTS = 5;
export async function recentSigners(tip, n = RECENT_CERTS) {
  const heights = [];
  for (let h = tip; h >= 1 && h > tip - n; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((h) => api(`/blocks/${h}`)));
  return new Set(blocks.flatMap((b) => b.signers));
}

/// Most pages of validator-set transitions fetched for one verification (16 transitions each); a chain with
/// more changes than that up to the block fails `validator_set` here rather than fetch without end.
const TRANSITION_PAGES_MAX = 64;

/// Every validator-set transition whose set starts at or below `height`, oldest first, following the node's
/// pages (`GET /validators/transitions`). A page must move past the last one, so a node cannot loop the page;
/// what the node leaves out makes the verification fail, never pass (verify.js).
export async function transitionsUpTo(height) {
  const all = [];
  let from = 2;
  for (let pages = 0; from <= height && pages < TRANSITION_PAGES_MAX; pages++) {
    const page = await api(`/validators/transitions?from_height=${from}&limit=16`);
    const ts = Array.isArray(page.transitions) ? page.transitions : [];
    all.push(...ts.filter((t) => t.first_height <= height));
    const last = ts.length ? ts[ts.length - 1].first_height : null;
    const next = page.next_from_height;
    if (next == null || last == null || !(next > last) || last > height) break;
    from = next;
  }
  return all;
}

/// The genesis document, fetched once (the validator set and the chain id).
let genesisPromise = null;
export function genesis() {
  genesisPromise ??= api("/genesis").catch((e) => {
    genesisPromise = null;
    throw e;
  });
  return genesisPromise;
}

export function notFound(view, what, detail) {
  document.title = "Not found · ledger explorer";
  fill(
    view,
    h(
      "section",
      { class: "card notfound", "data-page": "not-found" },
      h("h1", {}, "Not found"),
      h("p", {}, what),
      detail ? h("p", { class: "muted" }, detail) : null,
      h("p", {}, h("a", { href: "#/" }, "Back to the latest blocks")),
    ),
  );
}

function failure(view, e) {
  if (e instanceof ApiFailure && e.status === 404) return notFound(view, e.message);
  fill(
    view,
    h(
      "section",
      { class: "card error", "data-page": "error" },
      h("h1", {}, "The node could not answer"),
      h("p", {}, e instanceof ApiFailure ? `${e.code}: ${e.message}` : String(e.message || e)),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- home

const ROWS = 10;
const CHART_BUCKETS = 12;
const CHART_SECONDS = 60;
const SVG = "http://www.w3.org/2000/svg";

/// `live`: the app's event feed (see app.js): `recentBlocks`, `recentTxs`, `subscribe(fn)`.
export function home(view, _params, live) {
  document.title = "ledger explorer";
  const stat = (label, id, hint) =>
    h("div", { class: "stat", title: hint || "" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, "…"));
  const chart = document.createElementNS(SVG, "svg");
  chart.id = "tps-chart";
  chart.setAttribute("viewBox", `0 0 ${CHART_BUCKETS * 10} 40`);
  chart.setAttribute("preserveAspectRatio", "none");
  chart.setAttribute("role", "img");
  chart.setAttribute("aria-label", "Transactions per second over the last minute");
  const blocksBody = h("tbody", { id: "latest-blocks" });
  const txsBody = h("tbody", { id: "latest-txs" });
  fill(
    view,
    h(
      "div",
      { "data-page": "home" },
      h(
        "section",
        { class: "stats" },
        stat("Height", "stat-height"),
        stat("Last block", "stat-age", "Age of the latest block's header time; hover for the exact time"),
        stat("Block time", "stat-block-time", "Average interval between the last 20 blocks (header timestamps)"),
        stat("Validators online", "stat-online", `Validators whose precommit is in the certificate of at least one of the latest ${RECENT_CERTS} blocks`),
        stat("Mempool", "stat-mempool", "Transactions waiting in this node's mempool"),
        h(
          "div",
          { class: "stat chart", title: "Committed transactions per second, in 5-second buckets over the last minute of block time" },
          h("div", { class: "label" }, "tx/s, last minute"),
          h("div", { class: "value small", id: "stat-tps" }, "…"),
          chart,
        ),
      ),
      h(
        "div",
        { class: "columns" },
        h(
          "section",
          { class: "card" },
          h("h2", {}, "Latest blocks"),
          h(
            "table",
            { class: "fixed live" },
            h("thead", {}, h("tr", {}, h("th", {}, "Height"), h("th", {}, "Hash"), h("th", {}, "Txs"), h("th", {}, "Time"))),
            blocksBody,
          ),
        ),
        h(
          "section",
          { class: "card" },
          h("h2", {}, "Latest transactions"),
          h(
            "table",
            { class: "fixed live" },
            h("thead", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, "From → to"), h("th", {}, "Amount"), h("th", {}, "Height"))),
            txsBody,
          ),
        ),
      ),
    ),
  );
  const set = (id, ...v) => {
    const el = document.getElementById(id);
    if (el) fill(el, ...v);
  };
  const render = () => {
    const blocks = live.recentBlocks;
    const rows = [];
    for (let i = 0; i < ROWS; i++) {
      const b = blocks[blocks.length - 1 - i];
      rows.push(
        b
          ? h("tr", { "data-height": b.height }, h("td", {}, blockLink(b.height)), h("td", {}, short(b.hash, `#/block/${b.height}`, 8)), h("td", {}, num(b.tx_count)), h("td", {}, time(b.time, new Date(b.time).toLocaleTimeString())))
          : h("tr", { class: "placeholder" }, h("td", { colspan: 4 }, "\u00a0")),
      );
    }
    fill(blocksBody, rows);
    const txs = live.recentTxs;
    const trows = [];
    for (let i = 0; i < ROWS; i++) {
      const t = txs[txs.length - 1 - i];
      trows.push(
        t
          ? h("tr", {}, h("td", {}, txLink(t.id)), h("td", {}, short(t.sender, `#/account/${t.sender}`, 6), " → ", short(t.recipient, `#/account/${t.recipient}`, 6)), h("td", { class: "num" }, num(t.amount)), h("td", {}, blockLink(t.height)))
          : h("tr", { class: "placeholder" }, h("td", { colspan: 4 }, i === 0 ? "No transactions in the recent blocks." : "\u00a0")),
      );
    }
    fill(txsBody, trows);
    const tip = blocks[blocks.length - 1];
    if (tip) {
      set("stat-height", blockLink(tip.height));
      set("stat-age", time(tip.time, age(tip.time)));
      const last = blocks.slice(-21);
      if (last.length >= 2) {
        const avg = (last[last.length - 1].time - last[0].time) / (last.length - 1);
        set("stat-block-time", `${(avg / 1000).toFixed(2)} s`);
      }
      drawChart(chart, blocks, tip.time);
    }
  };
  render();
  const unsubscribe = live.subscribe(render);
  let stopped = false;
  const poll = async () => {
    if (stopped) return;
    try {
      const [status, mempool] = await Promise.all([api("/status"), api("/mempool")]);
      set("stat-mempool", `${num(mempool.count)} txs`);
      if (!live.recentBlocks.length) set("stat-height", num(status.height));
      if (status.height > 0) {
        const [signers, g] = await Promise.all([recentSigners(status.height), genesis()]);
        const online = g.validators.filter((v) => signers.has(v.address)).length;
        set("stat-online", `${online} of ${g.validators.length}`);
      } else {
        set("stat-online", "no block yet");
      }
    } catch (e) {
      set("stat-mempool", "?");
    }
  };
  poll();
  const timer = setInterval(poll, 2000);
  const ageTimer = setInterval(() => {
    const tip = live.recentBlocks[live.recentBlocks.length - 1];
    if (tip) set("stat-age", time(tip.time, age(tip.time)));
  }, 1000);
  return () => {
    stopped = true;
    unsubscribe();
    clearInterval(timer);
    clearInterval(ageTimer);
  };
}

function drawChart(svg, blocks, now) {
  const width = CHART_SECONDS / CHART_BUCKETS;
  const counts = new Array(CHART_BUCKETS).fill(0);
  let total = 0;
  const oldest = blocks.length ? blocks[0].time : now;
  for (const b of blocks) {
    const ago = (now - b.time) / 1000;
    if (ago < 0 || ago >= CHART_SECONDS) continue;
    counts[CHART_BUCKETS - 1 - Math.floor(ago / width)] += b.tx_count;
    total += b.tx_count;
  }
  const span = Math.min(CHART_SECONDS, Math.max(1, (now - oldest) / 1000));
  const tps = total / span;
  const el = document.getElementById("stat-tps");
  if (el) fill(el, tps.toFixed(1), span < CHART_SECONDS - 1 ? ` (over ${Math.round(span)} s)` : "");
  const max = Math.max(1, ...counts.map((c) => c / width));
  const ns = SVG;
  svg.replaceChildren();
  counts.forEach((c, i) => {
    const r = document.createElementNS(ns, "rect");
    const v = c / width;
    const hgt = Math.max(0.5, (v / max) * 38);
    r.setAttribute("x", String(i * 10 + 1));
    r.setAttribute("width", "8");
    r.setAttribute("y", String(40 - hgt));
    r.setAttribute("height", String(hgt));
    const t = document.createElementNS(ns, "title");
    t.textContent = `${v.toFixed(1)} tx/s, ${(CHART_BUCKETS - i) * width} to ${(CHART_BUCKETS - 1 - i) * width} s before the latest block`;
    r.appendChild(t);
    svg.appendChild(r);
  });
}

// ---------------------------------------------------------------------------------------------- block

export async function block(view, [key]) {
  let height;
  if (isHeight(key)) {
    height = Number(key);
    const status = await api("/status");
    if (height < 1 || height > status.height) {
      return notFound(view, `There is no block at height ${key}.`, `The chain is at height ${num(status.height)}.`);
    }
  } else if (isHash(key)) {
    const found = await api(`/explorer/lookup/${key}`);
    if (found.kind !== "block") return notFound(view, `No block has the hash ${key}.`);
    height = (await api(`/blocks/by-hash/${key}`)).height;
  } else {
    return notFound(view, `"${key}" is not a block height or hash.`);
  }
  const [b, commit, status, g] = await Promise.all([
    api(`/blocks/${height}`),
    api(`/blocks/${height}/commit`),
    api("/status"),
    genesis(),
  ]);
  document.title = `Block ${height} · ledger explorer`;
  const power = new Map(g.validators.map((v) => [v.address, v]));
  const hd = b.header;
  const signerRows = commit.signatures.map((s) => {
    const v = s.validator ? power.get(s.validator) : null;
    return [String(s.validator_index), s.validator ? accountLink(s.validator) : "?", v ? v.moniker : "", v ? num(v.power) : "?"];
  });
  const signedPower = commit.signatures.reduce((n, s) => n + (power.get(s.validator)?.power || 0), 0);
  const totalPower = g.validators.reduce((n, v) => n + v.power, 0);
  fill(
    view,
    h(
      "div",
      { "data-page": "block", "data-height": height },
      h(
        "nav",
        { class: "pager" },
        height > 1 ? h("a", { href: `#/block/${height - 1}`, rel: "prev" }, "← previous") : h("span", { class: "muted" }, "← previous"),
        h("h1", {}, `Block ${num(height)}`),
        height < status.height ? h("a", { href: `#/block/${height + 1}`, rel: "next" }, "next →") : h("span", { class: "muted", title: "This is the latest block" }, "next →"),
      ),
      h(
        "section",
        { class: "card" },
        fields([
          ["Hash", h("span", { class: "mono wrap", id: "block-hash" }, b.hash)],
          ["Time", time(hd.timestamp_ms)],
          ["Proposer", accountLink(hd.proposer)],
          ["Transactions", num(b.txs.length)],
          ["Previous block", height > 1 ? short(hd.prev_block_hash, `#/block/${height - 1}`, 16) : h("span", { class: "mono wrap", title: "For block 1, the genesis hash" }, hd.prev_block_hash)],
          ["Tx root", h("span", { class: "mono wrap" }, hd.tx_root)],
          ["State root", h("span", { class: "mono wrap" }, hd.state_root)],
          ["Last commit hash", h("span", { class: "mono wrap" }, hd.last_commit_hash)],
          ["Chain / version", `${hd.chain_id} / ${hd.version}`],
        ]),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, `Transactions (${b.txs.length})`),
        table(
          ["#", "Id", "From", "To", "Amount", "Fee"],
          b.txs.map((t, i) => [String(i), txLink(t.id), accountLink(t.sender), accountLink(t.recipient), num(t.amount), num(t.fee)]),
          { empty: "No transactions in this block.", cls: "block-txs" },
        ),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Commit certificate"),
        h("p", { class: "muted" }, `Round ${commit.round}; signers hold ${num(signedPower)} of ${num(totalPower)} voting power (${((100 * signedPower) / Math.max(1, totalPower)).toFixed(1)} %).`),
        table(["Index", "Validator", "Moniker", "Power"], signerRows, { empty: "No signatures." }),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- transaction

export async function tx(view, [id]) {
  if (!isHash(id)) return notFound(view, `"${id}" is not a transaction id (64 hex characters).`);
  const s = await api(`/txs/${id}`);
  if (s.status === "unknown") {
    return notFound(view, `This node knows no transaction ${id}.`, "It is not committed, and not in this node's mempool or its recent rejections.");
  }
  document.title = `Transaction ${id.slice(0, 10)}… · ledger explorer`;
  const t = s.tx;
  const lifecycle = {
    pending: [h("span", { class: "badge pending" }, "pending"), " waiting in this node's mempool"],
    committed: [h("span", { class: "badge ok" }, "committed"), " at height ", s.height !== undefined ? blockLink(s.height) : "?", `, position ${s.index}`],
    rejected: [h("span", { class: "badge bad" }, "rejected"), " ", s.reason ? `${s.reason.code}: ${s.reason.message}` : ""],
    evicted: [h("span", { class: "badge bad" }, "evicted"), " ", s.reason ? `${s.reason.code}: ${s.reason.message}` : ""],
  }[s.status] || [s.status];
  const verifyBox = h("section", { class: "card verify", id: "verify" }, h("h2", {}, "Verification"), h("p", { class: "muted" }, s.status === "committed" ? "Checking in your browser…" : "Only a committed transaction has a proof to check."));
  fill(
    view,
    h(
      "div",
      { "data-page": "tx", "data-status": s.status },
      h("h1", {}, "Transaction"),
      h(
        "section",
        { class: "card" },
        fields([
          ["Id", h("span", { class: "mono wrap" }, id)],
          ["Status", h("span", { id: "tx-status" }, lifecycle)],
          t && ["From", accountLink(t.sender)],
          t && ["To", accountLink(t.recipient)],
          t && ["Amount", h("span", { id: "tx-amount" }, num(t.amount))],
          t && ["Fee", num(t.fee)],
          t && ["Nonce", num(t.nonce)],
          t && ["Expires after height", num(t.expiry_height)],
          t && ["Memo", t.memo ? t.memo : h("span", { class: "muted" }, "(none)")],
          s.block_hash && ["Block hash", short(s.block_hash, `#/block/${s.height}`, 16)],
        ]),
      ),
      verifyBox,
    ),
  );
  if (s.status !== "committed") return;
  try {
    const [b, commit, g, transitions] = await Promise.all([
      api(`/blocks/${s.height}`),
      api(`/blocks/${s.height}/commit`),
      genesis(),
      transitionsUpTo(s.height),
    ]);
    const report = await verifyTx({
      id,
      height: s.height,
      txHex: s.tx_hex,
      proof: s.proof,
      headerHex: b.header_hex,
      certificateHex: commit.certificate_hex,
      genesis: g,
      transitions,
    });
    renderReport(verifyBox, report);
  } catch (e) {
    fill(verifyBox, h("h2", {}, "Verification"), h("p", { class: "verdict bad", id: "verdict" }, `Not verified: ${e.message}`));
  }
}

function renderReport(box, report) {
  const failed = report.checks.filter((c) => c.ok === false);
  const skipped = report.checks.filter((c) => c.ok === null);
  let verdict;
  if (report.ok) verdict = h("p", { class: "verdict ok", id: "verdict", "data-verdict": "verified" }, "✔ Verified by your browser");
  else if (failed.length) verdict = h("p", { class: "verdict bad", id: "verdict", "data-verdict": "failed" }, `✘ Verification failed: ${failed.map((c) => `${c.name}: ${c.detail}`).join("; ")}`);
  else verdict = h("p", { class: "verdict warn", id: "verdict", "data-verdict": "incomplete" }, `Not fully verified here: ${skipped.map((c) => `${c.name}: ${c.detail}`).join("; ")}`);
  fill(
    box,
    h("h2", {}, "Verification"),
    verdict,
    h(
      "p",
      { class: "muted" },
      "Checked from canonical bytes against the validator set in this node's /genesis: the transaction's id and signature, the block header, the Merkle proof and the commit certificate. Signatures are checked with your browser's Ed25519 (RFC 8032); the chain's rule is ZIP 215, which accepts the same signatures from honest signers.",
    ),
    h("ul", { class: "checks" }, report.checks.map((c) => h("li", { class: c.ok === true ? "ok" : c.ok === false ? "bad" : "warn" }, h("b", {}, c.name), " ", c.detail))),
  );
}

// ---------------------------------------------------------------------------------------------- account

const PAGE = 25;

export async function account(view, [address], query) {
  try {
    if (!isAddress(address)) throw new Error("wrong shape");
    addressKey(address);
  } catch (e) {
    return notFound(view, `"${address}" is not an address.`, "An address is ldg followed by 72 hex characters (the key and a checksum).");
  }
  const before = query.get("before");
  const beforeIndex = query.get("before_index");
  const qs = new URLSearchParams({ limit: String(PAGE) });
  if (before && isHeight(before)) qs.set("before", before);
  if (beforeIndex && isHeight(beforeIndex)) qs.set("before_index", beforeIndex);
  const [acct, page] = await Promise.all([api(`/accounts/${address}`), api(`/accounts/${address}/txs?${qs}`)]);
  document.title = `Account ${address.slice(0, 10)}… · ledger explorer`;
  const rows = page.txs.map((e) => {
    const t = e.tx;
    const sent = e.direction === "sent";
    return [
      blockLink(e.height),
      txLink(t.id),
      h("span", { class: `badge ${sent ? "out" : "in"}` }, sent ? "sent" : "received"),
      sent ? accountLink(t.recipient) : accountLink(t.sender),
      h("span", { class: "num amount", "data-amount": (sent ? "-" : "+") + t.amount }, (sent ? "−" : "+") + num(t.amount)),
      num(t.fee),
    ];
  });
  const next = page.next ? `#/account/${address}?before=${page.next.before}${page.next.before_index !== undefined ? `&before_index=${page.next.before_index}` : ""}` : null;
  fill(
    view,
    h(
      "div",
      { "data-page": "account" },
      h("h1", {}, "Account"),
      h(
        "section",
        { class: "card" },
        fields([
          ["Address", h("span", { class: "mono wrap" }, address)],
          ["Balance", h("span", { id: "balance" }, num(acct.balance))],
          ["Nonce", num(acct.nonce)],
          ["Next nonce (with pending)", num(acct.next_nonce)],
        ]),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, before ? "History (older page)" : "History, newest first"),
        table(["Height", "Transaction", "Direction", "Counterparty", "Amount", "Fee"], rows, {
          empty: before ? "No older transactions." : "No committed transactions.",
          cls: "history",
        }),
        h(
          "nav",
          { class: "pager" },
          before ? h("a", { href: `#/account/${address}` }, "⇤ newest") : h("span"),
          next ? h("a", { href: next, id: "older", rel: "next" }, "older →") : h("span", { class: "muted" }, "end of history"),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- validators

export async function validators(view) {
  const [v, status] = await Promise.all([api("/validators"), api("/status")]);
  let signers = null;
  if (status.height > 0) signers = await recentSigners(status.height);
  document.title = "Validators · ledger explorer";
  const counted = v.counted_to_height >= v.counted_from_height && v.counted_to_height > 0 ? v.counted_to_height - v.counted_from_height + 1 : 0;
  fill(
    view,
    h(
      "div",
      { "data-page": "validators" },
      h("h1", {}, "Validators"),
      h(
        "p",
        { class: "muted", id: "window" },
        counted
          ? `Proposed and signed are counted over heights ${num(v.counted_from_height)} to ${num(v.counted_to_height)} (${num(counted)} blocks; window ${num(v.window_blocks)}), from the certificates carried on chain: every node counts the same.`
          : "No certified heights to count yet.",
      ),
      h(
        "section",
        { class: "card" },
        table(
          ["#", "Moniker", "Address", "Power", "Share", "Proposed", "Signed", "Status"],
          v.validators.map((x) => [
            String(x.index),
            x.moniker,
            accountLink(x.address),
            num(x.voting_power),
            `${((100 * x.voting_power) / Math.max(1, v.total_voting_power)).toFixed(1)} %`,
            num(x.blocks_proposed),
            counted ? `${num(counted - x.blocks_missed)} / ${num(counted)}` : "–",
            signers === null ? "–" : signers.has(x.address)
                ? h("span", { class: "badge ok", title: `Signed at least one of the certificates of blocks ${Math.max(1, status.height - RECENT_CERTS + 1)} to ${status.height}` }, "online")
                : h("span", { class: "badge bad", title: `In none of the certificates of blocks ${Math.max(1, status.height - RECENT_CERTS + 1)} to ${status.height}` }, "not signing"),
          ]),
          { cls: "validators" },
        ),
      ),
      h("p", { class: "muted" }, `Status: online when the validator's precommit is in at least one of the certificates of the latest ${RECENT_CERTS} blocks (as this node stored them). `, `Total voting power ${num(v.total_voting_power)}.`),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- network

export async function network(view) {
  const [status, peers] = await Promise.all([api("/status"), api("/peers")]);
  document.title = "Network · ledger explorer";
  fill(
    view,
    h(
      "div",
      { "data-page": "network" },
      h("h1", {}, "Network"),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "This node"),
        fields([
          ["Node id", h("span", { class: "mono wrap" }, status.node_id)],
          ["Chain", status.chain_id],
          ["Genesis hash", h("span", { class: "mono wrap" }, status.genesis_hash)],
          ["Height", blockLink(status.height)],
          ["Consensus", `height ${num(status.consensus_height)}, round ${status.consensus_round}`],
          ["Catching up", status.catching_up ? "yes" : "no"],
          ["Validator", status.validator ? accountLink(status.validator) : status.validator_reason || "no (a full node)"],
        ]),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, `Peers (${peers.n_peers})`),
        table(
          ["Peer id", "Address", "Height"],
          peers.peers.map((p) => [short(p.peer_id, null, 12), p.address || h("span", { class: "muted" }, "unknown"), h("span", { class: "muted", title: "This node does not learn its peers' heights" }, "not known")]),
          { empty: "No peers connected." },
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------- evidence

export async function evidence(view) {
  const page = await api("/evidence?limit=100");
  document.title = "Evidence · ledger explorer";
  const hash = (x) => (x ? short(x) : h("span", { class: "muted" }, "nil"));
  fill(
    view,
    h(
      "section",
      { class: "card", "data-page": "evidence" },
      h("h1", {}, "Evidence"),
      h("p", { class: "muted" }, "Committed equivocation: one validator signed two different votes for one slot. The validator leaves the set two blocks after the block that carries the evidence (jailed), and comes back only through an approved change."),
      table(
        ["Block", "Validator", "Slot", "Votes for", "Jailed from"],
        page.evidence.map((e) => [
          blockLink(e.block_height),
          short(e.validator),
          `height ${num(e.height)} round ${e.round} ${e.kind}`,
          h("span", {}, hash(e.first_block_hash), " / ", hash(e.second_block_hash)),
          num(e.jailed_from_height),
        ]),
        { empty: "No equivocation has been committed on this chain." },
      ),
      page.next ? h("p", { class: "muted" }, "Older evidence: GET /evidence?before=" + page.next) : null,
    ),
  );
}

export { failure };
