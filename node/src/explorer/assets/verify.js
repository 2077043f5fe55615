// In-browser verification of a committed transaction, the same checks as `wallet verify`
// (wallet/src/verify.rs), from canonical bytes only: nothing in the node's decoded JSON is trusted.
//
// Validator-set changes are followed as the wallet does (`followTransitions`): from the genesis set, each
// transition of `GET /validators/transitions` up to the block's height, in order; the set first in force at
// `a` is taken when the header at `a - 1` is of this chain, names the trusted set, is certified by more than
// 2/3 of its power, and names the new set's bytes in `next_validators_hash`. The page keeps no state: it
// walks from genesis every time.
//
// Hashes: BLAKE3 in key-derivation mode with the protocol's domain contexts (ledger-core/src/hash.rs),
// computed by blake3.js. Signatures: Ed25519 through WebCrypto over
// blake3_derive(domain, u64le(len(chain_id)) || chain_id || payload) (ledger-core/src/crypto.rs).
//
// Signature rule: the chain accepts signatures under ZIP 215 (ledger-core/src/zip215.rs); WebCrypto checks
// RFC 8032 strictly. Signatures made by honest signers pass both. A signature that only ZIP 215 accepts
// (non-canonical encodings, small-order components) would be reported here as failing, never the other
// way round: a "verified" here is never weaker than the chain's rule.

import { deriveKey } from "./blake3.js";

const DOMAIN = {
  txId: "ledger v1 tx id",
  merkleLeaf: "ledger v1 merkle leaf",
  merkleNode: "ledger v1 merkle node",
  header: "ledger v1 block header",
  txSignature: "ledger v1 tx signature",
  voteSignature: "ledger v1 vote signature",
  addressChecksum: "ledger v1 address checksum",
  validatorSet: "ledger v1 validator set",
};
const PROOF_SIBLINGS_MAX = 32;
const VALIDATORS_MAX = 256;
const MONIKER_BYTES_MAX = 64;
const utf8 = new TextEncoder();
const utf8d = new TextDecoder("utf-8", { fatal: true });

