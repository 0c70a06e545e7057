//! The `rnr` extension: the runner's JavaScript inside every isolate
//! (`js/rnr.js`) and the ops it calls. Self-contained (it depends on
//! `deno_core` only), because the build script compiles this same file to put
//! the extension in the startup snapshot; the host plugs its behaviour in
//! through [`WorkerSink`], [`BodyStreams`] and [`OmniKeys`] in each isolate's
//! `OpState`. The extension declares its ops only: the build script adds
//! `js/rnr.js` (as `ext:rnr/rnr.js`, the entry point) for the snapshot, and
//! isolates get the evaluated module from there.

use std::cell::RefCell;
use std::rc::Rc;

use deno_core::convert::ToV8;
use deno_core::convert::Uint8Array;
use deno_core::futures::future::LocalBoxFuture;
use deno_core::op2;
use deno_core::v8;
use deno_core::JsBuffer;
use deno_core::OpState;
use deno_error::JsErrorBox;

/// Console output: (level, message); levels 0 debug, 1 info, 2 warn, 3 error.
pub type LogFn = dyn Fn(u32, &str);

/// An error nobody handled: thrown from a callback or an unhandled rejection.
pub type UncaughtFn = dyn Fn(&str);

/// A connection the egress policy refused: (API, target) → the message for the worker.
pub type EgressRefusedFn = dyn Fn(&str, &str) -> String;

/// Receives what a worker reports.
pub struct WorkerSink {
    pub log: Box<LogFn>,
    pub uncaught: Box<UncaughtFn>,
    pub egress_refused: Box<EgressRefusedFn>,
}

