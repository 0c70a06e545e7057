//! The isolate thread: builds a `deno_runtime` `WebWorker` for one Smart
//! Worker, evaluates its script and then serves the host's commands while
//! driving the isolate's event loop.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use deno_core::error::CoreError;
use deno_core::futures::stream::FuturesUnordered;
use deno_core::futures::StreamExt;
use deno_core::v8;
use deno_core::JsRuntime;
use deno_core::ModuleSpecifier;
use deno_core::PollEventLoopOptions;
use deno_runtime::web_worker::WebWorker;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use super::bodies;
use super::bodies::HostBodies;
use super::bootstrap::build_worker;
use super::bootstrap::watch_heap;
use super::cpu_clock::ThreadCpuClock;
use super::memory::WorkerMemory;
use super::status::WorkerStatus;
use super::Command;
use super::Limits;
use super::ScriptKind;
use super::Services;
use super::Started;
use super::WorkerSpec;

pub(super) const SCRIPT_URL: &str = "file:///worker.js";
const SETUP_KEY_SCRIPT: &str = r#"(() => {
  const key = Symbol.for("smartworker.runner.setup");
  const setup = globalThis[key];
  delete globalThis[key];
  return setup;
})()"#;

/// How often a busy isolate's heap size is reported to the memory budget.
const HEAP_MEASURE_EVERY: Duration = Duration::from_millis(100);

/// Stack size of an isolate thread: V8 needs more than Rust's 2 MiB default
/// for deeply recursive scripts to get a RangeError rather than a crash.
const THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

pub(super) struct ThreadArgs {
    pub spec: WorkerSpec,
    pub limits: Limits,
    pub services: Arc<Services>,
    pub status: Arc<WorkerStatus>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub memory: Arc<WorkerMemory>,
    pub isolate_tx: oneshot::Sender<(v8::IsolateHandle, Option<ThreadCpuClock>)>,
    pub started_tx: oneshot::Sender<Result<Started, String>>,
}

pub(super) fn spawn_thread(args: ThreadArgs) -> std::io::Result<()> {
    let name = format!("worker-{}", args.spec.id);
    std::thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || {
            let status = args.status.clone();
            deno_runtime::tokio_util::create_and_run_current_thread(run(args));
            if status.state().is_alive() {
                status.fail("the worker's isolate stopped".into());
            }
        })?;
    Ok(())
}

async fn run(args: ThreadArgs) {
    let ThreadArgs {
        spec,
        limits,
        services,
        status,
        commands,
        memory,
        isolate_tx,
        started_tx,
    } = args;
    let mut worker = build_worker(&spec, &limits, &services, &memory, status.clone());
    watch_heap(
        &mut worker.js_runtime,
        &limits,
        memory.clone(),
        status.clone(),
    );
    let isolate = worker.js_runtime.v8_isolate().thread_safe_handle();
    memory.watch(isolate.clone(), status.clone());
    if isolate_tx
        .send((isolate, ThreadCpuClock::of_current_thread()))
        .is_err()
    {
        return;
    }
    let mut host = match Host::evaluate(worker, &spec, memory).await {
        Ok(host) => host,
        Err(message) => {
            let _ = started_tx.send(Err(message));
            return;
        }
    };
    let started = host.has("hasTasks").and_then(|has_tasks| {
        Ok(Started {
            has_tasks,
            has_fetch: host.has("hasFetch")?,
        })
    });
    if started_tx.send(started).is_err() {
        return;
    }
    host.serve(commands, &status).await;
}

fn js_error_message(error: CoreError) -> String {
    error.to_string()
}

/// A worker whose script has been evaluated, with the runner's entry points.
struct Host {
    worker: WebWorker,
    memory: Arc<WorkerMemory>,
    /// When the heap was last measured for the memory budget.
    heap_measured: Instant,
    hooks: v8::Global<v8::Object>,
    dispatch: v8::Global<v8::Function>,
    bodies: Rc<HostBodies>,
}

/// A handler call in flight: its number and, once settled, its outcome.
type PendingCall =
    Pin<Box<dyn std::future::Future<Output = (u64, Result<v8::Global<v8::Value>, String>)>>>;

/// Who waits for a call's outcome.
enum Reply {
    Tasks(oneshot::Sender<Result<(), String>>),
    /// Fetch number (for its bodies) and the waiter for the response head.
    Fetch(u32, oneshot::Sender<Result<String, String>>),
}

impl Reply {
    fn fail(self, bodies: &HostBodies, message: String) {
        match self {
            Reply::Tasks(reply) => {
                let _ = reply.send(Err(message));
            }
            Reply::Fetch(n, reply) => {
                bodies.abort(n, &message);
                let _ = reply.send(Err(message));
            }
        }
    }
}

enum Step {
    Command(Option<Command>),
    Finished(u64, Result<v8::Global<v8::Value>, String>),
    Idle,
    LoopError(CoreError),
}