export function fromHex(s, what) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error(`${what} is not hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function eq(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function u32le(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function u64le(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

/// A borsh reader over canonical bytes that refuses to read past the end.
class Reader {
  constructor(bytes, what) {
    this.b = bytes;
    this.o = 0;
    this.what = what;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n) {
    if (this.o + n > this.b.length) throw new Error(`${this.what}: truncated at byte ${this.o}`);
  }
  u8() {
    this.need(1);
    return this.b[this.o++];
  }
  u16() {
    this.need(2);
    const x = this.v.getUint16(this.o, true);
    this.o += 2;
    return x;
  }
  u32() {
    this.need(4);
    const x = this.v.getUint32(this.o, true);
    this.o += 4;
    return x;
  }
  u64() {
    this.need(8);
    const x = this.v.getBigUint64(this.o, true);
    this.o += 8;
    return x;
  }
  bytes(n) {
    this.need(n);
    const x = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return x;
  }
  string(max) {
    const n = this.u32();
    if (n > max) throw new Error(`${this.what}: string of ${n} bytes`);
    return utf8d.decode(this.bytes(n));
  }
  end() {
    if (this.o !== this.b.length) throw new Error(`${this.what}: ${this.b.length - this.o} bytes after the end`);
  }
}

export function decodeHeader(bytes) {
  const r = new Reader(bytes, "block header");
  const h = {
    version: r.u32(),
    chainId: r.string(1024),
    height: r.u64(),
    prevBlockHash: r.bytes(32),
    timestampMs: r.u64(),
    proposer: r.bytes(32),
    txCount: r.u32(),
    txRoot: r.bytes(32),
    stateRoot: r.bytes(32),
    lastCommitHash: r.bytes(32),
    validatorsHash: r.bytes(32),
    nextValidatorsHash: r.bytes(32),
    opsHash: r.bytes(32),
    govRoot: r.bytes(32),
  };
  r.end();
  return h;
}

export function decodeCertificate(bytes) {
  const r = new Reader(bytes, "certificate");
  const c = { height: r.u64(), round: r.u32(), blockHash: r.bytes(32), signatures: [] };
  const n = r.u32();
  if (n > 1024) throw new Error(`certificate: ${n} signatures`);
  for (let i = 0; i < n; i++) c.signatures.push({ index: r.u16(), signature: r.bytes(64) });
  r.end();
  return c;
}

/// A validator set's canonical bytes: the list of (key, power, moniker), in certificate-index order.
export function decodeValidatorSet(bytes) {
  const r = new Reader(bytes, "validator set");
  const n = r.u32();
  if (n === 0 || n > VALIDATORS_MAX) throw new Error(`validator set: ${n} validators`);
  const validators = [];
  for (let i = 0; i < n; i++) {
    validators.push({ key: r.bytes(32), power: r.u64(), moniker: r.string(MONIKER_BYTES_MAX) });
  }
  r.end();
  return validators;
}

/// The canonical bytes of a list of validators (what `decodeValidatorSet` reads).
function encodeValidatorSet(validators) {
  return concat(
    u32le(validators.length),
    ...validators.flatMap((v) => {
      const name = utf8.encode(v.moniker);
      return [v.key, u64le(v.power), u32le(name.length), name];
    }),
  );
}

/// A signed transaction: the transaction's canonical bytes (what is signed), its fields and the signature.
export function decodeTx(bytes) {
  const r = new Reader(bytes, "transaction");
  const tx = {
    chainId: r.string(1024),
    sender: r.bytes(32),
    recipient: r.bytes(32),
    amount: r.u64(),
    fee: r.u64(),
    nonce: r.u64(),
    expiryHeight: r.u64(),
    memo: r.string(1 << 16),
  };
  tx.unsigned = bytes.subarray(0, r.o);
  tx.signature = r.bytes(64);
  r.end();
  return tx;
}

/// The 32-byte key in an address (`ldg` + key hex + 4-byte checksum hex), with the checksum checked.
export function addressKey(address) {
  if (typeof address !== "string" || address.length !== 3 + 72 || !address.startsWith("ldg")) {
    throw new Error(`not an address: ${String(address).slice(0, 80)}`);
  }
  const raw = fromHex(address.slice(3), "address");
  const key = raw.subarray(0, 32);
  if (!eq(deriveKey(DOMAIN.addressChecksum, key).subarray(0, 4), raw.subarray(32))) {
    throw new Error(`address checksum does not match: ${address}`);
  }
  return key;
}

export function signingMessage(domain, chainId, payload) {
  const c = utf8.encode(chainId);
  return deriveKey(domain, concat(u64le(c.length), c, payload));
}

const leafHash = (id) => deriveKey(DOMAIN.merkleLeaf, id);
const nodeHash = (l, r) => deriveKey(DOMAIN.merkleNode, concat(l, r));

/// ledger-core's MerkleProof::verify, step for step.
export function verifyMerkle(proof, root, id) {
  if (proof.index >= proof.leafCount || proof.siblings.length > PROOF_SIBLINGS_MAX) return false;
  let f = BigInt(proof.index);
  let s = BigInt(proof.leafCount) - 1n;
  let r = leafHash(id);
  for (const p of proof.siblings) {
    if (s === 0n) return false;
    if ((f & 1n) === 1n || f === s) {
      r = nodeHash(p, r);
      while ((f & 1n) === 0n && f !== 0n) {
        f >>= 1n;
        s >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    f >>= 1n;
    s >>= 1n;
  }
  return s === 0n && eq(r, root);
}

/// Whether this browser can check Ed25519 signatures (WebCrypto's Ed25519).
export async function ed25519Available() {
  try {
    if (!globalThis.crypto?.subtle) return false;
    const key = await crypto.subtle.importKey("raw", new Uint8Array(32).fill(0x11), { name: "Ed25519" }, false, [
      "verify",
    ]);
    await crypto.subtle.verify({ name: "Ed25519" }, key, new Uint8Array(64), new Uint8Array(1));
    return true;
  } catch (e) {
    // An invalid point may be refused at import; only a missing algorithm means "not available".
    return !(e instanceof DOMException && e.name === "NotSupportedError");
  }
}

async function ed25519Verify(key, signature, message) {
  try {
    const k = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, k, signature, message);
  } catch {
    return false;
  }
}

export function voteBytes(height, round, blockHash, validatorKey) {
  // Vote { kind: Precommit (1), height u64, round u32, block_hash: Some(hash), validator: key }
  const round4 = new Uint8Array(4);
  new DataView(round4.buffer).setUint32(0, round, true);
  return concat(Uint8Array.of(1), u64le(height), round4, Uint8Array.of(1), blockHash, validatorKey);
}

/// Follow validator-set transitions (objects of `GET /validators/transitions`, oldest first) from the
/// `genesis` set (validators `{key, power, moniker}`) up to height `upTo`; later ones are left out. Returns
/// `{ reached: {firstHeight, validators, hash}, followed, ok, error }`: `ok` is true when every transition
/// given up to `upTo` verified, false at the first that did not (`error` says why; the walk stops there), and
/// null when a certificate could not be checked here (no Ed25519 in WebCrypto).
export async function followTransitions({ chainId, genesis, transitions, upTo, sigAvailable }) {
  let reached = { firstHeight: 1n, validators: genesis, hash: deriveKey(DOMAIN.validatorSet, encodeValidatorSet(genesis)) };
  let followed = 0;
  const stop = (ok, error) => ({ reached, followed, ok, error });
  for (const t of transitions) {
    let first, validators, setHash, header, headerHash, cert;
    try {
      first = BigInt(t.first_height);
      if (first > BigInt(upTo)) break;
      const setBytes = fromHex(t.validators_hex, "validators_hex");
      validators = decodeValidatorSet(setBytes);
      setHash = deriveKey(DOMAIN.validatorSet, setBytes);
      const headerBytes = fromHex(t.header_hex, "header_hex");
      header = decodeHeader(headerBytes);
      headerHash = deriveKey(DOMAIN.header, headerBytes);
      cert = decodeCertificate(fromHex(t.certificate_hex, "certificate_hex"));
    } catch (e) {
      return stop(false, `transition to height ${t?.first_height}: does not decode: ${e.message}`);
    }
    const at = `transition to height ${first}`;
    if (first <= reached.firstHeight) return stop(false, `${at} is not after the trusted set's first height ${reached.firstHeight}`);
    if (header.height + 1n !== first) return stop(false, `${at}: its header is at height ${header.height}, not at the height before`);
    if (header.chainId !== chainId) return stop(false, `${at}: its header is for chain "${header.chainId}"`);
    if (!eq(header.validatorsHash, reached.hash)) {
      return stop(false, `${at}: its header names validator set ${toHex(header.validatorsHash).slice(0, 16)}…, not the trusted set ${toHex(reached.hash).slice(0, 16)}… (a change of the set is missing before it)`);
    }
    const [certOk, certDetail] = await checkCertificate(cert, header, headerHash, reached.validators, chainId, sigAvailable);
    if (certOk !== true) return stop(certOk, `${at}: the certificate of its header: ${certDetail}`);
    if (!eq(setHash, header.nextValidatorsHash)) {
      return stop(false, `${at}: the set's bytes hash to ${toHex(setHash).slice(0, 16)}…, but the certified header names ${toHex(header.nextValidatorsHash).slice(0, 16)}… as the next set`);
    }
    reached = { firstHeight: first, validators, hash: setHash };
    followed++;
  }
  return stop(true, null);
}

