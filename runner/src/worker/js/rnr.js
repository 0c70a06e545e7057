// The runner's side of every Smart Worker isolate.
//
// Evaluated as an extension module while the isolate is created (before the
// worker's script). It leaves exactly one thing on the global object: a setup
// function under a registered symbol, which the runner takes (and deletes)
// before the worker's own code runs, so worker code can never reach it.
import { primordials } from "ext:core/mod.js";
import {
  op_rnr_body_close,
  op_rnr_body_read,
  op_rnr_body_write,
  op_rnr_egress_refused,
  op_rnr_log,
  op_rnr_omni_key,
  op_rnr_omni_key_init,
  op_rnr_uncaught,
} from "ext:core/ops";
import { escrinEnv, storeName } from "ext:rnr/escrin.js";
import { addSha512_256 } from "ext:rnr/sha512_256.js";
import { comlinkRunner } from "ext:rnr/comlink.js";

const SETUP_KEY = Symbol.for("smartworker.runner.setup");

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };

const {
  ArrayPrototypeJoin,
  ArrayPrototypeMap,
  FunctionPrototypeBind,
  FunctionPrototypeCall,
  JSONParse,
  JSONStringify,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectGetOwnPropertyDescriptor,
  PromiseAllSettled,
  PromisePrototypeThen,
  PromiseReject,
  ReflectConstruct,
  ReflectDeleteProperty,
  ReflectOwnKeys,
  SafeSet,
  SafeWeakMap,
  SetPrototypeAdd,
  SetPrototypeHas,
  String,
  StringPrototypeStartsWith,
  WeakMapPrototypeSet,
} = primordials;

// Globals removed before the worker's script runs: names that give a worker
// more than the web platform (permissions deny what they guard anyway; this
// keeps the promise "web APIs only" visible from JavaScript), then web APIs
// whose deno implementation endangers the process or reaches other workers.
const REMOVED_GLOBALS = [
  "Deno",
  "process",
  "Buffer",
  "global",
  "setImmediate",
  "clearImmediate",
  "Worker",
  "SharedWorker",
  "require",
  // Its constructor allocates the pixels with `v8::ArrayBuffer::new`, which
  // aborts the whole process when the array-buffer allocator refuses (a
  // worker over its memory limit) instead of throwing.
  "ImageData",
  // Image decoding and canvases: deno_image allocates a decoded image's
  // pixels at the size its header claims, unbounded and outside any worker
  // limit (a 1 KiB PNG claiming 65535 x 65535 pixels aborts the process).
  "createImageBitmap",
  "ImageBitmap",
  "OffscreenCanvas",
  "ImageBitmapRenderingContext",
  // The Web Locks API: deno keeps its locks in one table for the whole
  // process, so through it a worker would see other workers' lock names
  // (`navigator.locks.query()`), wait on them or steal them.
  "Lock",
  "LockManager",
];

// What deno_crypto's classes may keep as own properties: the web's
// (`SubtleCrypto.supports` is WebCrypto's). Everything else on them is deno's
// Node.js interop and is removed before the worker's code runs:
// `CryptoKey.exportNodeMaterial(key)` hands out any key's bytes,
// `CryptoKey.fromCloneData` is what structured clone calls with a key's bytes,
// `CryptoKey.importSync`, `Crypto.create`, `Crypto.registerSymbols`,
// `SubtleCrypto.create` are deno's bootstrap helpers.
const CRYPTO_STATICS = {
  CryptoKey: ["length", "name", "prototype"],
  Crypto: ["length", "name", "prototype"],
  SubtleCrypto: ["length", "name", "prototype", "supports"],
};

// The brand deno_core's serializer (structuredClone, postMessage,
// BroadcastChannel) calls to clone a host object.
const HOST_OBJECT_BRAND = Symbol.for("Deno.core.hostObject");

// A connection refused by the net permission (the runner's egress policy)
// reaches the worker as a TypeError naming the rule, as a browser's network
// error would be a TypeError; the runner logs it.
const NET_REFUSAL = /Requires net access to "([^"]+)"/;

function egressError(error, api) {
  // Refused on the name the worker wrote: a NotCapable error; refused after
  // DNS resolution (or on a redirect hop): deno's "fetch failed", whose cause
  // carries the same permission message.
  let cause = error;
  for (let depth = 0; cause && depth < 4; depth++) {
    const refused = NET_REFUSAL.exec(String(cause.message));
    if (refused) {
      return new TypeError(op_rnr_egress_refused(api, refused[1]), {
        cause: error,
      });
    }
    cause = cause.cause;
  }
  return error;
}

