// BLAKE3 (hash, keyed hash, derive key; 32-byte output), written from the BLAKE3 specification
// (the BLAKE3 paper and its reference description; nothing is fetched from anywhere).
// One-shot over a Uint8Array: the explorer hashes headers, transactions and Merkle nodes, all small.
// Tested against the Rust `blake3` crate through the shared vectors in blake3_vectors.json (see
// node/tests/explorer_vectors.rs and tests/explorer/unit.mjs).

const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const KEYED_HASH = 16;
const DERIVE_KEY_CONTEXT = 32;
const DERIVE_KEY_MATERIAL = 64;
const BLOCK_LEN = 64;
const CHUNK_LEN = 1024;

function rotr(x, n) {
  return ((x >>> n) | (x << (32 - n))) >>> 0;
}

function g(s, a, b, c, d, mx, my) {
  s[a] = (s[a] + s[b] + mx) >>> 0;
  s[d] = rotr(s[d] ^ s[a], 16);
  s[c] = (s[c] + s[d]) >>> 0;
  s[b] = rotr(s[b] ^ s[c], 12);
  s[a] = (s[a] + s[b] + my) >>> 0;
  s[d] = rotr(s[d] ^ s[a], 8);
  s[c] = (s[c] + s[d]) >>> 0;
  s[b] = rotr(s[b] ^ s[c], 7);
}

function round(s, m) {
  g(s, 0, 4, 8, 12, m[0], m[1]);
  g(s, 1, 5, 9, 13, m[2], m[3]);
  g(s, 2, 6, 10, 14, m[4], m[5]);
  g(s, 3, 7, 11, 15, m[6], m[7]);
  g(s, 0, 5, 10, 15, m[8], m[9]);
  g(s, 1, 6, 11, 12, m[10], m[11]);
  g(s, 2, 7, 8, 13, m[12], m[13]);
  g(s, 3, 4, 9, 14, m[14], m[15]);
}

/// The compression function: 16 output words (the first 8 are the new chaining value).
function compress(cv, words, counter, blockLen, flags) {
  const s = new Uint32Array(16);
  s.set(cv.subarray(0, 8), 0);
  s.set(IV.subarray(0, 4), 8);
  s[12] = counter % 0x100000000;
  s[13] = Math.floor(counter / 0x100000000);
  s[14] = blockLen;
  s[15] = flags;
  let m = Uint32Array.from(words);
  for (let r = 0; r < 7; r++) {
    round(s, m);
    if (r < 6) {
      const p = new Uint32Array(16);
      for (let i = 0; i < 16; i++) p[i] = m[PERM[i]];
      m = p;
    }
  }
  for (let i = 0; i < 8; i++) {
    s[i] ^= s[i + 8];
    s[i + 8] ^= cv[i];
  }
  return s;
}

function wordsOf(bytes) {
  // `bytes` is at most 64 long; zero padded.
  const w = new Uint32Array(16);
  for (let i = 0; i < bytes.length; i++) w[i >> 2] |= bytes[i] << (8 * (i & 3));
  return w;
}

function chunkOutput(key, chunk, index, flags) {
  let cv = key;
  const blocks = Math.max(1, Math.ceil(chunk.length / BLOCK_LEN));
  for (let b = 0; b < blocks; b++) {
    const block = chunk.subarray(b * BLOCK_LEN, Math.min(chunk.length, (b + 1) * BLOCK_LEN));
    const f = flags | (b === 0 ? CHUNK_START : 0) | (b === blocks - 1 ? CHUNK_END : 0);
    const out = { cv, words: wordsOf(block), counter: index, len: block.length, flags: f };
    if (b === blocks - 1) return out;
    cv = compress(out.cv, out.words, out.counter, out.len, out.flags).slice(0, 8);
  }
  throw new Error("unreachable");
}

function chainingValue(o) {
  return compress(o.cv, o.words, o.counter, o.len, o.flags).slice(0, 8);
}

function parentOutput(left, right, key, flags) {
  const words = new Uint32Array(16);
  words.set(left, 0);
  words.set(right, 8);
  return { cv: key, words, counter: 0, len: BLOCK_LEN, flags: flags | PARENT };
}

function hashWith(input, key, flags) {
  const chunks = Math.max(1, Math.ceil(input.length / CHUNK_LEN));
  const stack = [];
  let last = null;
  for (let c = 0; c < chunks; c++) {
    const chunk = input.subarray(c * CHUNK_LEN, Math.min(input.length, (c + 1) * CHUNK_LEN));
    const out = chunkOutput(key, chunk, c, flags);
    if (c === chunks - 1) {
      last = out;
      break;
    }
    // A completed chunk (more input follows): merge equal-sized subtrees, as many as the count's trailing zeros.
    let cv = chainingValue(out);
    let total = c + 1;
    while ((total & 1) === 0) {
      cv = chainingValue(parentOutput(stack.pop(), cv, key, flags));
      total /= 2;
    }
    stack.push(cv);
  }
  let out = last;
  while (stack.length > 0) out = parentOutput(stack.pop(), chainingValue(out), key, flags);
  const root = compress(out.cv, out.words, out.counter, out.len, out.flags | ROOT);
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = (root[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return bytes;
}

function keyWords(key) {
  if (!(key instanceof Uint8Array) || key.length !== 32) throw new Error("a BLAKE3 key is 32 bytes");
  const w = new Uint32Array(8);
  for (let i = 0; i < 32; i++) w[i >> 2] |= key[i] << (8 * (i & 3));
  return w;
}

const utf8 = new TextEncoder();

/// BLAKE3 of `input` (Uint8Array), 32 bytes.
export function hash(input) {
  return hashWith(input, IV, 0);
}

/// Keyed BLAKE3 with a 32-byte key.
export function keyedHash(key, input) {
  return hashWith(input, keyWords(key), KEYED_HASH);
}

/// BLAKE3 in key-derivation mode: `context` is a string (the protocol's domain), `material` the bytes.
export function deriveKey(context, material) {
  const contextKey = hashWith(utf8.encode(context), IV, DERIVE_KEY_CONTEXT);
  return hashWith(material, keyWords(contextKey), DERIVE_KEY_MATERIAL);
}