/// HTTP bodies crossing into and out of the isolate, by stream number.
pub trait BodyStreams {
    /// The next chunk of a request body; `None` at its end.
    fn read(&self, stream: u32) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, String>>;
    /// Sends a chunk of a response body; waits while the client is slower.
    fn write(&self, stream: u32, chunk: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>>;
    /// Ends a body: a request body the handler will not read, or a finished
    /// response body (`error` set when the handler's stream failed).
    fn close(&self, stream: u32, error: Option<String>);
}

/// The host's [`BodyStreams`], shared with the ops.
pub type SharedBodyStreams = Rc<dyn BodyStreams>;

/// 32 key bytes; the host's type wipes them when dropped.
pub type OmniKeyBytes = Box<dyn std::ops::Deref<Target = [u8; 32]>>;

/// Why `getOmniKey` failed: `type_error` for a store name that is not one.
pub struct OmniKeyError {
    pub type_error: bool,
    pub message: String,
}

/// The worker's Omni Keys, by store name (the host caches and bounds the fetch).
pub trait OmniKeys {
    fn get(&self, store: &str) -> LocalBoxFuture<'static, Result<OmniKeyBytes, OmniKeyError>>;
}

/// The host's [`OmniKeys`], shared with the ops.
pub type SharedOmniKeys = Rc<dyn OmniKeys>;

/// A worker's attestation documents (Escrin's `env.tpm` `get-attestation`): the answer as
/// JSON text, `{"document": …}` or `{"status": N, "error": message}` (the HTTP status Escrin's
/// binding answers a refusal with).
pub trait WorkerAttestation {
    fn document(&self, nonce: Vec<u8>) -> LocalBoxFuture<'static, String>;
}

/// The host's [`WorkerAttestation`], shared with the ops.
pub type SharedAttestation = Rc<dyn WorkerAttestation>;

/// `CryptoKey.importSync`, taken by `rnr.js` before the worker's code runs.
struct OmniKeyImporter(v8::Global<v8::Function>);

deno_core::extension!(
    rnr,
    ops = [
        op_rnr_log,
        op_rnr_uncaught,
        op_rnr_egress_refused,
        op_rnr_body_read,
        op_rnr_body_write,
        op_rnr_body_close,
        op_rnr_omni_key_init,
        op_rnr_omni_key,
        op_rnr_omni_key_bytes,
        op_rnr_omni_hkdf_sha512_256,
        op_rnr_sha512_256,
        op_rnr_hkdf_sha512_256,
        op_rnr_attestation,
    ],
);

#[op2(fast)]
fn op_rnr_log(state: &mut OpState, #[smi] level: u32, #[string] message: &str) {
    if let Some(sink) = state.try_borrow::<WorkerSink>() {
        (sink.log)(level, message);
    }
}

#[op2(fast)]
fn op_rnr_uncaught(state: &mut OpState, #[string] message: &str) {
    if let Some(sink) = state.try_borrow::<WorkerSink>() {
        (sink.uncaught)(message);
    }
}

/// Reports a connection the net permission refused; returns the message naming the rule.
#[op2]
#[string]
fn op_rnr_egress_refused(
    state: &mut OpState,
    #[string] api: &str,
    #[string] target: &str,
) -> String {
    match state.try_borrow::<WorkerSink>() {
        Some(sink) => (sink.egress_refused)(api, target),
        None => format!("{api}: connection to {target} refused by the runner's egress policy"),
    }
}

fn streams(state: &Rc<RefCell<OpState>>) -> Result<SharedBodyStreams, JsErrorBox> {
    state
        .borrow()
        .try_borrow::<SharedBodyStreams>()
        .cloned()
        .ok_or_else(|| JsErrorBox::generic("no HTTP bodies in this isolate"))
}

#[op2]
async fn op_rnr_body_read(
    state: Rc<RefCell<OpState>>,
    #[smi] stream: u32,
) -> Result<Option<Uint8Array>, JsErrorBox> {
    let chunk = streams(&state)?
        .read(stream)
        .await
        .map_err(JsErrorBox::generic)?;
    Ok(chunk.map(Uint8Array::from))
}

#[op2]
async fn op_rnr_body_write(
    state: Rc<RefCell<OpState>>,
    #[smi] stream: u32,
    #[buffer] chunk: JsBuffer,
) -> Result<(), JsErrorBox> {
    let write = streams(&state)?.write(stream, chunk.to_vec());
    write.await.map_err(JsErrorBox::generic)
}

#[op2(fast)]
fn op_rnr_body_close(state: &mut OpState, #[smi] stream: u32, #[string] error: &str) {
    if let Some(streams) = state.try_borrow::<SharedBodyStreams>() {
        streams.close(stream, (!error.is_empty()).then(|| error.to_owned()));
    }
}

/// Keeps the native `CryptoKey.importSync` for [`op_rnr_omni_key`]. Called once by `rnr.js`
/// before the worker's script runs (so the worker cannot have replaced it); later calls are
/// ignored.
#[op2]
fn op_rnr_omni_key_init(state: &mut OpState, #[scoped] importer: v8::Global<v8::Function>) {
    if !state.has::<OmniKeyImporter>() {
        state.put(OmniKeyImporter(importer));
    }
}

/// `rnr.getOmniKey(store)`: resolves to a non-extractable HKDF `CryptoKey` made natively from
/// the key bytes (see [`OmniCryptoKey`]); the bytes never become a JavaScript value.
/// Re-entrant: making the key calls `CryptoKey.importSync` (another op), also when the key is
/// ready at once and the promise resolves within this call.
#[op2(reentrant)]
async fn op_rnr_omni_key(
    state: Rc<RefCell<OpState>>,
    #[string] store: String,
) -> Result<OmniCryptoKey, JsErrorBox> {
    let (keys, importer) = {
        let state = state.borrow();
        let keys = state
            .try_borrow::<SharedOmniKeys>()
            .cloned()
            .ok_or_else(|| JsErrorBox::generic("no key stores in this isolate"))?;
        let importer = state
            .try_borrow::<OmniKeyImporter>()
            .map(|i| i.0.clone())
            .ok_or_else(|| JsErrorBox::generic("the Omni Key importer is not set up"))?;
        (keys, importer)
    };
    match keys.get(&store).await {
        Ok(bytes) => Ok(OmniCryptoKey { bytes, importer }),
        Err(e) if e.type_error => Err(JsErrorBox::type_error(e.message)),
        Err(e) => Err(JsErrorBox::generic(e.message)),
    }
}

fn worker_keys(state: &Rc<RefCell<OpState>>) -> Result<SharedOmniKeys, JsErrorBox> {
    state
        .borrow()
        .try_borrow::<SharedOmniKeys>()
        .cloned()
        .ok_or_else(|| JsErrorBox::generic("no key stores in this isolate"))
}

async fn omni_key_bytes(
    state: &Rc<RefCell<OpState>>,
    store: &str,
) -> Result<OmniKeyBytes, JsErrorBox> {
    match worker_keys(state)?.get(store).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.type_error => Err(JsErrorBox::type_error(e.message)),
        Err(e) => Err(JsErrorBox::generic(e.message)),
    }
}

