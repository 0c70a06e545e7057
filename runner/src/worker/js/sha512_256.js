// SHA-512/256 in `crypto.subtle` (issue 17): `digest("SHA-512-256", data)` and
// HKDF with `hash: "SHA-512-256"` in `deriveBits` / `deriveKey`, as Escrin's
// runtime offered (NFTrout's 2023 worker derives its keys with it). deno_crypto
// has no SHA-512/256; these wrappers compute it in the runner (the sha2 and
// hkdf crates) and hand every other algorithm to deno_crypto unchanged.
//
// HKDF needs the base key's bytes, which a CryptoKey no longer carries: the
// bytes of HKDF keys the worker imports itself (`importKey("raw", ..., "HKDF")`)
// are remembered here, in a map only this module reaches; an Omni Key is
// derived from natively by its store name (its bytes never become a value).
import { primordials } from "ext:core/mod.js";
import {
  op_rnr_hkdf_sha512_256,
  op_rnr_omni_hkdf_sha512_256,
  op_rnr_sha512_256,
} from "ext:core/ops";

const {
  ArrayBufferIsView,
  ArrayBufferPrototypeSlice,
  ArrayPrototypeIncludes,
  FunctionPrototypeCall,
  ObjectDefineProperty,
  ObjectPrototypeIsPrototypeOf,
  PromiseReject,
  PromiseResolve,
  ObjectGetOwnPropertyDescriptor,
  SafeWeakMap,
  StringPrototypeToUpperCase,
  TypedArrayPrototypeSlice,
  TypeError,
  Uint8Array,
  WeakMapPrototypeGet,
  WeakMapPrototypeSet,
} = primordials;

const NAME = "SHA-512-256";

// HMAC's default key length is its hash's block size.
const HMAC_BLOCK_BITS = {
  "SHA-1": 512,
  "SHA-256": 512,
  "SHA-384": 1024,
  "SHA-512": 1024,
};

const nameOf = (algorithm) =>
  typeof algorithm === "string" ? algorithm : algorithm?.name;

const upper = (name) =>
  typeof name === "string" ? StringPrototypeToUpperCase(name) : "";

function isSha512_256(algorithm) {
  return upper(nameOf(algorithm)) === NAME;
}

// A copy of a BufferSource's bytes.
function bytesOf(source, what) {
  if (ArrayBufferIsView(source)) {
    return TypedArrayPrototypeSlice(
      new Uint8Array(source.buffer, source.byteOffset, source.byteLength),
    );
  }
  try {
    return new Uint8Array(ArrayBufferPrototypeSlice(source));
  } catch {
    throw new TypeError(`${what} is not a BufferSource`);
  }
}

function bufferOf(bytes) {
  return ArrayBufferPrototypeSlice(
    bytes.buffer,
    bytes.byteOffset,
    bytes.byteOffset + bytes.byteLength,
  );
}

