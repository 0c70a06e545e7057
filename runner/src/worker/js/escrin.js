// Escrin's `env` (issue 17): what `@escrin/worker` reads from the `env` its
// handlers get, so that workers built with it run unchanged.
//
// - `env.config`: the worker's config object (Escrin: a JSON binding).
// - `env.escrin`: a service binding (an object with `fetch`) taking Escrin's
//   JSON-RPC `POST {method, params}`. Two generations speak to it:
//   1.0.0-alpha.4 (npm, to Aug 2023): `get-key {keyStore, keyId: "omni",
//   proof, opts?}` -> `{key: base64}`; Sep-Dec 2023: `get-key {keyId: "omni",
//   network, identity}` -> `{key: "0x..."}` and `acquire-identity {network,
//   identity, ...}` -> 204.
// - `env.iam` (Dec 2023 on): the latter methods, plus `get-account`.
// - `env.tpm` (2024): `get-attestation {userdata?}` -> `{document}` and
//   `get-random {numBytes}` -> `{random}`. Escrin's backend was AWS Nitro's
//   NSM; here the document is this runner's attestation document (UTF-8 JSON:
//   the TEE's evidence, whose report_data binds the runner's identity key,
//   the worker's code identity and `userdata`: README, "Running Escrin
//   workers"). Bytes travel as JSON arrays of numbers; `userdata` is also
//   accepted as `0x` hex and in the index-keyed form `JSON.stringify` gives a
//   Uint8Array (what Escrin's library sends).
// Errors answer as Escrin's did: a status and `{"error": message}`, which the
// library throws as its `ApiError(status, message)`.
//
// The key bytes go to the worker's own code here (the library imports them
// itself, non-extractable): the worker's own key, on the route Escrin defined.
// `rnr.getOmniKey` stays native and non-extractable.
import { primordials } from "ext:core/mod.js";
import { op_rnr_attestation, op_rnr_omni_key_bytes } from "ext:core/ops";

const {
  ArrayFrom,
  ArrayIsArray,
  ArrayPrototypeJoin,
  NumberIsInteger,
  ObjectKeys,
  StringPrototypeStartsWith,
  StringPrototypeSlice,
  RegExpPrototypeTest,
  NumberParseInt,
  Uint8Array,
  JSONParse,
  JSONStringify,
  NumberPrototypeToString,
  ObjectFreeze,
  ObjectPrototypeHasOwnProperty,
  StringFromCharCode,
  String,
  StringPrototypePadStart,
  TypeError,
} = primordials;

// Escrin's names for our stores.
const STORE_ALIASES = {
  __proto__: null,
  "sapphire-local": "sapphire-localnet",
};

export function storeName(store) {
  const name = typeof store === "string" ? store : String(store);
  return STORE_ALIASES[name] ?? name;
}

// Escrin named a key store by its chain: Sapphire's three, and the dev chains
// Escrin knew (foundry 31337, localhost 1337), which here are the chain
// behind `sapphire-localnet`.
const STORE_OF_CHAIN = {
  __proto__: null,
  0x5afe: "sapphire-mainnet",
  0x5aff: "sapphire-testnet",
  0x5afd: "sapphire-localnet",
  31337: "sapphire-localnet",
  1337: "sapphire-localnet",
};

class ApiError {
  constructor(status, message) {
    this.status = status;
    this.message = message;
  }
}

// The store a later-generation `network` parameter names: a Network object
// `{chainId, rpcUrl?}` by its chain id, or (our addition, so that workers can
// name the `local` store) a store name, as a string or as `{name}`.
function storeOfNetwork(network) {
  if (typeof network === "string") return storeName(network);
  if (typeof network !== "object" || network === null) {
    throw new ApiError(400, "missing network params");
  }
  const { chainId, name } = network;
  if (chainId !== undefined && chainId !== null) {
    if (typeof chainId !== "number") throw new ApiError(400, "invalid chain id");
    const store = STORE_OF_CHAIN[chainId];
    if (store === undefined) {
      throw new ApiError(
        404,
        `no key store serves chain id ${chainId}: this runner's stores are ` +
          "local (network {name: \"local\"}), sapphire-mainnet (0x5afe), " +
          "sapphire-testnet (0x5aff) and sapphire-localnet (0x5afd, 31337, 1337)",
      );
    }
    return store;
  }
  if (typeof name === "string") return storeName(name);
  throw new ApiError(400, "missing chain id");
}

async function keyBytes(store) {
  try {
    return await op_rnr_omni_key_bytes(store);
  } catch (error) {
    // An unknown store name is a TypeError: Escrin answered 404.
    const status = error instanceof TypeError ? 404 : 500;
    throw new ApiError(status, String(error?.message ?? error));
  }
}

function base64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += StringFromCharCode(bytes[i]);
  return globalThis.btoa(binary);
}

function hex(bytes) {
  const parts = [];
  for (let i = 0; i < bytes.length; i++) {
    parts[i] = StringPrototypePadStart(NumberPrototypeToString(bytes[i], 16), 2, "0");
  }
  return "0x" + ArrayPrototypeJoin(parts, "");
}

const has = (object, key) => ObjectPrototypeHasOwnProperty(object, key);

// Longest `userdata` bound into a document (the runner's limit on a nonce).
const MAX_USERDATA = 64;
// Most random bytes per `get-random` (as Escrin's NSM backend).
const MAX_RANDOM = 128;
const HEX_PAIR = /^[0-9a-fA-F]{2}$/;

function byte(value) {
  if (!NumberIsInteger(value) || value < 0 || value > 255) {
    throw new ApiError(400, "invalid userdata");
  }
  return value;
}

