// kurir's libsignal interop harness.
//
// One Node.js process that drives @signalapp/libsignal-client (pinned in package.json) for
// kurir's interop tests. It reads JSON-lines requests on stdin,
//     {"id": n, "op": "...", ...args}
// and writes exactly one JSON line per request on stdout, in request order:
//     {"id": n, "ok": true, ...result}
//     {"id": n, "ok": false, "error": "<ErrorCode name or class>", "message": "..."}
// Every binary value, in and out, is standard base64. Requests are handled one at a time.
//
// The harness keeps named participants in memory, each with its own in-memory stores built on
// the library's abstract store classes. The stores keep serialized records, as a real store
// would, so every load goes through libsignal's deserializer.
//
// Run it with the harness folder as the working directory: ESM ignores NODE_PATH.
// The operations are listed in OPS at the bottom and documented in docs/interop.md.

import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';

import * as SignalClient from '@signalapp/libsignal-client';
// Not re-exported by the package index; the package has no "exports" map, so a deep import works.
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';

const {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ErrorCode,
  Fingerprint,
  IdentityKeyStore,
  KEMKeyPair,
  KEMPublicKey,
  KEMSecretKey,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  LibSignalErrorBase,
  PlaintextContent,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  ScannableFingerprint,
  SenderCertificate,
  SenderKeyDistributionMessage,
  SenderKeyMessage,
  SenderKeyRecord,
  SenderKeyStore,
  ServerCertificate,
  SessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  UnidentifiedSenderMessageContent,
} = SignalClient;

const LIBRARY_VERSION = '0.90.0';

// ---------------------------------------------------------------------------------------------
// Errors

/** A request the harness itself refuses (missing argument, unknown participant, ...). */
class HarnessError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function errorFields(err) {
  if (err instanceof HarnessError) {
    return { error: err.code, message: err.message };
  }
  if (err instanceof LibSignalErrorBase) {
    const name = ErrorCode[err.code] ?? String(err.code);
    return { error: name, message: err.message };
  }
  if (err instanceof Error) {
    return { error: err.constructor?.name ?? err.name ?? 'Error', message: err.message };
  }
  return { error: 'Error', message: String(err) };
}

// ---------------------------------------------------------------------------------------------
// Argument helpers

function need(args, key) {
  if (!(key in args) || args[key] === null || args[key] === undefined) {
    throw new HarnessError('BadRequest', `missing argument: ${key}`);
  }
  return args[key];
}

function b64in(value, key) {
  if (typeof value !== 'string') {
    throw new HarnessError('BadRequest', `argument ${key} must be a base64 string`);
  }
  return Buffer.from(value, 'base64');
}

function bytesArg(args, key) {
  return b64in(need(args, key), key);
}

function optBytes(args, key) {
  const value = args[key];
  return value === null || value === undefined ? null : b64in(value, key);
}

function intArg(args, key, fallback) {
  const value = key in args && args[key] !== null ? args[key] : fallback;
  if (value === undefined || !Number.isInteger(value)) {
    throw new HarnessError('BadRequest', `argument ${key} must be an integer`);
  }
  return value;
}

function strArg(args, key, fallback) {
  const value = key in args && args[key] !== null ? args[key] : fallback;
  if (typeof value !== 'string') {
    throw new HarnessError('BadRequest', `argument ${key} must be a string`);
  }
  return value;
}

function b64(bytes) {
  return bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('base64');
}

// ---------------------------------------------------------------------------------------------
// A minimal protobuf codec, for the fields libsignal 0.90.0 does not expose (kyber prekey id and
// ciphertext, pq_ratchet, session version) and for records built from external key material.

function readVarint(buf, pos) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new HarnessError('BadProtobuf', 'truncated varint');
    const byte = buf[pos++];
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7n;
    if (shift > 63n) throw new HarnessError('BadProtobuf', 'varint too long');
  }
}

/** Decodes one protobuf message into {fieldNumber: [values...]} (varints as BigInt). */
function pbDecode(buf) {
  const fields = {};
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value;
    if (wire === 0) {
      [value, pos] = readVarint(buf, pos);
    } else if (wire === 1) {
      if (pos + 8 > buf.length) throw new HarnessError('BadProtobuf', 'truncated fixed64');
      value = buf.readBigUInt64LE(pos);
      pos += 8;
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      const end = pos + Number(len);
      if (end > buf.length) throw new HarnessError('BadProtobuf', 'truncated bytes');
      value = buf.subarray(pos, end);
      pos = end;
    } else if (wire === 5) {
      if (pos + 4 > buf.length) throw new HarnessError('BadProtobuf', 'truncated fixed32');
      value = buf.readUInt32LE(pos);
      pos += 4;
    } else {
      throw new HarnessError('BadProtobuf', `unsupported wire type ${wire}`);
    }
    (fields[field] ??= []).push(value);
  }
  return fields;
}

function pbFirst(fields, n) {
  const values = fields[n];
  return values === undefined ? null : values[values.length - 1];
}

function pbInt(fields, n) {
  const v = pbFirst(fields, n);
  return v === null ? null : Number(v);
}

