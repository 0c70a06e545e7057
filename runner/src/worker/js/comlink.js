// The mid-2023 protocol of Escrin workers (issue 17): the worker is a Web
// Worker with no handlers that exposes `{ tasks() }` with Comlink
// (`Comlink.expose(...)` on `self`) and reaches the runner through
// `Comlink.wrap(self)` (`rnr.getOmniKey(store)`, earlier `rnr.getKey(store)`).
// Escrin's runner called `tasks()` over `postMessage` on its schedule and
// answered the worker's calls the same way.
//
// Here the "runner side" is in the isolate: a call to the worker is a
// `message` event dispatched on the global scope, and what the worker posts
// with `self.postMessage` comes here (nothing else listens to a Smart
// Worker's messages). Comlink's wire format (v4): a request is `{id, type:
// "APPLY", path, argumentList}`, each argument and answer a wire value `{type:
// "RAW", value}`; a thrown error `{type: "HANDLER", name: "throw", value:
// {isError, value}}`.
import { primordials } from "ext:core/mod.js";

const {
  Error,
  FunctionPrototypeCall,
  MapPrototypeDelete,
  MapPrototypeGet,
  MapPrototypeSet,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectPrototypeHasOwnProperty,
  Promise,
  PromisePrototypeThen,
  PromiseReject,
  PromiseResolve,
  SafeMap,
  String,
  TypeError,
} = primordials;

const isObject = (value) => typeof value === "object" && value !== null;

// `rnr`: the runner's object the worker may call (getConfig, getOmniKey, getKey).
// Returns `tasks(info)`, which calls the worker's exposed `tasks()` and settles
// with its answer.
export function comlinkRunner(rnr, dispatchEvent) {
  const pending = new SafeMap();
  let next = 0;

  function deliver(data) {
    const event = new MessageEvent("message", { data });
    FunctionPrototypeCall(dispatchEvent, globalThis, event);
  }

  function wireError(error) {
    const value = isObject(error)
      ? { message: String(error.message), name: String(error.name), stack: String(error.stack) }
      : error;
    return {
      type: "HANDLER",
      name: "throw",
      value: { isError: isObject(error), value },
    };
  }

  const fromWire = (wire) => (isObject(wire) && wire.type === "RAW" ? wire.value : undefined);

  // A call from the worker to the runner: answered when it settles.
  function answer(id, path, argumentList) {
    const name = path?.[0];
    const method = path?.length === 1 && typeof name === "string" &&
        ObjectPrototypeHasOwnProperty(rnr, name)
      ? rnr[name]
      : undefined;
    const args = [];
    for (const wire of argumentList ?? []) args[args.length] = fromWire(wire);
    let result;
    try {
      if (typeof method !== "function") {
        throw new TypeError(`the runner has no method ${String(name)}`);
      }
      result = PromiseResolve(method(...args));
    } catch (error) {
      result = PromiseReject(error);
    }
    PromisePrototypeThen(
      result,
      (value) => deliver({ id, type: "RAW", value }),
      (error) => deliver({ id, ...wireError(error) }),
    );
  }

  // `self.postMessage` of the worker.
  function postMessage(message) {
    if (!isObject(message)) return;
    const { id, type } = message;
    const waiting = MapPrototypeGet(pending, id);
    if (waiting !== undefined) {
      MapPrototypeDelete(pending, id);
      if (type === "HANDLER" && message.name === "throw") {
        const { isError, value } = message.value ?? {};
        const error = isError ? new Error(String(value?.message)) : value;
        if (isError && value?.name) error.name = String(value.name);
        waiting.reject(error);
      } else {
        waiting.resolve(fromWire(message));
      }
      return;
    }
    if (type === "APPLY") answer(id, message.path, message.argumentList);
    // Anything else (Comlink's answers to our own answers, GET/SET/RELEASE) is dropped.
  }

  const descriptor = ObjectGetOwnPropertyDescriptor(globalThis, "postMessage");
  ObjectDefineProperty(postMessage, "name", { __proto__: null, value: "postMessage" });
  ObjectDefineProperty(globalThis, "postMessage", {
    __proto__: null,
    configurable: descriptor?.configurable ?? true,
    enumerable: descriptor?.enumerable ?? true,
    writable: true,
    value: postMessage,
  });

  return function tasks() {
    const id = `smartworker-tasks-${next++}`;
    return new Promise((resolve, reject) => {
      MapPrototypeSet(pending, id, { resolve, reject });
      deliver({ id, type: "APPLY", path: ["tasks"], argumentList: [] });
    });
  };
}