// `userdata` as bytes: absent, an array of numbers, `0x` hex, or the object
// `JSON.stringify` makes of a Uint8Array (`{"0": 1, "1": 2, ...}`).
function userdataBytes(userdata) {
  if (userdata === undefined || userdata === null) return new Uint8Array(0);
  let values;
  if (typeof userdata === "string") {
    if (!StringPrototypeStartsWith(userdata, "0x") || userdata.length % 2 !== 0) {
      throw new ApiError(400, "invalid userdata");
    }
    const hexDigits = StringPrototypeSlice(userdata, 2);
    values = [];
    for (let i = 0; i < hexDigits.length; i += 2) {
      const pair = StringPrototypeSlice(hexDigits, i, i + 2);
      if (!RegExpPrototypeTest(HEX_PAIR, pair)) throw new ApiError(400, "invalid userdata");
      values[values.length] = NumberParseInt(pair, 16);
    }
  } else if (ArrayIsArray(userdata)) {
    values = userdata;
  } else if (typeof userdata === "object") {
    const keys = ObjectKeys(userdata);
    values = [];
    for (let i = 0; i < keys.length; i++) {
      if (!has(userdata, String(i))) throw new ApiError(400, "invalid userdata");
      values[i] = userdata[String(i)];
    }
  } else {
    throw new ApiError(400, "invalid userdata");
  }
  if (values.length > MAX_USERDATA) {
    throw new ApiError(400, `userdata is ${values.length} bytes, more than ${MAX_USERDATA}`);
  }
  const bytes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) bytes[i] = byte(values[i]);
  return bytes;
}

async function attestation(userdata) {
  const answer = JSONParse(await op_rnr_attestation(userdataBytes(userdata)));
  if (answer.error !== undefined) throw new ApiError(answer.status, answer.error);
  const text = JSONStringify(answer.document);
  const bytes = new globalThis.TextEncoder().encode(text);
  return { document: ArrayFrom(bytes) };
}

function random(numBytes) {
  if (typeof numBytes !== "number" || !NumberIsInteger(numBytes)) {
    throw new ApiError(400, "missing or invalid count");
  }
  if (numBytes < 0) throw new ApiError(400, "negative amount of bytes requested");
  if (numBytes > MAX_RANDOM) throw new ApiError(400, "too many random bytes requested");
  const bytes = new Uint8Array(numBytes);
  globalThis.crypto.getRandomValues(bytes);
  return { random: ArrayFrom(bytes) };
}

// One method call of either generation; the result is the JSON answer
// (`undefined`: 204).
async function call(binding, method, params) {
  if (method === "get-key") {
    if (binding === "escrin" && has(params, "keyStore")) {
      // 1.0.0-alpha.4 and before.
      if (params.keyId !== "omni") {
        throw new ApiError(404, `unknown key id: ${params.keyId}`);
      }
      return { key: base64(await keyBytes(storeName(params.keyStore))) };
    }
    if (params.keyId === "ephemeral-account") {
      throw new ApiError(
        501,
        "this runner keeps no ephemeral account for workers: its key stores sign for them",
      );
    }
    if (params.keyId !== "omni") throw new ApiError(400, `unknown key id ${params.keyId}`);
    // `identity` is not used: a worker's Omni Key is its code's (README, "Running Escrin workers").
    return { key: hex(await keyBytes(storeOfNetwork(params.network))) };
  }
  if (method === "acquire-identity") {
    const store = storeOfNetwork(params.network);
    if (store === "local") {
      throw new ApiError(
        400,
        "the local key store has no identity to acquire: its Omni Key needs no permit",
      );
    }
    // A Sapphire store acquires the worker's identity (its permit) itself
    // when it fetches the key: do that now.
    await keyBytes(store);
    return undefined;
  }
  if (binding === "tpm") {
    if (method === "get-attestation") return await attestation(params.userdata);
    if (method === "get-random") return random(params.numBytes);
    throw new ApiError(404, `unknown method: ${method}`);
  }
  if (method === "get-account" && binding === "iam") {
    throw new ApiError(
      501,
      "this runner keeps no ephemeral account for workers: its key stores sign for them",
    );
  }
  throw new ApiError(404, `unknown method: ${method}`);
}

function answer(status, body) {
  if (status === 204) return new Response(null, { status });
  return new Response(JSONStringify(body ?? {}), {
    status,
    headers: { "content-type": "application/json" },
  });
}

// A service binding: `fetch(input, init)` as a Workers Fetcher has it.
function binding(name) {
  return ObjectFreeze({
    async fetch(input, init) {
      const request = new Request(input, init);
      try {
        if (request.headers.get("content-type") !== "application/json") {
          throw new ApiError(400, "invalid content-type. application/json is required");
        }
        let body;
        try {
          body = JSONParse(await request.text());
        } catch (error) {
          throw new ApiError(400, `unable to decode request body: ${error}`);
        }
        if (typeof body !== "object" || body === null) {
          throw new ApiError(400, "invalid request body");
        }
        if (typeof body.method !== "string") {
          throw new ApiError(400, "invalid request body: missing or invalid method");
        }
        if (typeof body.params !== "object" || body.params === null) {
          throw new ApiError(400, "invalid request body: missing or invalid params");
        }
        const result = await call(name, body.method, body.params);
        return answer(result === undefined ? 204 : 200, result);
      } catch (error) {
        if (error instanceof ApiError) {
          return answer(error.status, { error: error.message });
        }
        throw error;
      }
    },
  });
}

// The Escrin part of a worker's `env`: `config` (parsed from the worker's
// config JSON) and the service bindings.
export function escrinEnv(configJson) {
  return {
    config: JSONParse(configJson),
    escrin: binding("escrin"),
    iam: binding("iam"),
    tpm: binding("tpm"),
  };
}