function writeVarint(out, value) {
  let v = BigInt(value);
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v === 0n) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** Encodes [[field, kind, value], ...] with kind in varint | bytes | fixed64; nulls skipped. */
function pbEncode(entries) {
  const out = [];
  for (const [field, kind, value] of entries) {
    if (value === null || value === undefined) continue;
    if (kind === 'varint') {
      writeVarint(out, (BigInt(field) << 3n) | 0n);
      writeVarint(out, value);
    } else if (kind === 'bytes') {
      writeVarint(out, (BigInt(field) << 3n) | 2n);
      writeVarint(out, value.length);
      for (const byte of value) out.push(byte);
    } else if (kind === 'fixed64') {
      writeVarint(out, (BigInt(field) << 3n) | 1n);
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(value));
      for (const byte of b) out.push(byte);
    } else {
      throw new Error(`unknown protobuf kind ${kind}`);
    }
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// In-memory stores (serialized records, like a real store)

function addressKey(address) {
  return `${address.name()}.${address.deviceId()}`;
}

class MemSessionStore extends SessionStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSession(address, record) {
    this.records.set(addressKey(address), record.serialize());
  }
  async getSession(address) {
    const bytes = this.records.get(addressKey(address));
    return bytes === undefined ? null : SessionRecord.deserialize(bytes);
  }
  async getExistingSessions(addresses) {
    return addresses.map((address) => {
      const bytes = this.records.get(addressKey(address));
      if (bytes === undefined) {
        throw new HarnessError('NoSession', `no session for ${addressKey(address)}`);
      }
      return SessionRecord.deserialize(bytes);
    });
  }
}

/**
 * A session store that keeps libsignal's native SessionRecord objects, never serializing them.
 * libsignal hands saveSession a record object of its own after every change, so keeping the
 * objects is safe. Used for benchmarks (create_participant with native_records), where it takes
 * the store's encoding out of libsignal's figures.
 */
class NativeSessionStore extends SessionStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSession(address, record) {
    this.records.set(addressKey(address), record);
  }
  async getSession(address) {
    return this.records.get(addressKey(address)) ?? null;
  }
  async getExistingSessions(addresses) {
    return addresses.map((address) => {
      const record = this.records.get(addressKey(address));
      if (record === undefined) {
        throw new HarnessError('NoSession', `no session for ${addressKey(address)}`);
      }
      return record;
    });
  }
}

class MemIdentityStore extends IdentityKeyStore {
  constructor(identityPrivate, registrationId) {
    super();
    this.identityPrivate = identityPrivate;
    this.registrationId = registrationId;
    this.known = new Map();
    this.trustAll = false;
  }
  async getIdentityKey() {
    return this.identityPrivate;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(address, key) {
    const k = addressKey(address);
    const previous = this.known.get(k);
    this.known.set(k, key.serialize());
    const replaced = previous !== undefined && !Buffer.from(previous).equals(key.serialize());
    return replaced ? 1 : 0; // IdentityChange.ReplacedExisting : NewOrUnchanged
  }
  async isTrustedIdentity(address, key, _direction) {
    if (this.trustAll) return true;
    const previous = this.known.get(addressKey(address));
    return previous === undefined || Buffer.from(previous).equals(key.serialize());
  }
  async getIdentity(address) {
    const bytes = this.known.get(addressKey(address));
    return bytes === undefined ? null : PublicKey.deserialize(bytes);
  }
}

class MemPreKeyStore extends PreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async savePreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getPreKey(id) {
    const bytes = this.records.get(id);
    if (bytes === undefined) throw new HarnessError('NoPreKey', `no prekey ${id}`);
    return PreKeyRecord.deserialize(bytes);
  }
  async removePreKey(id) {
    this.records.delete(id);
  }
}

