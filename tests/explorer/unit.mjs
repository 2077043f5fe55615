// The explorer's JavaScript BLAKE3 against the Rust implementation's answers (the shared vectors generated
// by node/src/explorer/mod.rs into node/src/explorer/assets/blake3_vectors.json). Run by
// tests/tests/explorer.rs: `node tests/explorer/unit.mjs`; exits non-zero on any mismatch.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const assets = join(dirname(fileURLToPath(import.meta.url)), "../../node/src/explorer/assets");
const { hash, keyedHash, deriveKey } = await import(join(assets, "blake3.js"));
const vectors = JSON.parse(readFileSync(join(assets, "blake3_vectors.json"), "utf8"));

const hex = (b) => Buffer.from(b).toString("hex");
const input = (n) => Uint8Array.from({ length: n }, (_, i) => i % 251);
const key = new TextEncoder().encode(vectors.key);
let checked = 0;
const bad = [];
const expect = (what, got, want) => {
  checked++;
  if (got !== want) bad.push(`${what}: got ${got}, want ${want}`);
};
for (const c of vectors.cases) {
  const data = input(c.input_len);
  expect(`hash(${c.input_len})`, hex(hash(data)), c.hash);
  expect(`keyed_hash(${c.input_len})`, hex(keyedHash(key, data)), c.keyed_hash);
  expect(`derive_key(${c.input_len})`, hex(deriveKey(vectors.derive_key_context, data)), c.derive_key);
}
for (const d of vectors.domains) {
  expect(`${d.context}(${d.input_len})`, hex(deriveKey(d.context, input(d.input_len))), d.digest);
}
// Merkle proofs and a vote's signing message, as verify.js rebuilds them (the code the page runs).
const { verifyMerkle, voteBytes, signingMessage, fromHex } = await import(join(assets, "verify.js"));
for (const tree of vectors.merkle) {
  const root = fromHex(tree.root, "root");
  tree.proofs.forEach((p, i) => {
    const proof = { index: p.index, leafCount: p.leaf_count, siblings: p.siblings.map((s) => fromHex(s, "sibling")) };
    const id = fromHex(tree.ids[i], "id");
    expect(`merkle ${tree.ids.length} leaf ${i}`, verifyMerkle(proof, root, id), true);
    const other = fromHex(tree.ids[(i + 1) % tree.ids.length], "id");
    if (tree.ids.length > 1) expect(`merkle ${tree.ids.length} leaf ${i} with another id`, verifyMerkle(proof, root, other), false);
    if (proof.siblings.length > 0) {
      const bad = { ...proof, siblings: proof.siblings.map((s, j) => (j === 0 ? s.map((b, k) => (k === 0 ? b ^ 1 : b)) : s)) };
      expect(`merkle ${tree.ids.length} leaf ${i} with a flipped sibling`, verifyMerkle(bad, root, id), false);
    }
  });
}
const v = vectors.vote;
const vb = voteBytes(BigInt(v.height), v.round, fromHex(v.block_hash, "hash"), fromHex(v.validator, "key"));
expect("vote bytes", hex(vb), v.vote_bytes);
expect("vote signing message", hex(signingMessage("ledger v1 vote signature", v.chain_id, vb)), v.signing_message);
// Validator-set transitions, followed as the page follows them (wallet verify's rule), honest and tampered.
const { followTransitions, addressKey, ed25519Available } = await import(join(assets, "verify.js"));
const tv = vectors.transitions;
const genesisSet = tv.genesis_validators.map((v) => ({ key: addressKey(v.address), power: BigInt(v.power), moniker: v.moniker }));
if (!(await ed25519Available())) bad.push("this Node.js has no Ed25519 in WebCrypto: the transitions are not checked");
const walk = (transitions, upTo = 12) =>
  followTransitions({ chainId: tv.chain_id, genesis: genesisSet, transitions, upTo, sigAvailable: true });
const honest = await walk(tv.transitions);
expect("transitions: honest walk ok", honest.ok, true);
expect("transitions: honest walk followed", honest.followed, 2);
expect("transitions: set reached", hex(honest.reached.hash), tv.reached_hash);
expect("transitions: first height reached", honest.reached.firstHeight, BigInt(tv.reached_first_height));
expect("transitions: up to height 6 follows one", (await walk(tv.transitions, 6)).followed, 1);
const flip = (hexText, byte) => {
  const b = fromHex(hexText, "hex");
  b[byte] ^= 0x01;
  return hex(b);
};
const tampered = {
  "a byte of a key in the first new set": (ts) => (ts[0].validators_hex = flip(ts[0].validators_hex, 4 + 3)),
  "a signature of the second certificate": (ts) => (ts[1].certificate_hex = flip(ts[1].certificate_hex, 48 + 4 + 2 + 10)),
  "the second header's next set": (ts) => (ts[1].header_hex = flip(ts[1].header_hex, fromHex(ts[1].header_hex, "h").length - 32 * 3 + 1)),
  "the first transition left out": (ts) => ts.splice(0, 1),
  "the order": (ts) => ts.reverse(),
};
for (const [what, alter] of Object.entries(tampered)) {
  const ts = structuredClone(tv.transitions);
  alter(ts);
  const w = await walk(ts);
  expect(`transitions: ${what} fails`, w.ok, false);
  if (w.ok === false && !/transition to height/.test(w.error)) bad.push(`transitions: ${what}: error does not name the transition: ${w.error}`);
}
if (checked < 80) bad.push(`only ${checked} vectors`);
for (const b of bad) console.log(`FAIL ${b}`);
console.log(bad.length ? `BLAKE3 FAILED ${bad.length} of ${checked}` : `BLAKE3 OK: ${checked} vectors (hashes, Merkle proofs, vote signing bytes) match the Rust implementation`);
process.exit(bad.length ? 1 : 0);
