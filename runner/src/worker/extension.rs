//! The `rnr` extension: the runner's JavaScript inside every isolate
//! (`js/rnr.js`) and the ops it calls. Self-contained (it depends on
//! `deno_core` only), because the build script compiles this same file to put
//! the extension in the startup snapshot; the host plugs its behaviour in
//! through [`WorkerSink`] and [`BodyStreams`] in each isolate's `OpState`.

use std::cell::RefCell;
use std::rc::Rc;

use deno_core::convert::Uint8Array;
use deno_core::futures::future::LocalBoxFuture;
use deno_core::op2;
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

deno_core::extension!(
    rnr,
    ops = [
        op_rnr_log,
        op_rnr_uncaught,
        op_rnr_egress_refused,
        op_rnr_body_read,
        op_rnr_body_write,
        op_rnr_body_close,
    ],
    esm_entry_point = "ext:rnr/rnr.js",
    esm = [dir "src/worker/js", "rnr.js"],
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