class MemSignedPreKeyStore extends SignedPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSignedPreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getSignedPreKey(id) {
    const bytes = this.records.get(id);
    if (bytes === undefined) throw new HarnessError('NoSignedPreKey', `no signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(bytes);
  }
}

class MemKyberPreKeyStore extends KyberPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
    this.used = [];
  }
  async saveKyberPreKey(id, record) {
    this.records.set(id, record.serialize());
  }
  async getKyberPreKey(id) {
    const bytes = this.records.get(id);
    if (bytes === undefined) throw new HarnessError('NoKyberPreKey', `no kyber prekey ${id}`);
    return KyberPreKeyRecord.deserialize(bytes);
  }
  async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
    this.used.push({ id, signedPreKeyId, baseKey: b64(baseKey.serialize()) });
  }
}

class MemSenderKeyStore extends SenderKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSenderKey(sender, distributionId, record) {
    this.records.set(`${addressKey(sender)}/${distributionId}`, record.serialize());
  }
  async getSenderKey(sender, distributionId) {
    const bytes = this.records.get(`${addressKey(sender)}/${distributionId}`);
    return bytes === undefined ? null : SenderKeyRecord.deserialize(bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Participants

const participants = new Map();

function participant(args, key = 'name') {
  const name = strArg(args, key);
  const p = participants.get(name);
  if (p === undefined) throw new HarnessError('UnknownParticipant', `no participant ${name}`);
  return p;
}

function peerAddress(args) {
  return ProtocolAddress.new(strArg(args, 'peer'), intArg(args, 'device', 1));
}

function randomRegistrationId() {
  return 1 + Math.floor(Math.random() * 16380);
}

function describeParticipant(p) {
  return {
    name: p.name,
    address: p.address,
    device_id: p.deviceId,
    registration_id: p.registrationId,
    identity_public: b64(p.identity.getPublicKey().serialize()),
    identity_private: b64(p.identity.serialize()),
  };
}

function timestampArg(args) {
  return intArg(args, 'timestamp', Date.now());
}

/** Builds a KyberPreKeyRecord from external key bytes (the JS API cannot build a KEMKeyPair). */
function kyberRecordFromParts(id, timestamp, publicBytes, secretBytes, signature) {
  const bytes = pbEncode([
    [1, 'varint', id],
    [2, 'bytes', publicBytes],
    [3, 'bytes', secretBytes],
    [4, 'bytes', signature],
    [5, 'fixed64', timestamp],
  ]);
  return KyberPreKeyRecord.deserialize(bytes);
}

// ---------------------------------------------------------------------------------------------
// Message inspection

function parseSignalMessageBytes(bytes) {
  // Validate with libsignal first: this raises libsignal's own error for bad input.
  const msg = SignalMessage.deserialize(bytes);
  const fields = pbDecode(bytes.subarray(1, bytes.length - 8));
  return {
    message_version: msg.messageVersion(),
    version_byte: bytes[0],
    counter: msg.counter(),
    previous_counter: pbInt(fields, 3),
    ratchet_key: b64(pbFirst(fields, 1)),
    ciphertext: b64(msg.body()),
    pq_ratchet: b64(msg.pqRatchet()),
    mac: b64(bytes.subarray(bytes.length - 8)),
  };
}

function parsePreKeyMessageBytes(bytes) {
  const msg = PreKeySignalMessage.deserialize(bytes);
  const fields = pbDecode(bytes.subarray(1));
  const inner = pbFirst(fields, 4);
  return {
    message_version: msg.version(),
    version_byte: bytes[0],
    registration_id: msg.registrationId(),
    pre_key_id: msg.preKeyId(),
    signed_pre_key_id: msg.signedPreKeyId(),
    kyber_pre_key_id: pbInt(fields, 7),
    kyber_ciphertext: b64(pbFirst(fields, 8)),
    base_key: b64(pbFirst(fields, 2)),
    identity_key: b64(pbFirst(fields, 3)),
    message: b64(inner),
    signal_message: inner === null ? null : parseSignalMessageBytes(Buffer.from(inner)),
  };
}

function describeSessionStructure(s) {
  const pendingPre = pbFirst(s, 9);
  const pendingKyber = pbFirst(s, 14);
  const pre = pendingPre === null ? null : pbDecode(pendingPre);
  const kyber = pendingKyber === null ? null : pbDecode(pendingKyber);
  const sender = pbFirst(s, 6);
  const receivers = (s[7] ?? []).map((c) => {
    const chain = pbDecode(c);
    const ck = pbFirst(chain, 3);
    const ckFields = ck === null ? {} : pbDecode(ck);
    return {
      sender_ratchet_key: b64(pbFirst(chain, 1)),
      chain_key: b64(pbFirst(ckFields, 2)),
      chain_index: pbInt(ckFields, 1) ?? 0,
      message_keys: (chain[4] ?? []).length,
    };
  });
  let senderChain = null;
  if (sender !== null) {
    const chain = pbDecode(sender);
    const ck = pbFirst(chain, 3);
    const ckFields = ck === null ? {} : pbDecode(ck);
    senderChain = {
      sender_ratchet_key: b64(pbFirst(chain, 1)),
      chain_key: b64(pbFirst(ckFields, 2)),
      chain_index: pbInt(ckFields, 1) ?? 0,
    };
  }
  const pq = pbFirst(s, 15);
  return {
    version: pbInt(s, 1) ?? 0,
    local_identity: b64(pbFirst(s, 2)),
    remote_identity: b64(pbFirst(s, 3)),
    root_key: b64(pbFirst(s, 4)),
    previous_counter: pbInt(s, 5) ?? 0,
    sender_chain: senderChain,
    receiver_chains: receivers,
    pending_pre_key:
      pre === null
        ? null
        : {
            pre_key_id: pbInt(pre, 1),
            signed_pre_key_id: pbInt(pre, 3) ?? 0,
            base_key: b64(pbFirst(pre, 2)),
          },
    pending_kyber_pre_key:
      kyber === null
        ? null
        : { pre_key_id: pbInt(kyber, 1) ?? 0, ciphertext: b64(pbFirst(kyber, 2)) },
    remote_registration_id: pbInt(s, 10) ?? 0,
    local_registration_id: pbInt(s, 11) ?? 0,
    alice_base_key: b64(pbFirst(s, 13)),
    pq_ratchet_state_length: pq === null ? 0 : pq.length,
  };
}

function parseCertificateFields(cert) {
  const server = cert.serverCertificate();
  return {
    sender_uuid: cert.senderUuid(),
    sender_e164: cert.senderE164(),
    sender_device_id: cert.senderDeviceId(),
    sender_key: b64(cert.key().serialize()),
    expiration: cert.expiration(),
    server_key_id: server.keyId(),
    server_key: b64(server.key().serialize()),
    server_certificate: b64(server.serialize()),
  };
}

function describeUsmc(usmc) {
  return {
    msg_type: usmc.msgType(),
    contents: b64(usmc.contents()),
    content_hint: usmc.contentHint(),
    group_id: b64(usmc.groupId()),
    sender_certificate: b64(usmc.senderCertificate().serialize()),
    sender: parseCertificateFields(usmc.senderCertificate()),
    serialized: b64(usmc.serialize()),
  };
}

// ---------------------------------------------------------------------------------------------
// Operations. Each takes the request's arguments and returns the result fields.

const OPS = {
  // --- harness -------------------------------------------------------------------------------
  async ping() {
    return { library: '@signalapp/libsignal-client', version: LIBRARY_VERSION };
  },

  // --- participants --------------------------------------------------------------------------
  async create_participant(args) {
    const name = strArg(args, 'name');
    if (participants.has(name)) {
      throw new HarnessError('BadRequest', `participant ${name} exists`);
    }
    const identityBytes = optBytes(args, 'identity_private');
    const identity =
      identityBytes === null ? PrivateKey.generate() : PrivateKey.deserialize(identityBytes);
    const registrationId = intArg(args, 'registration_id', randomRegistrationId());
    const p = {
      name,
      address: strArg(args, 'address', name),
      deviceId: intArg(args, 'device_id', 1),
      registrationId,
      identity,
      sessions: args.native_records ? new NativeSessionStore() : new MemSessionStore(),
      identities: new MemIdentityStore(identity, registrationId),
      prekeys: new MemPreKeyStore(),
      signedPrekeys: new MemSignedPreKeyStore(),
      kyberPrekeys: new MemKyberPreKeyStore(),
      senderKeys: new MemSenderKeyStore(),
      nextId: 1,
    };
    participants.set(name, p);
    return describeParticipant(p);
  },

  async reset() {
    participants.clear();
    return {};
  },

  async describe_participant(args) {
    return describeParticipant(participant(args));
  },

  async remove_participant(args) {
    const p = participant(args);
    participants.delete(p.name);
    return {};
  },

  async set_trust_all(args) {
    participant(args).identities.trustAll = Boolean(need(args, 'trust_all'));
    return {};
  },

  async saved_identity(args) {
    const key = await participant(args).identities.getIdentity(peerAddress(args));
    return { identity: key === null ? null : b64(key.serialize()) };
  },

  // --- prekeys -------------------------------------------------------------------------------
  async generate_prekeys(args) {
    // One EC one-time prekey (unless one_time=false), one signed prekey, one Kyber1024 prekey.
    const p = participant(args);
    const timestamp = timestampArg(args);
    const base = p.nextId;
    const preKeyId = intArg(args, 'prekey_id', base);
    const signedId = intArg(args, 'signed_prekey_id', base);
    const kyberId = intArg(args, 'kyber_prekey_id', base);
    p.nextId = Math.max(p.nextId, preKeyId, signedId, kyberId) + 1;
    const oneTime = args.one_time === undefined ? true : Boolean(args.one_time);

    let prekey = null;
    if (oneTime) {
      const priv = PrivateKey.generate();
      await p.prekeys.savePreKey(preKeyId, PreKeyRecord.new(preKeyId, priv.getPublicKey(), priv));
      prekey = priv;
    }
    const signedPriv = PrivateKey.generate();
    const signedPub = signedPriv.getPublicKey();
    const signedSig = p.identity.sign(signedPub.serialize());
    await p.signedPrekeys.saveSignedPreKey(
      signedId,
      SignedPreKeyRecord.new(signedId, timestamp, signedPub, signedPriv, signedSig),
    );
    const kem = KEMKeyPair.generate();
    const kemPub = kem.getPublicKey().serialize();
    const kyberSig = p.identity.sign(kemPub);
    await p.kyberPrekeys.saveKyberPreKey(
      kyberId,
      KyberPreKeyRecord.new(kyberId, timestamp, kem, kyberSig),
    );
    return {
      registration_id: p.registrationId,
      device_id: p.deviceId,
      identity_key: b64(p.identity.getPublicKey().serialize()),
      prekey_id: oneTime ? preKeyId : null,
      prekey_public: oneTime ? b64(prekey.getPublicKey().serialize()) : null,
      prekey_private: oneTime ? b64(prekey.serialize()) : null,
      signed_prekey_id: signedId,
      signed_prekey_public: b64(signedPub.serialize()),
      signed_prekey_private: b64(signedPriv.serialize()),
      signed_prekey_signature: b64(signedSig),
      kyber_prekey_id: kyberId,
      kyber_prekey_public: b64(kemPub),
      kyber_prekey_secret: b64(kem.getSecretKey().serialize()),
      kyber_prekey_signature: b64(kyberSig),
    };
  },

  async add_prekey(args) {
    const p = participant(args);
    const id = intArg(args, 'key_id');
    const priv = PrivateKey.deserialize(bytesArg(args, 'private'));
    await p.prekeys.savePreKey(id, PreKeyRecord.new(id, priv.getPublicKey(), priv));
    return { key_id: id, public: b64(priv.getPublicKey().serialize()) };
  },

  async add_signed_prekey(args) {
    const p = participant(args);
    const id = intArg(args, 'key_id');
    const priv = PrivateKey.deserialize(bytesArg(args, 'private'));
    const pub = priv.getPublicKey();
    const signature = optBytes(args, 'signature') ?? p.identity.sign(pub.serialize());
    await p.signedPrekeys.saveSignedPreKey(
      id,
      SignedPreKeyRecord.new(id, timestampArg(args), pub, priv, signature),
    );
    return { key_id: id, public: b64(pub.serialize()), signature: b64(signature) };
  },

  async add_kyber_prekey(args) {
    // External KEM key pair (any type byte libsignal can deserialize).
    const p = participant(args);
    const id = intArg(args, 'key_id');
    const publicBytes = bytesArg(args, 'public');
    const secretBytes = bytesArg(args, 'secret');
    KEMPublicKey.deserialize(publicBytes); // raise libsignal's error for an unknown key type
    KEMSecretKey.deserialize(secretBytes);
    const signature = optBytes(args, 'signature') ?? p.identity.sign(publicBytes);
    const timestamp = timestampArg(args);
    const record = kyberRecordFromParts(id, timestamp, publicBytes, secretBytes, signature);
    await p.kyberPrekeys.saveKyberPreKey(id, record);
    return { key_id: id, public: b64(record.publicKey().serialize()), signature: b64(signature) };
  },

  async kyber_prekeys_used(args) {
    return { used: participant(args).kyberPrekeys.used };
  },

  async has_prekey(args) {
    const p = participant(args);
    return { present: p.prekeys.records.has(intArg(args, 'key_id')) };
  },

  // --- 1:1 sessions --------------------------------------------------------------------------
  async process_bundle(args) {
    const p = participant(args);
    const prekeyPublic = optBytes(args, 'prekey_public');
    const bundle = PreKeyBundle.new(
      intArg(args, 'registration_id'),
      intArg(args, 'device', 1),
      prekeyPublic === null ? null : intArg(args, 'prekey_id'),
      prekeyPublic === null ? null : PublicKey.deserialize(prekeyPublic),
      intArg(args, 'signed_prekey_id'),
      PublicKey.deserialize(bytesArg(args, 'signed_prekey_public')),
      bytesArg(args, 'signed_prekey_signature'),
      PublicKey.deserialize(bytesArg(args, 'identity_key')),
      intArg(args, 'kyber_prekey_id'),
      KEMPublicKey.deserialize(bytesArg(args, 'kyber_prekey_public')),
      bytesArg(args, 'kyber_prekey_signature'),
    );
    await SignalClient.processPreKeyBundle(bundle, peerAddress(args), p.sessions, p.identities);
    return {};
  },

  async encrypt(args) {
    const p = participant(args);
    const msg = await SignalClient.signalEncrypt(
      bytesArg(args, 'plaintext'),
      peerAddress(args),
      p.sessions,
      p.identities,
    );
    return { type: msg.type(), body: b64(msg.serialize()) };
  },

  async decrypt(args) {
    const p = participant(args);
    const type = intArg(args, 'type');
    const body = bytesArg(args, 'body');
    const address = peerAddress(args);
    let plaintext;
    if (type === CiphertextMessageType.PreKey) {
      plaintext = await SignalClient.signalDecryptPreKey(
        PreKeySignalMessage.deserialize(body),
        address,
        p.sessions,
        p.identities,
        p.prekeys,
        p.signedPrekeys,
        p.kyberPrekeys,
      );
    } else if (type === CiphertextMessageType.Whisper) {
      plaintext = await SignalClient.signalDecrypt(
        SignalMessage.deserialize(body),
        address,
        p.sessions,
        p.identities,
      );
    } else {
      throw new HarnessError('BadRequest', `decrypt: unsupported message type ${type}`);
    }
    return { plaintext: b64(plaintext) };
  },

  async session_info(args) {
    const p = participant(args);
    const record = await p.sessions.getSession(peerAddress(args));
    if (record === null) {
      return { has_session: false, has_current_state: false, version: null, session: null };
    }
    const fields = pbDecode(Buffer.from(record.serialize()));
    const current = pbFirst(fields, 1);
    const session = current === null ? null : describeSessionStructure(pbDecode(current));
    return {
      has_session: true,
      has_current_state: record.hasCurrentState(),
      version: session === null ? null : session.version,
      previous_sessions: (fields[2] ?? []).length,
      session,
    };
  },

  async session_record(args) {
    const p = participant(args);
    const record = await p.sessions.getSession(peerAddress(args));
    return { record: record === null ? null : b64(record.serialize()) };
  },

  async set_session_record(args) {
    // Replaces the participant's record for the peer with serialized bytes (e.g. written by
    // kurir); libsignal's own deserializer checks them, and the session continues from them.
    const p = participant(args);
    const record = SessionRecord.deserialize(bytesArg(args, 'record'));
    await p.sessions.saveSession(peerAddress(args), record);
    return { has_current_state: record.hasCurrentState() };
  },

  async archive_session(args) {
    const p = participant(args);
    const address = peerAddress(args);
    const record = await p.sessions.getSession(address);
    if (record !== null) {
      record.archiveCurrentState();
      await p.sessions.saveSession(address, record);
    }
    return {};
  },

  async delete_session(args) {
    participant(args).sessions.records.delete(addressKey(peerAddress(args)));
    return {};
  },

  // --- primitives ----------------------------------------------------------------------------
  async private_generate() {
    const priv = PrivateKey.generate();
    return { private: b64(priv.serialize()), public: b64(priv.getPublicKey().serialize()) };
  },

  async private_public(args) {
    const priv = PrivateKey.deserialize(bytesArg(args, 'private'));
    return {
      private: b64(priv.serialize()),
      public: b64(priv.getPublicKey().serialize()),
    };
  },

  async public_serialize(args) {
    const pub = PublicKey.deserialize(bytesArg(args, 'public'));
    return { public: b64(pub.serialize()), public_key_bytes: b64(pub.getPublicKeyBytes()) };
  },

  async sign(args) {
    const priv = PrivateKey.deserialize(bytesArg(args, 'private'));
    return { signature: b64(priv.sign(bytesArg(args, 'message'))) };
  },

  async verify(args) {
    const pub = PublicKey.deserialize(bytesArg(args, 'public'));
    return { valid: pub.verify(bytesArg(args, 'message'), bytesArg(args, 'signature')) };
  },

  async agree(args) {
    const priv = PrivateKey.deserialize(bytesArg(args, 'private'));
    const pub = PublicKey.deserialize(bytesArg(args, 'public'));
    return { shared: b64(priv.agree(pub)) };
  },

  async hkdf(args) {
    const okm = SignalClient.hkdf(
      intArg(args, 'length'),
      bytesArg(args, 'ikm'),
      optBytes(args, 'info') ?? Buffer.alloc(0),
      optBytes(args, 'salt'),
    );
    return { okm: b64(okm) };
  },

  async kem_generate() {
    const kp = KEMKeyPair.generate();
    return {
      public: b64(kp.getPublicKey().serialize()),
      secret: b64(kp.getSecretKey().serialize()),
    };
  },

  async kem_check(args) {
    // Whether libsignal deserializes these KEM keys (e.g. ML-KEM-1024 type 0x0A).
    const out = {};
    for (const [key, cls] of [
      ['public', KEMPublicKey],
      ['secret', KEMSecretKey],
    ]) {
      const bytes = optBytes(args, key);
      if (bytes === null) continue;
      try {
        out[key] = { ok: true, serialized: b64(cls.deserialize(bytes).serialize()) };
      } catch (err) {
        out[key] = { ok: false, ...errorFields(err) };
      }
    }
    return out;
  },

  async kem_encapsulate() {
    throw new HarnessError(
      'NotSupported',
      `@signalapp/libsignal-client ${LIBRARY_VERSION} exposes no KEM encapsulate to JavaScript`,
    );
  },

  async kem_decapsulate() {
    throw new HarnessError(
      'NotSupported',
      `@signalapp/libsignal-client ${LIBRARY_VERSION} exposes no KEM decapsulate to JavaScript`,
    );
  },

  async fingerprint(args) {
    const fp = Fingerprint.new(
      intArg(args, 'iterations', 5200),
      intArg(args, 'version', 2),
      bytesArg(args, 'local_id'),
      PublicKey.deserialize(bytesArg(args, 'local_key')),
      bytesArg(args, 'remote_id'),
      PublicKey.deserialize(bytesArg(args, 'remote_key')),
    );
    return {
      display: fp.displayableFingerprint().toString(),
      scannable: b64(fp.scannableFingerprint().toBuffer()),
    };
  },

  async fingerprint_compare(args) {
    const mine = ScannableFingerprint._fromBuffer(bytesArg(args, 'local'));
    const theirs = ScannableFingerprint._fromBuffer(bytesArg(args, 'remote'));
    return { match: mine.compare(theirs) };
  },

  // --- sender keys ---------------------------------------------------------------------------
  async sender_key_distribution(args) {
    const p = participant(args);
    const sender = ProtocolAddress.new(p.address, p.deviceId);
    const msg = await SenderKeyDistributionMessage.create(
      sender,
      strArg(args, 'distribution_id'),
      p.senderKeys,
    );
    return { message: b64(msg.serialize()) };
  },

  async process_sender_key_distribution(args) {
    const p = participant(args);
    const msg = SenderKeyDistributionMessage.deserialize(bytesArg(args, 'message'));
    await SignalClient.processSenderKeyDistributionMessage(peerAddress(args), msg, p.senderKeys);
    return {};
  },

  async group_encrypt(args) {
    const p = participant(args);
    const sender = ProtocolAddress.new(p.address, p.deviceId);
    const msg = await SignalClient.groupEncrypt(
      sender,
      strArg(args, 'distribution_id'),
      p.senderKeys,
      bytesArg(args, 'plaintext'),
    );
    return { type: msg.type(), body: b64(msg.serialize()) };
  },

  async group_decrypt(args) {
    const p = participant(args);
    const plaintext = await SignalClient.groupDecrypt(
      peerAddress(args),
      p.senderKeys,
      bytesArg(args, 'body'),
    );
    return { plaintext: b64(plaintext) };
  },

  async parse_sender_key_distribution(args) {
    const bytes = bytesArg(args, 'message');
    const msg = SenderKeyDistributionMessage.deserialize(bytes);
    const fields = pbDecode(bytes.subarray(1));
    return {
      version_byte: bytes[0],
      distribution_id: msg.distributionId(),
      chain_id: msg.chainId(),
      iteration: msg.iteration(),
      chain_key: b64(msg.chainKey()),
      signing_key: b64(pbFirst(fields, 5)),
    };
  },

  async parse_sender_key_message(args) {
    const bytes = bytesArg(args, 'body');
    const msg = SenderKeyMessage.deserialize(bytes);
    const signingKey = optBytes(args, 'signing_key');
    return {
      version_byte: bytes[0],
      distribution_id: msg.distributionId(),
      chain_id: msg.chainId(),
      iteration: msg.iteration(),
      ciphertext: b64(msg.ciphertext()),
      signature: b64(bytes.subarray(bytes.length - 64)),
      signature_valid:
        signingKey === null ? null : msg.verifySignature(PublicKey.deserialize(signingKey)),
    };
  },

  // --- sealed sender -------------------------------------------------------------------------
  async server_certificate(args) {
    const cert = ServerCertificate.new(
      intArg(args, 'key_id'),
      PublicKey.deserialize(bytesArg(args, 'server_public')),
      PrivateKey.deserialize(bytesArg(args, 'trust_root_private')),
    );
    return { certificate: b64(cert.serialize()) };
  },

  async sender_certificate(args) {
    // For a harness participant (name) or for an external sender (sender_uuid + identity_public).
    let uuid;
    let deviceId;
    let key;
    if (args.name !== undefined && args.name !== null) {
      const p = participant(args);
      uuid = p.address;
      deviceId = p.deviceId;
      key = p.identity.getPublicKey();
    } else {
      uuid = strArg(args, 'sender_uuid');
      deviceId = intArg(args, 'sender_device_id');
      key = PublicKey.deserialize(bytesArg(args, 'identity_public'));
    }
    const cert = SenderCertificate.new(
      uuid,
      args.sender_e164 ?? null,
      deviceId,
      key,
      intArg(args, 'expiration'),
      ServerCertificate.deserialize(bytesArg(args, 'server_certificate')),
      PrivateKey.deserialize(bytesArg(args, 'server_private')),
    );
    return { certificate: b64(cert.serialize()) };
  },

  async parse_sender_certificate(args) {
    const cert = SenderCertificate.deserialize(bytesArg(args, 'certificate'));
    const out = parseCertificateFields(cert);
    const trustRoot = optBytes(args, 'trust_root');
    if (trustRoot !== null) {
      out.valid = cert.validate(PublicKey.deserialize(trustRoot), intArg(args, 'time'));
    }
    return out;
  },

  async sealed_encrypt(args) {
    // sealedSenderEncryptMessage: a 1:1 message sealed with the given sender certificate.
    const p = participant(args);
    const body = await SignalClient.sealedSenderEncryptMessage(
      bytesArg(args, 'plaintext'),
      peerAddress(args),
      SenderCertificate.deserialize(bytesArg(args, 'sender_certificate')),
      p.sessions,
      p.identities,
    );
    return { body: b64(body) };
  },

  async usmc_new(args) {
    // An UnidentifiedSenderMessageContent from parts (message type 1 PreKey, 2 Whisper, 7
    // SenderKey, 8 Plaintext, as on the wire; or CiphertextMessageType 3 for PreKey).
    let type = intArg(args, 'msg_type');
    if (type === CiphertextMessageType.PreKey) type = 1;
    const bytes = pbEncode([
      [1, 'varint', type],
      [2, 'bytes', bytesArg(args, 'sender_certificate')],
      [3, 'bytes', bytesArg(args, 'contents')],
      [4, 'varint', args.content_hint ?? null],
      [5, 'bytes', optBytes(args, 'group_id')],
    ]);
    const usmc = UnidentifiedSenderMessageContent.deserialize(bytes);
    return { usmc: b64(usmc.serialize()) };
  },

  async sealed_encrypt_usmc(args) {
    // sealedSenderEncrypt: seal a given UnidentifiedSenderMessageContent (sealed sender v1).
    const p = participant(args);
    const usmc = UnidentifiedSenderMessageContent.deserialize(bytesArg(args, 'usmc'));
    const body = await SignalClient.sealedSenderEncrypt(usmc, peerAddress(args), p.identities);
    return { body: b64(body) };
  },

  async sealed_decrypt(args) {
    // sealedSenderDecryptMessage: unseal, validate the certificate, decrypt the inner message.
    const p = participant(args);
    const result = await SignalClient.sealedSenderDecryptMessage(
      bytesArg(args, 'body'),
      PublicKey.deserialize(bytesArg(args, 'trust_root')),
      timestampArg(args),
      args.local_e164 ?? null,
      strArg(args, 'local_uuid', p.address),
      intArg(args, 'local_device_id', p.deviceId),
      p.sessions,
      p.identities,
      p.prekeys,
      p.signedPrekeys,
      p.kyberPrekeys,
    );
    return {
      plaintext: b64(result.message()),
      sender_uuid: result.senderUuid(),
      sender_e164: result.senderE164(),
      sender_device_id: result.deviceId(),
    };
  },

  async sealed_decrypt_usmc(args) {
    // sealedSenderDecryptToUsmc: unseal only; no certificate validation, inner left encrypted.
    const p = participant(args);
    const usmc = await SignalClient.sealedSenderDecryptToUsmc(bytesArg(args, 'body'), p.identities);
    return describeUsmc(usmc);
  },

  async sealed_encrypt_multi(args) {
    // sealedSenderMultiRecipientEncrypt (sealed sender v2): one SentMessage for the server.
    const p = participant(args);
    const recipients = need(args, 'recipients').map((r) =>
      ProtocolAddress.new(strArg(r, 'peer'), intArg(r, 'device', 1)),
    );
    const excluded = (args.excluded ?? []).map((u) =>
      SignalClient.ServiceId.parseFromServiceIdString(u),
    );
    const body = await SignalClient.sealedSenderMultiRecipientEncrypt({
      content: UnidentifiedSenderMessageContent.deserialize(bytesArg(args, 'usmc')),
      recipients,
      excludedRecipients: excluded,
      identityStore: p.identities,
      sessionStore: p.sessions,
    });
    return { body: b64(body) };
  },

  async sealed_multi_parse(args) {
    // The server's view of a sealed sender v2 SentMessage: recipients and excluded ones.
    const msg = new SealedSenderMultiRecipientMessage(bytesArg(args, 'body'));
    const recipients = {};
    for (const [serviceId, r] of Object.entries(msg.recipientsByServiceIdString())) {
      recipients[serviceId] = { device_ids: r.deviceIds, registration_ids: r.registrationIds };
    }
    return { recipients, excluded: [...msg.excludedRecipientServiceIdStrings()] };
  },

  async sealed_multi_for_recipient(args) {
    // What the server delivers to one recipient (a sealed sender v2 ReceivedMessage).
    const msg = new SealedSenderMultiRecipientMessage(bytesArg(args, 'body'));
    const serviceId = strArg(args, 'service_id');
    const recipient = msg.recipientsByServiceIdString()[serviceId];
    if (recipient === undefined) {
      throw new HarnessError('BadRequest', `${serviceId} is not a recipient`);
    }
    return { body: b64(msg.messageForRecipient(recipient)) };
  },

  async parse_usmc(args) {
    return describeUsmc(UnidentifiedSenderMessageContent.deserialize(bytesArg(args, 'usmc')));
  },

  // --- decryption errors (retry requests) -----------------------------------------------------
  async decryption_error_message(args) {
    // DecryptionErrorMessage.forOriginal, and the PlaintextContent (type 8) that carries it.
    const type = intArg(args, 'original_type');
    const dem = DecryptionErrorMessage.forOriginal(
      bytesArg(args, 'original_body'),
      type,
      intArg(args, 'timestamp'),
      intArg(args, 'original_sender_device_id'),
    );
    const content = PlaintextContent.from(dem);
    return {
      message: b64(dem.serialize()),
      plaintext_content: b64(content.serialize()),
      ratchet_key: b64(dem.ratchetKey()?.serialize() ?? null),
    };
  },

  async parse_decryption_error_message(args) {
    // Accepts a serialized DecryptionErrorMessage, or a PlaintextContent carrying one.
    const bytes = bytesArg(args, 'body');
    const dem =
      args.plaintext_content === true
        ? DecryptionErrorMessage.extractFromSerializedBody(
            PlaintextContent.deserialize(bytes).body(),
          )
        : DecryptionErrorMessage.deserialize(bytes);
    return {
      timestamp: dem.timestamp(),
      device_id: dem.deviceId(),
      ratchet_key: b64(dem.ratchetKey()?.serialize() ?? null),
    };
  },

  // --- inspection ----------------------------------------------------------------------------
  async parse_signal_message(args) {
    return parseSignalMessageBytes(bytesArg(args, 'body'));
  },

  async parse_prekey_message(args) {
    return parsePreKeyMessageBytes(bytesArg(args, 'body'));
  },

  async parse_session_record(args) {
    const fields = pbDecode(bytesArg(args, 'record'));
    SessionRecord.deserialize(bytesArg(args, 'record'));
    const current = pbFirst(fields, 1);
    return {
      session: current === null ? null : describeSessionStructure(pbDecode(current)),
      previous_sessions: (fields[2] ?? []).map((s) => describeSessionStructure(pbDecode(s))),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Main loop: strictly one request at a time, answers in order.

function write(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    write({ id: null, ok: false, error: 'BadRequest', message: `not JSON: ${err.message}` });
    return;
  }
  const id = request?.id ?? null;
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    write({ id, ok: false, error: 'BadRequest', message: 'request must be a JSON object' });
    return;
  }
  const op = OPS[request.op];
  if (typeof request.op !== 'string' || !Object.hasOwn(OPS, request.op)) {
    write({ id, ok: false, error: 'UnknownOp', message: `unknown op: ${request.op}` });
    return;
  }
  try {
    const result = await op(request);
    if ('id' in result || 'ok' in result) {
      throw new Error(`op ${request.op} returned a reserved field`);
    }
    write({ ...result, id, ok: true });
  } catch (err) {
    write({ id, ok: false, ...errorFields(err) });
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (line.trim() === '') return;
  chain = chain.then(() => handle(line));
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