function guardEgress() {
  const fetch = globalThis.fetch;
  globalThis.fetch = async function fetch_(input, init) {
    try {
      return await fetch(input, init);
    } catch (error) {
      throw egressError(error, "fetch");
    }
  };
  ObjectDefineProperty(globalThis.fetch, "name", { value: "fetch" });
  // `WebSocket` is loaded lazily by deno on first access (with its module tree):
  // wrap it on first access too, so that workers that never use it do not pay
  // for loading it at creation.
  const webSocket = ObjectGetOwnPropertyDescriptor(globalThis, "WebSocket");
  if (webSocket !== undefined) {
    let guarded;
    ObjectDefineProperty(globalThis, "WebSocket", {
      __proto__: null,
      configurable: true,
      enumerable: webSocket.enumerable,
      get() {
        if (guarded === undefined) {
          const WebSocket = webSocket.get
            ? FunctionPrototypeCall(webSocket.get, globalThis)
            : webSocket.value;
          guarded = typeof WebSocket !== "function" ? WebSocket : new Proxy(
            WebSocket,
            {
              construct(target, args, newTarget) {
                try {
                  return ReflectConstruct(target, args, newTarget);
                } catch (error) {
                  throw egressError(error, "WebSocket");
                }
              },
            },
          );
        }
        return guarded;
      },
      set(value) {
        guarded = value;
      },
    });
  }
}

// deno_crypto stamps every CryptoKey it makes with its bytes (under node's
// `kKeyObject` symbol) and with a host-object function returning them for
// structured clone, once `Crypto.registerSymbols` has handed it those symbols;
// it does so when `crypto.subtle` is first read. Here, before any worker code:
// that registration is made a no-op, so keys carry no own property at all (the
// WebCrypto methods work on the native key, not on these); the Node.js interop
// statics go (after `CryptoKey.importSync` is taken for the Omni Keys); the
// classes are frozen; and cloning a CryptoKey throws a DataCloneError.
function sealWebCrypto() {
  const { Crypto, CryptoKey, SubtleCrypto } = globalThis;
  ObjectDefineProperty(Crypto, "registerSymbols", {
    __proto__: null,
    configurable: true,
    value: () => false,
  });
  // Mints deno's Crypto and SubtleCrypto singletons now, without the symbols.
  void globalThis.crypto.subtle;
  const importSync = FunctionPrototypeBind(CryptoKey.importSync, CryptoKey);
  const classes = { Crypto, CryptoKey, SubtleCrypto };
  for (const name in CRYPTO_STATICS) {
    const keep = new SafeSet(CRYPTO_STATICS[name]);
    const cls = classes[name];
    for (const key of ReflectOwnKeys(cls)) {
      if (!SetPrototypeHas(keep, key)) ReflectDeleteProperty(cls, key);
    }
    ObjectFreeze(cls);
  }
  const DOMException = globalThis.DOMException;
  ObjectDefineProperty(CryptoKey.prototype, HOST_OBJECT_BRAND, {
    __proto__: null,
    value() {
      throw new DOMException(
        "a CryptoKey cannot be cloned in a Smart Worker",
        "DataCloneError",
      );
    },
  });
  ObjectFreeze(CryptoKey.prototype);
  return importSync;
}

// `rnr.getOmniKey(store)`: the op resolves to a non-extractable HKDF CryptoKey
// that the runner makes natively with deno_crypto's own `CryptoKey.importSync`
// (the key bytes never become a JavaScript value). The importer is handed over
// here, before the worker's code runs and could replace it. Each key's store
// is remembered in `stores` (HKDF-SHA-512-256 derives from it by name).
// Escrin's store names are accepted (`sapphire-local`).
function omniKeys(importSync, stores) {
  op_rnr_omni_key_init(importSync);
  return (store) => {
    try {
      const name = storeName(store);
      return PromisePrototypeThen(op_rnr_omni_key(name), (key) => {
        WeakMapPrototypeSet(stores, key, name);
        return key;
      });
    } catch (error) {
      return PromiseReject(error); // e.g. a Symbol for a name
    }
  };
}

