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
if (checked < 80) bad.push(`only ${checked} vectors`);
for (const b of bad) console.log(`FAIL ${b}`);
console.log(bad.length ? `BLAKE3 FAILED ${bad.length} of ${checked}` : `BLAKE3 OK: ${checked} vectors match the Rust implementation`);
process.exit(bad.length ? 1 : 0);