/// Check a committed transaction. `input`: { id, height, txHex, proof: {index, leaf_count, siblings},
/// headerHex, certificateHex, genesis, transitions } (`transitions`: every validator-set transition of the
/// chain up to `height`, oldest first, as `GET /validators/transitions` gives them). Returns
/// { checks: [{name, ok, detail}], ok } where `ok` says every check ran and passed. A check that could not
/// run is reported with `ok: null` and why.
export async function verifyTx(input) {
  const checks = [];
  const push = (name, ok, detail) => checks.push({ name, ok, detail });
  const result = () => ({ checks, ok: checks.length > 0 && checks.every((c) => c.ok === true) });
  const chainId = input.genesis?.chain_id;
  if (typeof chainId !== "string") {
    push("genesis", false, "the node's /genesis has no chain_id");
    return result();
  }
  let tx, header, cert, validators, proof;
  try {
    tx = decodeTx(fromHex(input.txHex, "tx_hex"));
    header = decodeHeader(fromHex(input.headerHex, "header_hex"));
    cert = decodeCertificate(fromHex(input.certificateHex, "certificate_hex"));
    validators = input.genesis.validators.map((v) => ({
      key: addressKey(v.address),
      power: BigInt(v.power),
      moniker: String(v.moniker ?? ""),
    }));
    proof = {
      index: input.proof.index,
      leafCount: input.proof.leaf_count,
      siblings: input.proof.siblings.map((s) => {
        const b = fromHex(s, "proof sibling");
        if (b.length !== 32) throw new Error("proof sibling is not 32 bytes");
        return b;
      }),
    };
  } catch (e) {
    push("decode", false, `the evidence does not decode: ${e.message}`);
    return result();
  }
  const id = fromHex(input.id, "id");
  const txBytes = fromHex(input.txHex, "tx_hex");
  const computedId = deriveKey(DOMAIN.txId, txBytes);
  push(
    "tx_id",
    eq(computedId, id),
    eq(computedId, id)
      ? `transaction bytes hash to ${input.id}`
      : `transaction bytes hash to ${toHex(computedId)}, not to ${input.id}`,
  );
  push(
    "tx_chain",
    tx.chainId === chainId,
    tx.chainId === chainId ? `transaction is for chain "${chainId}"` : `transaction is for chain "${tx.chainId}", genesis says "${chainId}"`,
  );
  const sigAvailable = await ed25519Available();
  if (!sigAvailable) {
    push("tx_signature", null, "not verified here: this browser has no Ed25519 in WebCrypto");
  } else {
    const ok = await ed25519Verify(tx.sender, tx.signature, signingMessage(DOMAIN.txSignature, tx.chainId, tx.unsigned));
    push("tx_signature", ok, ok ? "signed by the sender" : "the sender's signature does not verify");
  }
  push(
    "header_chain",
    header.chainId === chainId,
    header.chainId === chainId ? `block header is for chain "${chainId}"` : `block header is for chain "${header.chainId}"`,
  );
  const heightOk = header.height === BigInt(input.height);
  push("header_height", heightOk, heightOk ? `block header is at height ${header.height}` : `block header is at height ${header.height}, the node said ${input.height}`);
  const countOk = proof.leafCount === header.txCount;
  push(
    "proof_leaf_count",
    countOk,
    countOk
      ? `proof is for a tree of ${header.txCount} transactions, as the header says`
      : `proof is for a tree of ${proof.leafCount} leaves, the header has ${header.txCount} transactions`,
  );
  const merkleOk = verifyMerkle(proof, header.txRoot, id);
  push(
    "merkle_proof",
    merkleOk,
    merkleOk
      ? `transaction is leaf ${proof.index} of ${proof.leafCount} under tx root ${toHex(header.txRoot).slice(0, 16)}…`
      : `the Merkle proof does not place this transaction under the header's tx root ${toHex(header.txRoot).slice(0, 16)}…`,
  );
  // The set in force at the block's height: the genesis set, then every certified change up to it.
  const walk = await followTransitions({
    chainId,
    genesis: validators,
    transitions: input.transitions ?? [],
    upTo: header.height,
    sigAvailable,
  });
  const plural = walk.followed === 1 ? "" : "s";
  push(
    "set_transitions",
    walk.ok,
    walk.ok === true
      ? walk.followed === 0
        ? "followed 0 validator-set transitions: the genesis set is still in force"
        : `followed ${walk.followed} certified validator-set transition${plural} from the genesis set to the set in force from height ${walk.reached.firstHeight}`
      : walk.ok === null
        ? `not verified here: ${walk.error}`
        : `followed ${walk.followed} transition${plural} from the genesis set, then: ${walk.error}`,
  );
  const inForce = header.height >= walk.reached.firstHeight;
  const setOk = inForce && eq(header.validatorsHash, walk.reached.hash);
  const setName = walk.followed === 0 ? "the genesis validator set" : `the validator set in force from height ${walk.reached.firstHeight}`;
  push(
    "validator_set",
    setOk,
    setOk
      ? `the block names ${setName} as its signers`
      : `the block names validator set ${toHex(header.validatorsHash).slice(0, 16)}…, not ${setName} (${toHex(walk.reached.hash).slice(0, 16)}…)${walk.ok === true ? ": the node left out a change of the set, or the block is not of this chain" : ""}`,
  );
  validators = walk.reached.validators;
  const blockHash = deriveKey(DOMAIN.header, fromHex(input.headerHex, "header_hex"));
  push("certificate", ...(await checkCertificate(cert, header, blockHash, validators, chainId, sigAvailable)));
  return result();
}