/// The Omni Key's bytes, for the one route that hands them to the worker's own code: Escrin's
/// `get-key` binding (`env.escrin` / `env.iam`), whose library imports them itself. Reachable
/// only from `rnr.js`'s bindings (worker code cannot import `ext:` modules).
#[op2]
async fn op_rnr_omni_key_bytes(
    state: Rc<RefCell<OpState>>,
    #[string] store: String,
) -> Result<Uint8Array, JsErrorBox> {
    let bytes = omni_key_bytes(&state, &store).await?;
    Ok(Uint8Array::from(bytes.to_vec()))
}

/// HKDF-SHA-512/256 (`length` bytes) with the Omni Key of `store` as the input key material:
/// what `deriveBits` does with the native Omni Key, whose bytes JavaScript never holds.
#[op2]
async fn op_rnr_omni_hkdf_sha512_256(
    state: Rc<RefCell<OpState>>,
    #[string] store: String,
    #[buffer] salt: JsBuffer,
    #[buffer] info: JsBuffer,
    #[smi] length: u32,
) -> Result<Uint8Array, JsErrorBox> {
    let ikm = omni_key_bytes(&state, &store).await?;
    hkdf_sha512_256(&ikm[..], &salt, &info, length).map(Uint8Array::from)
}

/// SHA-512/256 (FIPS 180-4), which deno_crypto does not offer.
#[op2]
fn op_rnr_sha512_256(#[buffer] data: JsBuffer) -> Uint8Array {
    use sha2_010::Digest;
    Uint8Array::from(sha2_010::Sha512_256::digest(&data[..]).to_vec())
}

/// HKDF (RFC 5869) over SHA-512/256 with key material the worker imported itself.
#[op2]
fn op_rnr_hkdf_sha512_256(
    #[buffer] ikm: JsBuffer,
    #[buffer] salt: JsBuffer,
    #[buffer] info: JsBuffer,
    #[smi] length: u32,
) -> Result<Uint8Array, JsErrorBox> {
    hkdf_sha512_256(&ikm, &salt, &info, length).map(Uint8Array::from)
}

/// `length` bytes of HKDF-SHA-512/256; an empty salt is HashLen zeros, as in RFC 5869.
pub fn hkdf_sha512_256(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    length: u32,
) -> Result<Vec<u8>, JsErrorBox> {
    let mut okm = vec![0u8; length as usize];
    hkdf::Hkdf::<sha2_010::Sha512_256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .map_err(|_| {
            JsErrorBox::new(
                "DOMExceptionOperationError",
                "HKDF-SHA-512-256 derives at most 255 * 32 bytes",
            )
        })?;
    Ok(okm)
}