impl Host {
    async fn evaluate(
        mut worker: WebWorker,
        spec: &WorkerSpec,
        memory: Arc<WorkerMemory>,
    ) -> Result<Self, String> {
        let runtime = &mut worker.js_runtime;
        let setup = runtime
            .execute_script("ext:rnr/take_setup.js", SETUP_KEY_SCRIPT)
            .map_err(|e| e.to_string())?;
        let hooks = {
            deno_core::scope!(scope, runtime);
            let setup = v8::Local::new(scope, setup);
            let setup = v8::Local::<v8::Function>::try_from(setup)
                .map_err(|_| "runner setup missing".to_string())?;
            let kind = v8::String::new(scope, spec.kind.as_str()).ok_or("out of memory")?;
            let config = v8::String::new(scope, &spec.config_json).ok_or("config too large")?;
            let undefined = v8::undefined(scope);
            let hooks = setup
                .call(scope, undefined.into(), &[kind.into(), config.into()])
                .ok_or("runner setup failed")?;
            let hooks = v8::Local::<v8::Object>::try_from(hooks)
                .map_err(|_| "runner setup failed".to_string())?;
            v8::Global::new(scope, hooks)
        };

        match spec.kind {
            ScriptKind::Module => {
                let specifier = ModuleSpecifier::parse(SCRIPT_URL).expect("constant URL parses");
                let id = worker
                    .preload_main_module(&specifier)
                    .await
                    .map_err(js_error_message)?;
                let runtime = &mut worker.js_runtime;
                let evaluation = runtime.mod_evaluate(id);
                runtime
                    .with_event_loop_promise(evaluation, PollEventLoopOptions::default())
                    .await
                    .map_err(js_error_message)?;
                let namespace = runtime.get_module_namespace(id).map_err(js_error_message)?;
                let bind = Self::hook(runtime, &hooks, "bindModule")?;
                deno_core::scope!(scope, runtime);
                let bind = v8::Local::new(scope, bind);
                let namespace = v8::Local::new(scope, namespace);
                let this = v8::Local::new(scope, &hooks);
                v8::tc_scope!(let tc, scope);
                if bind.call(tc, this.into(), &[namespace.into()]).is_none() {
                    return Err(tc
                        .exception()
                        .map(|e| e.to_rust_string_lossy(tc))
                        .unwrap_or_else(|| "binding the module failed".into()));
                }
            }
            ScriptKind::Classic => {
                let runtime = &mut worker.js_runtime;
                runtime
                    .execute_script(SCRIPT_URL, spec.script.clone())
                    .map_err(|e| e.to_string())?;
                // Let top-level timers and promises of the script settle their
                // first turn, as module evaluation does.
                runtime
                    .run_event_loop(PollEventLoopOptions::default())
                    .await
                    .map_err(js_error_message)?;
            }
        }
        let dispatch = Self::hook(&mut worker.js_runtime, &hooks, "dispatch")?;
        let bodies = Rc::new(HostBodies::default());
        worker
            .js_runtime
            .op_state()
            .borrow_mut()
            .put(bodies::shared(&bodies));
        let mut host = Self {
            worker,
            memory,
            heap_measured: Instant::now(),
            hooks,
            dispatch,
            bodies,
        };
        host.measure_heap_now();
        Ok(host)
    }

    /// Tells the memory budget how large the isolate's heap is now (at most every
    /// [`HEAP_MEASURE_EVERY`]: the hot path of a request does not pay for it each time).
    fn measure_heap(&mut self) {
        if self.heap_measured.elapsed() >= HEAP_MEASURE_EVERY {
            self.measure_heap_now();
        }
    }

    fn measure_heap_now(&mut self) {
        self.heap_measured = Instant::now();
        self.memory.measure(self.worker.js_runtime.v8_isolate());
    }

    fn hook(
        runtime: &mut JsRuntime,
        hooks: &v8::Global<v8::Object>,
        name: &str,
    ) -> Result<v8::Global<v8::Function>, String> {
        deno_core::scope!(scope, runtime);
        let hooks = v8::Local::new(scope, hooks);
        let key = v8::String::new(scope, name).ok_or("out of memory")?;
        let value = hooks.get(scope, key.into()).ok_or("runner hook missing")?;
        let function = v8::Local::<v8::Function>::try_from(value)
            .map_err(|_| format!("runner hook {name} missing"))?;
        Ok(v8::Global::new(scope, function))
    }

    /// Asks a yes/no hook (`hasTasks`, `hasFetch`).
    fn has(&mut self, hook: &str) -> Result<bool, String> {
        let function = Self::hook(&mut self.worker.js_runtime, &self.hooks, hook)?;
        deno_core::scope!(scope, &mut self.worker.js_runtime);
        let function = v8::Local::new(scope, function);
        let this = v8::Local::new(scope, &self.hooks);
        let result = function
            .call(scope, this.into(), &[])
            .ok_or_else(|| format!("{hook} failed"))?;
        Ok(result.is_true())
    }