async function checkCertificate(cert, header, blockHash, validators, chainId, sigAvailable) {
  if (cert.height !== header.height) return [false, `certificate is for height ${cert.height}, the header is at ${header.height}`];
  if (!eq(cert.blockHash, blockHash)) return [false, `certificate is for block ${toHex(cert.blockHash).slice(0, 16)}…, the header hashes to ${toHex(blockHash).slice(0, 16)}…`];
  if (!sigAvailable) return [null, "not verified here: this browser has no Ed25519 in WebCrypto"];
  let previous = -1;
  let signed = 0n;
  for (const s of cert.signatures) {
    if (s.index <= previous) return [false, `signatures are not in strictly increasing validator order at index ${s.index}`];
    previous = s.index;
    const v = validators[s.index];
    if (!v) return [false, `validator index ${s.index} is outside the set of ${validators.length}`];
    const msg = signingMessage(DOMAIN.voteSignature, chainId, voteBytes(cert.height, cert.round, cert.blockHash, v.key));
    if (!(await ed25519Verify(v.key, s.signature, msg))) return [false, `the precommit signature of validator ${s.index} does not verify`];
    signed += v.power;
  }
  const total = validators.reduce((n, v) => n + v.power, 0n);
  if (!(signed * 3n > total * 2n)) return [false, `signers hold ${signed} of ${total} voting power, not more than 2/3`];
  return [
    true,
    `${cert.signatures.length} of ${validators.length} validators (power ${signed} of ${total}) precommitted block ${toHex(blockHash).slice(0, 16)}… at height ${cert.height}, round ${cert.round}`,
  ];
}