// `omniStores`: Omni Key -> its store name (filled by rnr.js).
export function addSha512_256(omniStores) {
  const { CryptoKey, DOMException, SubtleCrypto } = globalThis;
  const proto = SubtleCrypto.prototype;
  const original = {
    digest: proto.digest,
    importKey: proto.importKey,
    deriveBits: proto.deriveBits,
    deriveKey: proto.deriveKey,
  };
  const importedBytes = new SafeWeakMap();

  const fail = (message, name) => PromiseReject(new DOMException(message, name));

  function checkHkdf(algorithm, key, usage) {
    if (!ObjectPrototypeIsPrototypeOf(CryptoKey.prototype, key)) {
      throw new TypeError("the base key is not a CryptoKey");
    }
    if (upper(key.algorithm?.name) !== "HKDF") {
      throw new DOMException("the base key is not an HKDF key", "InvalidAccessError");
    }
    if (!ArrayPrototypeIncludes(key.usages, usage)) {
      throw new DOMException(`the base key may not be used to ${usage}`, "InvalidAccessError");
    }
    return {
      salt: bytesOf(algorithm.salt, "salt"),
      info: bytesOf(algorithm.info, "info"),
    };
  }

  // HKDF-SHA-512-256, `bits` long, as an ArrayBuffer.
  async function hkdf(algorithm, key, bits, usage) {
    const { salt, info } = checkHkdf(algorithm, key, usage);
    if (bits === null || bits === undefined || bits % 8 !== 0 || bits < 0) {
      throw new DOMException("the length must be a multiple of 8", "OperationError");
    }
    if (bits > 255 * 256) {
      throw new DOMException("HKDF-SHA-512-256 derives at most 8160 bytes", "OperationError");
    }
    const store = WeakMapPrototypeGet(omniStores, key);
    if (store !== undefined) {
      return bufferOf(await op_rnr_omni_hkdf_sha512_256(store, salt, info, bits / 8));
    }
    const ikm = WeakMapPrototypeGet(importedBytes, key);
    if (ikm === undefined) {
      throw new DOMException(
        "HKDF with SHA-512-256 needs a key imported in this worker or an Omni Key",
        "NotSupportedError",
      );
    }
    return bufferOf(op_rnr_hkdf_sha512_256(ikm, salt, info, bits / 8));
  }

  function derivedLength(type) {
    const name = upper(nameOf(type));
    if (name === "HMAC") {
      if (type.length !== undefined) return type.length;
      const bits = HMAC_BLOCK_BITS[upper(nameOf(type.hash))];
      if (bits === undefined) {
        throw new DOMException("unsupported HMAC hash", "NotSupportedError");
      }
      return bits;
    }
    if (name === "AES-GCM" || name === "AES-CBC" || name === "AES-CTR" || name === "AES-KW") {
      return type.length;
    }
    if (name === "HKDF" || name === "PBKDF2") return null;
    throw new DOMException(`cannot derive a ${name} key`, "NotSupportedError");
  }

  const methods = {
    digest(algorithm, data) {
      if (!isSha512_256(algorithm)) {
        return FunctionPrototypeCall(original.digest, this, algorithm, data);
      }
      try {
        return PromiseResolve(bufferOf(op_rnr_sha512_256(bytesOf(data, "data"))));
      } catch (error) {
        return PromiseReject(error);
      }
    },
    async importKey(format, keyData, algorithm, extractable, usages) {
      const key = await FunctionPrototypeCall(
        original.importKey,
        this,
        format,
        keyData,
        algorithm,
        extractable,
        usages,
      );
      if (format === "raw" && upper(nameOf(algorithm)) === "HKDF") {
        WeakMapPrototypeSet(importedBytes, key, bytesOf(keyData, "keyData"));
      }
      return key;
    },
    deriveBits(algorithm, baseKey, length) {
      if (upper(nameOf(algorithm)) !== "HKDF" || !isSha512_256(algorithm.hash)) {
        return FunctionPrototypeCall(original.deriveBits, this, algorithm, baseKey, length);
      }
      return hkdf(algorithm, baseKey, length, "deriveBits");
    },
    async deriveKey(algorithm, baseKey, derivedKeyType, extractable, usages) {
      if (upper(nameOf(algorithm)) !== "HKDF" || !isSha512_256(algorithm.hash)) {
        return FunctionPrototypeCall(
          original.deriveKey,
          this,
          algorithm,
          baseKey,
          derivedKeyType,
          extractable,
          usages,
        );
      }
      const length = derivedLength(derivedKeyType);
      if (length === null) {
        return fail("cannot derive an HKDF or PBKDF2 key with length", "OperationError");
      }
      const bits = await hkdf(algorithm, baseKey, length, "deriveKey");
      return FunctionPrototypeCall(
        original.importKey,
        this,
        "raw",
        bits,
        derivedKeyType,
        extractable,
        usages,
      );
    },
  };

  for (const name in methods) {
    const method = methods[name];
    ObjectDefineProperty(method, "name", { __proto__: null, value: name });
    ObjectDefineProperty(method, "length", {
      __proto__: null,
      value: original[name].length,
    });
    const descriptor = ObjectGetOwnPropertyDescriptor(proto, name);
    ObjectDefineProperty(proto, name, { ...descriptor, value: method });
  }
}
