//! Builds a worker's `deno_runtime` `WebWorker`: the startup snapshot, the options
//! (permissions, heap limit, array-buffer allocator), the `rnr` extension's state (log sink,
//! egress explanations, Omni Keys), and the heap-limit watch.

use std::rc::Rc;
use std::sync::Arc;

use deno_core::v8;
use deno_core::JsRuntime;
use deno_core::ModuleSpecifier;
use deno_core::StaticModuleLoader;
use deno_resolver::npm::DenoInNpmPackageChecker;
use deno_resolver::npm::NpmResolver;
use deno_runtime::deno_web::BlobStore;
use deno_runtime::web_worker::WebWorker;
use deno_runtime::web_worker::WebWorkerOptions;
use deno_runtime::web_worker::WebWorkerServiceOptions;
use deno_runtime::web_worker::WorkerId as DenoWorkerId;
use deno_runtime::web_worker::WorkerThreadType;
use deno_runtime::BootstrapOptions;
use deno_runtime::FeatureChecker;
use sys_traits::impls::RealSys;

use super::extension::rnr;
use super::extension::OmniKeyBytes;
use super::extension::OmniKeyError;
use super::extension::OmniKeys;
use super::extension::SharedAttestation;
use super::extension::SharedOmniKeys;
use super::extension::WorkerAttestation;
use super::extension::WorkerSink;
use super::isolate::SCRIPT_URL;
use super::loader::WorkerModuleLoader;
use super::memory::WorkerMemory;
use super::status::LogLevel;
use super::status::TerminationReason;
use super::status::WorkerStatus;
use super::CodeIdentity;
use super::Limits;
use super::ScriptKind;
use super::Services;
use super::WorkerSpec;

/// The startup snapshot made by `build.rs`, and the lazily loaded sources it
/// did not consume.
static SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/RUNNER_SNAPSHOT.bin"));
mod residual {
    include!(concat!(env!("OUT_DIR"), "/residual_lazy_sources.rs"));
}

pub(super) fn build_worker(
    spec: &WorkerSpec,
    limits: &Limits,
    shared: &Arc<Services>,
    memory: &Arc<WorkerMemory>,
    status: Arc<WorkerStatus>,
) -> WebWorker {
    let main_module = ModuleSpecifier::parse(SCRIPT_URL).expect("constant URL parses");
    let module_loader = WorkerModuleLoader::new(match spec.kind {
        ScriptKind::Module => StaticModuleLoader::with(main_module.clone(), spec.script.clone()),
        ScriptKind::Classic => StaticModuleLoader::default(),
    });
    let services =
        WebWorkerServiceOptions::<DenoInNpmPackageChecker, NpmResolver<RealSys>, RealSys> {
            blob_store: Arc::new(BlobStore::default()),
            broadcast_channel: Default::default(),
            deno_rt_native_addon_loader: None,
            compiled_wasm_module_store: None,
            feature_checker: Arc::new(FeatureChecker::default()),
            fs: Arc::new(deno_runtime::deno_fs::RealFs),
            main_inspector_session_tx: Default::default(),
            module_loader: Rc::new(module_loader),
            node_services: None,
            npm_process_state_provider: None,
            permissions: shared.egress.permissions(),
            root_cert_store_provider: None,
            shared_array_buffer_store: None,
            bundle_provider: None,
        };
    let heap_bytes = limits.heap_limit_mb * 1024 * 1024;
    let location = main_module.clone();
    let options = WebWorkerOptions {
        name: spec.id.to_string(),
        main_module,
        worker_id: DenoWorkerId::new(),
        bootstrap: BootstrapOptions {
            user_agent: concat!("SmartWorkerRunner/", env!("CARGO_PKG_VERSION")).to_string(),
            color_level: deno_runtime::colors::ColorLevel::None,
            // `self.location`: a WorkerGlobalScope's WorkerLocation, the script's own URL.
            location: Some(location),
            ..Default::default()
        },
        // Its ops; its JavaScript is in the snapshot.
        extensions: vec![rnr::init()],
        startup_snapshot: Some(SNAPSHOT),
        residual_lazy_js_sources: residual::RESIDUAL_LAZY_JS,
        residual_lazy_esm_sources: residual::RESIDUAL_LAZY_ESM,
        unsafely_ignore_certificate_errors: None,
        create_params: Some(
            v8::CreateParams::default()
                .heap_limits(0, heap_bytes)
                .array_buffer_allocator(memory.allocator()),
        ),
        seed: None,
        create_web_worker_cb: Arc::new(|_| {
            // `Worker` is removed from every Smart Worker's global scope, so
            // no script can ask for a nested worker.
            unreachable!("nested workers are disabled in Smart Workers")
        }),
        format_js_error_fn: None,
        worker_type: match spec.kind {
            ScriptKind::Module => WorkerThreadType::Module,
            ScriptKind::Classic => WorkerThreadType::Classic,
        },
        cache_storage_dir: None,
        stdio: Default::default(),
        trace_ops: None,
        close_on_idle: false,
        maybe_worker_metadata: None,
        maybe_main_module_blob: None,
        maybe_coverage_dir: None,
        maybe_cpu_prof_config: None,
        enable_raw_imports: false,
        enable_stack_trace_arg_in_ops: false,
        wait_for_debugger_on_start: false,
        wait_for_page_wait_for_debugger: false,
    };
    let (worker, _external_handle) = WebWorker::bootstrap_from_options(services, options);
    let log_status = status.clone();
    let egress_status = status.clone();
    let egress_policy = shared.egress.clone();
    let sink = WorkerSink {
        log: Box::new(move |level, message| {
            log_status.log(LogLevel::from_js(level), message.to_owned())
        }),
        uncaught: Box::new(move |message| status.record_uncaught(message.to_owned())),
        egress_refused: Box::new(move |api, target| {
            let message = egress_policy.explain(api, target);
            tracing::warn!(worker = %egress_status.id(), %target, "{message}");
            egress_status.log(LogLevel::Warn, message.clone());
            message
        }),
    };
    let code = CodeIdentity::of(spec.kind, &spec.script);
    let keys = shared.keys.for_worker(spec.id.clone(), code);
    let attestation = Rc::new(IsolateAttestation(Arc::new(
        shared.attestor.for_worker(code),
    )));
    let op_state = worker.js_runtime.op_state();
    let mut op_state = op_state.borrow_mut();
    op_state.put(sink);
    op_state.put::<SharedOmniKeys>(Rc::new(IsolateKeys(keys)));
    op_state.put::<SharedAttestation>(attestation);
    drop(op_state);
    worker
}