    /// Calls `dispatch(trigger, info, requestStream, responseStream)`.
    fn call_dispatch(
        &mut self,
        number: u64,
        trigger: &str,
        info_json: &str,
        streams: (u32, u32),
    ) -> PendingCall {
        let args = {
            deno_core::scope!(scope, &mut self.worker.js_runtime);
            let text = |scope: &mut v8::PinScope, text: &str| {
                v8::String::new(scope, text)
                    .map(|s| v8::Global::new(scope, v8::Local::<v8::Value>::from(s)))
            };
            let number = |scope: &mut v8::PinScope, n: u32| {
                let n = v8::Integer::new_from_unsigned(scope, n);
                v8::Global::new(scope, v8::Local::<v8::Value>::from(n))
            };
            let trigger = text(scope, trigger);
            let info = text(scope, info_json);
            trigger.zip(info).map(|(trigger, info)| {
                [
                    trigger,
                    info,
                    number(scope, streams.0),
                    number(scope, streams.1),
                ]
            })
        };
        let Some(args) = args else {
            return Box::pin(async move { (number, Err("out of memory".to_string())) });
        };
        let call = self.worker.js_runtime.call_with_args(&self.dispatch, &args);
        Box::pin(async move { (number, call.await.map_err(|e| e.exception_message.clone())) })
    }

    /// The string a fetch dispatch resolved with (the response head as JSON).
    fn string_of(&mut self, value: &v8::Global<v8::Value>) -> String {
        deno_core::scope!(scope, &mut self.worker.js_runtime);
        let value = v8::Local::new(scope, value);
        value.to_rust_string_lossy(scope)
    }

    /// Serves commands until told to stop or the worker is terminated.
    async fn serve(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        status: &WorkerStatus,
    ) {
        let mut pending: FuturesUnordered<PendingCall> = FuturesUnordered::new();
        let mut replies: HashMap<u64, Reply> = HashMap::new();
        let mut next_call = 0u64;
        let mut next_fetch = 0u32;
        // Whether the event loop has work; it is polled only then.
        let mut loop_active = false;
        // Set when the event loop went idle with calls still unsettled.
        let mut idle_with_pending = false;
        while status.state().is_alive() {
            let step = poll_fn(|cx| {
                if let Poll::Ready(command) = commands.poll_recv(cx) {
                    return Poll::Ready(Step::Command(command));
                }
                if let Poll::Ready(Some((number, result))) = pending.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Finished(number, result));
                }
                if loop_active {
                    match self
                        .worker
                        .js_runtime
                        .poll_event_loop(cx, PollEventLoopOptions::default())
                    {
                        Poll::Ready(Ok(())) => return Poll::Ready(Step::Idle),
                        Poll::Ready(Err(error)) => return Poll::Ready(Step::LoopError(error)),
                        Poll::Pending => {}
                    }
                } else if idle_with_pending && !pending.is_empty() {
                    return Poll::Ready(Step::Idle);
                }
                Poll::Pending
            })
            .await;
            self.measure_heap();
            match step {
                Step::Command(None | Some(Command::Stop)) => break,
                Step::Command(Some(Command::RunTasks { info, reply })) => {
                    let info_json = serde_json::to_string(&info).unwrap_or_else(|_| "{}".into());
                    next_call += 1;
                    replies.insert(next_call, Reply::Tasks(reply));
                    pending.push(self.call_dispatch(next_call, "tasks", &info_json, (0, 0)));
                    loop_active = true;
                    idle_with_pending = false;
                }
                Step::Command(Some(Command::Fetch {
                    info,
                    request_body,
                    response_body,
                    reply,
                })) => {
                    next_call += 1;
                    next_fetch = next_fetch.wrapping_add(1);
                    let streams = self.bodies.open(next_fetch, request_body, response_body);
                    replies.insert(next_call, Reply::Fetch(next_fetch, reply));
                    pending.push(self.call_dispatch(next_call, "fetch", &info, streams));
                    loop_active = true;
                    idle_with_pending = false;
                }
                Step::Finished(number, result) => match replies.remove(&number) {
                    Some(Reply::Tasks(reply)) => {
                        let _ = reply.send(result.map(|_| ()));
                    }
                    Some(Reply::Fetch(n, reply)) => match result {
                        Ok(head) => {
                            let _ = reply.send(Ok(self.string_of(&head)));
                        }
                        Err(message) => Reply::Fetch(n, reply).fail(&self.bodies, message),
                    },
                    None => {}
                },
                Step::Idle if loop_active => {
                    // Collect calls that settled in the event loop's last turn
                    // before declaring the others stuck.
                    loop_active = false;
                    idle_with_pending = true;
                }
                Step::Idle => {
                    // Nothing is left that could settle the remaining calls.
                    idle_with_pending = false;
                    pending.clear();
                    for (_, reply) in replies.drain() {
                        let message = "the handler's promise never settled: nothing was left for it to wait for";
                        reply.fail(&self.bodies, message.into());
                    }
                }
                Step::LoopError(error) => {
                    if !status.state().is_alive() {
                        break;
                    }
                    status.record_uncaught(format!("uncaught: {error}"));
                    loop_active = !pending.is_empty();
                }
            }
        }
    }
}