function setup(kind, configJson) {
  const omniStores = new SafeWeakMap();
  const getOmniKey = omniKeys(sealWebCrypto(), omniStores);
  addSha512_256(omniStores);
  const inspect = globalThis.Deno?.inspect;
  const format = (args) =>
    ArrayPrototypeJoin(
      ArrayPrototypeMap(args, (a) =>
        typeof a === "string" ? a : inspect ? inspect(a) : String(a)
      ),
      " ",
    );
  const log = (level) => (...args) => op_rnr_log(LEVELS[level], format(args));

  const console = globalThis.console;
  console.log = log("info");
  console.info = log("info");
  console.debug = log("debug");
  console.trace = log("debug");
  console.warn = log("warn");
  console.error = log("error");

  // Errors nobody awaits must not end the isolate: report them and carry on.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    op_rnr_uncaught(`uncaught: ${format([event.error ?? event.message])}`);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    op_rnr_uncaught(`unhandled rejection: ${format([event.reason])}`);
  });

  // Classic workers announce their handlers with addEventListener: remember
  // which trigger events they listen for.
  const listened = new SafeSet();
  const addEventListener = globalThis.addEventListener;
  const dispatchEvent = globalThis.dispatchEvent;
  globalThis.addEventListener = function (type, ...rest) {
    SetPrototypeAdd(listened, String(type));
    return FunctionPrototypeCall(addEventListener, this, type, ...rest);
  };

  guardEgress();

  for (const name of REMOVED_GLOBALS) {
    try {
      delete globalThis[name];
    } catch {
      // a non-configurable global stays; permissions still deny it
    }
  }
  // WebGPU: deno's wgpu runs on whatever adapter the machine has (Mesa's
  // llvmpipe on a CPU-only host): buffers outside the worker's memory limit,
  // shaders on driver threads outside its CPU limit.
  for (const name of ReflectOwnKeys(globalThis)) {
    if (typeof name === "string" && StringPrototypeStartsWith(name, "GPU")) {
      ReflectDeleteProperty(globalThis, name);
    }
  }
  const navigatorPrototype = globalThis.WorkerNavigator.prototype;
  ReflectDeleteProperty(navigatorPrototype, "gpu");
  ReflectDeleteProperty(navigatorPrototype, "locks");

  // The `env` of module handlers (`event.rnr` of classic ones): ours, with
  // `getKey` as the reference text's name for `getOmniKey`, and Escrin's
  // `config`, `escrin` and `iam` (escrin.js).
  const rnr = ObjectFreeze({
    getConfig: () => Promise.resolve(JSONParse(configJson)),
    getOmniKey: (store) => getOmniKey(store),
    getKey: (store) => getOmniKey(store),
    ...escrinEnv(configJson),
  });

  // Escrin's mid-2023 workers: no handlers, `tasks` exposed over postMessage.
  const comlinkTasks = comlinkRunner(rnr, dispatchEvent);
  const listensForMessages = () =>
    SetPrototypeHas(listened, "message") ||
    typeof globalThis.onmessage === "function";

  let moduleHandlers = null;

  function makeContext(waitUntils, info) {
    return {
      ...info,
      waitUntil(promise) {
        waitUntils.push(Promise.resolve(promise));
      },
      passThroughOnException() {},
    };
  }

  async function settle(result, waitUntils) {
    await result;
    const outcomes = await PromiseAllSettled(waitUntils);
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") throw outcome.reason;
    }
  }

  function scheduledEvent(info) {
    return {
      type: "scheduled",
      cron: info.cron ?? "",
      scheduledTime: info.scheduledTime ?? Date.now(),
    };
  }

  async function runModuleTasks(info) {
    if (
      typeof moduleHandlers.tasks !== "function" &&
      typeof moduleHandlers.scheduled !== "function"
    ) {
      return await comlinkTasks();
    }
    const waitUntils = [];
    const ctx = makeContext(waitUntils, info);
    if (typeof moduleHandlers.tasks === "function") {
      await settle(moduleHandlers.tasks(rnr, ctx), waitUntils);
    } else {
      const event = scheduledEvent(info);
      await settle(moduleHandlers.scheduled(event, rnr, ctx), waitUntils);
    }
  }

  async function runClassicTasks(info) {
    if (
      !SetPrototypeHas(listened, "tasks") &&
      !SetPrototypeHas(listened, "scheduled")
    ) {
      return await comlinkTasks();
    }
    const type = SetPrototypeHas(listened, "tasks") ? "tasks" : "scheduled";
    const waitUntils = [];
    const event = new Event(type);
    const extra = scheduledEvent(info);
    event.rnr = rnr;
    event.cron = extra.cron;
    event.scheduledTime = extra.scheduledTime;
    // What module handlers see as ctx.source / ctx.event (a TaskHub log).
    event.source = info.source;
    if (info.event !== undefined) event.event = info.event;
    event.waitUntil = (promise) => waitUntils.push(Promise.resolve(promise));
    FunctionPrototypeCall(dispatchEvent, globalThis, event);
    await settle(undefined, waitUntils);
  }

  // A request body streamed in from the runner, chunk by chunk.
  function requestBody(stream) {
    return new ReadableStream({
      async pull(controller) {
        const chunk = await op_rnr_body_read(stream);
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      },
      cancel() {
        op_rnr_body_close(stream, "");
      },
    }, { highWaterMark: 0 });
  }

  // Streams a response body out to the runner, in the background: the
  // response head goes back as soon as the handler has answered.
  async function sendBody(response, stream) {
    let failure = "";
    let reader;
    try {
      if (response.body !== null) {
        // A reader rather than `for await`: the async iterator releases its lock at the end,
        // and a release builds a TypeError (with its stack) for every response.
        reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          await op_rnr_body_write(stream, value);
        }
      }
    } catch (error) {
      failure = String(error?.message ?? error);
      op_rnr_uncaught(`response body failed: ${format([error])}`);
      // As `for await` would on leaving early: the body's source learns nobody reads it.
      reader?.cancel(error).catch(() => {});
    } finally {
      op_rnr_body_close(stream, failure);
    }
  }

  function reportLater(waitUntils) {
    PromiseAllSettled(waitUntils).then((outcomes) => {
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") {
          op_rnr_uncaught(`waitUntil rejected: ${format([outcome.reason])}`);
        }
      }
    });
  }

  async function runFetch(info, requestStream, responseStream) {
    const request = new Request(info.url, {
      method: info.method,
      headers: info.headers,
      body: info.hasBody ? requestBody(requestStream) : null,
      duplex: "half",
    });
    if (!info.hasBody) op_rnr_body_close(requestStream, "");
    const waitUntils = [];
    let response;
    if (kind === "module") {
      response = await moduleHandlers.fetch(request, rnr, makeContext(waitUntils, {}));
    } else {
      let answer = null;
      const event = new Event("fetch");
      event.request = request;
      event.rnr = rnr;
      event.respondWith = (r) => {
        answer = Promise.resolve(r);
      };
      event.waitUntil = (p) => waitUntils.push(Promise.resolve(p));
      FunctionPrototypeCall(dispatchEvent, globalThis, event);
      if (answer === null) {
        throw new TypeError("the fetch listener did not call event.respondWith()");
      }
      response = await answer;
    }
    reportLater(waitUntils);
    if (!(response instanceof Response)) {
      throw new TypeError("the fetch handler must return a Response");
    }
    sendBody(response, responseStream);
    const headers = [];
    for (const pair of response.headers) headers.push(pair);
    return JSONStringify({ status: response.status, headers });
  }

  return {
    // Called once the module is evaluated, with its namespace object.
    bindModule(namespace) {
      const def = namespace?.default;
      moduleHandlers = def && (typeof def === "object" || typeof def === "function")
        ? def
        : {};
    },
    hasFetch() {
      if (kind === "module") return typeof moduleHandlers?.fetch === "function";
      return SetPrototypeHas(listened, "fetch");
    },
    hasTasks() {
      if (kind === "module") {
        return typeof moduleHandlers?.tasks === "function" ||
          typeof moduleHandlers?.scheduled === "function" ||
          listensForMessages();
      }
      return SetPrototypeHas(listened, "tasks") ||
        SetPrototypeHas(listened, "scheduled") ||
        listensForMessages();
    },
    // The runner's single entry point into the worker: one call per trigger.
    dispatch(trigger, infoJson, requestStream, responseStream) {
      const info = JSONParse(infoJson);
      switch (trigger) {
        case "tasks":
          return kind === "module" ? runModuleTasks(info) : runClassicTasks(info);
        case "fetch":
          return runFetch(info, requestStream, responseStream);
        default:
          return Promise.reject(new TypeError(`unknown trigger ${trigger}`));
      }
    },
  };
}

globalThis[SETUP_KEY] = setup;