/// The worker's key stores as the `rnr` extension sees them.
struct IsolateKeys(crate::keys::WorkerKeys);

impl OmniKeys for IsolateKeys {
    fn get(
        &self,
        store: &str,
    ) -> deno_core::futures::future::LocalBoxFuture<'static, Result<OmniKeyBytes, OmniKeyError>>
    {
        let fetch = self.0.get(store);
        Box::pin(async move {
            match fetch.await {
                Ok(key) => Ok(Box::new(key) as OmniKeyBytes),
                Err(error) => Err(OmniKeyError {
                    type_error: matches!(error, crate::keys::KeyError::UnknownStore { .. }),
                    message: error.to_string(),
                }),
            }
        })
    }
}

/// The worker's attestation documents as the `rnr` extension sees them.
struct IsolateAttestation(Arc<crate::attestation::WorkerAttestor>);

impl WorkerAttestation for IsolateAttestation {
    fn document(
        &self,
        nonce: Vec<u8>,
    ) -> deno_core::futures::future::LocalBoxFuture<'static, String> {
        use crate::attestation::AttestationError;
        let attestor = Arc::clone(&self.0);
        Box::pin(async move {
            let refused = |status: u16, error: AttestationError| {
                serde_json::json!({ "status": status, "error": error.to_string() }).to_string()
            };
            match attestor.document(&nonce).await {
                Ok(document) => serde_json::json!({ "document": document }).to_string(),
                Err(error @ AttestationError::NonceTooLong(_)) => refused(400, error),
                Err(error @ AttestationError::RateLimited { .. }) => refused(429, error),
                Err(error @ AttestationError::Evidence(_)) => refused(503, error),
                Err(error) => refused(500, error),
            }
        })
    }
}

/// Near the heap limit, stop the isolate before V8 aborts the whole process. V8 also calls
/// this in its last-resort collection before retrying an array-buffer allocation the memory
/// account refused: that is not the heap's limit, and the allocation fails on its own.
pub(super) fn watch_heap(
    runtime: &mut JsRuntime,
    limits: &Limits,
    memory: Arc<WorkerMemory>,
    status: Arc<WorkerStatus>,
) {
    let isolate = runtime.v8_isolate().thread_safe_handle();
    let limit_mb = limits.heap_limit_mb;
    runtime.add_near_heap_limit_callback(move |current, _initial| {
        if memory.take_refusal() {
            return current;
        }
        tracing::warn!(worker = %status.id(), limit_mb, "worker reached its heap limit");
        status.terminate(TerminationReason::HeapLimit { limit_mb });
        isolate.terminate_execution();
        // Head-room for the isolate to unwind; it is torn down right after.
        current * 2
    });
}
