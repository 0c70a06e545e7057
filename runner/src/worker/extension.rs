//! The `rnr` extension: the runner's JavaScript inside every isolate
//! (`js/rnr.js`) and the ops it calls. Self-contained, because the build
//! script compiles this same file to put the extension in the startup snapshot.

use deno_core::op2;
use deno_core::OpState;

/// Console output: (level, message); levels 0 debug, 1 info, 2 warn, 3 error.
pub type LogFn = dyn Fn(u32, &str);

/// An error nobody handled: thrown from a callback or an unhandled rejection.
pub type UncaughtFn = dyn Fn(&str);

/// Receives what a worker reports, put into each isolate's `OpState` by the host.
pub struct WorkerSink {
    pub log: Box<LogFn>,
    pub uncaught: Box<UncaughtFn>,
}

deno_core::extension!(
    rnr,
    ops = [op_rnr_log, op_rnr_uncaught],
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