/// Key bytes on their way to becoming a `CryptoKey`: converted when the op's promise resolves,
/// by calling deno_crypto's native `CryptoKey.importSync("raw", bytes, "HKDF", false,
/// ["deriveKey", "deriveBits"])` from Rust — the same import as `crypto.subtle.importKey`,
/// which copies the bytes into the key's native handle. The bytes sit meanwhile in an
/// ArrayBuffer that no JavaScript can reach (made here, passed only to that native function)
/// and are overwritten with zeros right after. Its memory is the runner's, not the isolate's
/// array-buffer allocator's: that allocator may refuse a worker at its memory limit, and
/// `v8::ArrayBuffer::new` then aborts the process rather than fail.
pub struct OmniCryptoKey {
    bytes: OmniKeyBytes,
    importer: v8::Global<v8::Function>,
}

impl<'a> ToV8<'a> for OmniCryptoKey {
    type Error = JsErrorBox;

    fn to_v8<'i>(
        self,
        scope: &mut v8::PinScope<'a, 'i>,
    ) -> Result<v8::Local<'a, v8::Value>, Self::Error> {
        let mut bytes = vec![0u8; 32].into_boxed_slice();
        bytes.copy_from_slice(&self.bytes[..]);
        drop(self.bytes);
        let backing = v8::ArrayBuffer::new_backing_store_from_boxed_slice(bytes).make_shared();
        let buffer = v8::ArrayBuffer::with_backing_store(scope, &backing);
        let key = import_hkdf_key(scope, buffer, &self.importer);
        for cell in backing.iter() {
            cell.set(0);
        }
        key.map(|key| v8::Local::new(scope, key))
    }
}

fn omni_key_failed(what: &str) -> JsErrorBox {
    JsErrorBox::generic(format!("making the Omni Key: {what}"))
}

/// `importer("raw", new Uint8Array(buffer), "HKDF", false, ["deriveKey", "deriveBits"])`.
fn import_hkdf_key(
    scope: &mut v8::PinScope,
    buffer: v8::Local<v8::ArrayBuffer>,
    importer: &v8::Global<v8::Function>,
) -> Result<v8::Global<v8::Value>, JsErrorBox> {
    let view = v8::Uint8Array::new(scope, buffer, 0, 32).ok_or_else(|| omni_key_failed("view"))?;
    let mut strings = Vec::new();
    for text in ["raw", "HKDF", "deriveKey", "deriveBits"] {
        let s = v8::String::new(scope, text).ok_or_else(|| omni_key_failed("out of memory"))?;
        strings.push(v8::Local::<v8::Value>::from(s));
    }
    let usages = v8::Array::new_with_elements(scope, &strings[2..]);
    let extractable = v8::Boolean::new(scope, false);
    let importer = v8::Local::new(scope, importer);
    let receiver = v8::undefined(scope);
    let args = [
        strings[0],
        view.into(),
        strings[1],
        extractable.into(),
        usages.into(),
    ];
    v8::tc_scope!(let tc, scope);
    match importer.call(tc, receiver.into(), &args) {
        Some(key) => Ok(v8::Global::new(tc, key)),
        None => {
            let message = tc
                .exception()
                .map(|e| e.to_rust_string_lossy(tc))
                .unwrap_or_else(|| "the import failed".into());
            Err(omni_key_failed(&message))
        }
    }
}

/// A fresh attestation document binding the worker's code and `nonce`, for Escrin's
/// `env.tpm` binding (reachable only from `rnr.js`): `{"document": …}` or
/// `{"status": N, "error": message}`, as JSON text.
#[op2]
#[string]
async fn op_rnr_attestation(
    state: Rc<RefCell<OpState>>,
    #[buffer(copy)] nonce: Vec<u8>,
) -> Result<String, JsErrorBox> {
    let attestation = state
        .borrow()
        .try_borrow::<SharedAttestation>()
        .cloned()
        .ok_or_else(|| JsErrorBox::generic("no attestation in this isolate"))?;
    Ok(attestation.document(nonce).await)
}
