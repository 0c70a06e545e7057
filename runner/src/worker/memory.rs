//! Memory outside the V8 heap: every worker's `ArrayBuffer`s (typed arrays, `DataView`s,
//! `Blob` reads, `WebAssembly` buffers made through the allocator) come from an array-buffer
//! allocator that counts them, per worker and for the whole runner.
//!
//! The heap limit (`--heap-limit-mb`) does not cover backing stores, so without this a single
//! worker could take all of the machine's memory with a few `new Uint8Array(1 << 27)`.
//! - A worker over its own limit (`--array-buffer-limit-mb`) is terminated, with that reason;
//!   the allocation that crossed it fails (`RangeError`), so no more memory is taken meanwhile.
//! - All workers together stay within the runner's budget (`--memory-budget-mb`: array buffers
//!   plus each worker's V8 heap as last measured); an allocation past it fails with a
//!   `RangeError` (the worker that asks is not to blame for the others), and new workers are
//!   refused (`503`) while the budget is used up, at creation and at restore alike.
//! - Memory outside the heap that does not come from the allocator — `WebAssembly.Memory`
//!   (V8 reserves and maps it itself, and accounts it as external memory of the isolate, grows
//!   included) and buffers made by the runtime's ops — is seen by
//!   measuring: the worker's watchdog asks the isolate thread, through a V8 interrupt (so also
//!   in the middle of a long-running script), for its heap statistics every
//!   [`MEASURE_EVERY`](super::watchdog::MEASURE_EVERY) (up to
//!   [`IDLE_EVERY_MAX`](super::watchdog::IDLE_EVERY_MAX) apart while it is idle); a worker whose memory outside the heap
//!   is then over its limit is terminated the same way, and the rest counts in the budget.

use std::ffi::c_void;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::Weak;

use deno_core::v8;

use super::status::TerminationReason;
use super::status::WorkerStatus;

const MIB: usize = 1024 * 1024;

/// An allocation this small may go past a limit by up to [`SLACK`]: V8's API calls that make
/// buffers for the runtime (not for scripts) abort the process when refused.
pub const SMALL_ALLOCATION: usize = MIB;
const SLACK: usize = 16 * MIB;

fn slack(len: usize) -> usize {
    if len <= SMALL_ALLOCATION {
        SLACK
    } else {
        0
    }
}

/// What a worker takes to start (its isolate's first heap): less room than this in the budget
/// refuses new workers.
pub const NEW_WORKER_BYTES: usize = 16 * MIB;

/// What every worker's memory together may use.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    /// Array-buffer bytes of every worker.
    external: AtomicUsize,
    /// Measured bytes of every worker beyond its allocator's: V8 heaps, WebAssembly memories,
    /// the runtime's buffers.
    heaps: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit_mb: usize) -> Self {
        Self {
            limit: limit_mb.saturating_mul(MIB),
            external: AtomicUsize::new(0),
            heaps: AtomicUsize::new(0),
        }
    }

    /// A budget from the machine's memory: a share of the RAM (or of the runner's cgroup limit,
    /// when lower) that leaves room for the runner itself and the kernel.
    pub fn default_limit_mb() -> usize {
        let total = physical_memory().unwrap_or(2048 * MIB);
        let total = cgroup_memory_max().map_or(total, |max| max.min(total));
        (total / 10 * 7) / MIB
    }

    pub fn limit_mb(&self) -> usize {
        self.limit / MIB
    }

    /// Bytes in use by all workers (array buffers and heaps).
    pub fn used(&self) -> usize {
        self.external
            .load(Ordering::Relaxed)
            .saturating_add(self.heaps.load(Ordering::Relaxed))
    }

    /// Whether a new worker may start: the budget still has room for a worker's start (its
    /// first heap, [`NEW_WORKER_BYTES`]).
    pub fn has_room(&self) -> bool {
        self.used().saturating_add(NEW_WORKER_BYTES) <= self.limit
    }

    /// Takes `len` array-buffer bytes, unless that would go past the budget.
    /// Takes `len` array-buffer bytes, unless that would go past the budget (by more than
    /// the slack a small allocation may use, see [`SMALL_ALLOCATION`]).
    fn take(&self, len: usize) -> bool {
        let before = self.external.fetch_add(len, Ordering::Relaxed);
        let heaps = self.heaps.load(Ordering::Relaxed);
        if before.saturating_add(len).saturating_add(heaps) > self.limit.saturating_add(slack(len))
        {
            self.external.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give_back(&self, len: usize) {
        self.external.fetch_sub(len, Ordering::Relaxed);
    }
}

/// Whom to stop when a worker goes over its own limit.
struct Breach {
    isolate: v8::IsolateHandle,
    status: Arc<WorkerStatus>,
}

/// One worker's account: its array buffers and its last measured heap.
pub struct WorkerMemory {
    budget: Arc<MemoryBudget>,
    limit: usize,
    external: AtomicUsize,
    /// Measured beyond the allocator: heap, plus memory outside it the allocator did not give.
    heap: AtomicUsize,
    breach: OnceLock<Breach>,
    /// A measurement was asked for and has not run yet (at most one is queued).
    measure_pending: AtomicBool,
    /// An allocation was refused and V8 has not yet collected garbage for it.
    refused: AtomicBool,
}

impl WorkerMemory {
    pub fn new(budget: Arc<MemoryBudget>, limit_mb: usize) -> Arc<Self> {
        Arc::new(Self {
            budget,
            limit: limit_mb.saturating_mul(MIB),
            external: AtomicUsize::new(0),
            heap: AtomicUsize::new(0),
            breach: OnceLock::new(),
            measure_pending: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        })
    }

    /// The allocator for this worker's isolate (`CreateParams::array_buffer_allocator`).
    pub fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
        // SAFETY: the raw Arc is given back by `drop_handle` when V8 drops the allocator; the
        // vtable's functions uphold the allocator's contract (see each).
        unsafe { v8::new_rust_allocator(Arc::into_raw(self.clone()), &VTABLE) }
    }

    /// Once the isolate exists: whom to terminate when the worker goes over its limit.
    pub fn watch(&self, isolate: v8::IsolateHandle, status: Arc<WorkerStatus>) {
        let _ = self.breach.set(Breach { isolate, status });
    }

    /// Asks the isolate's thread to measure its memory at its next safe point: between turns
    /// or in the middle of running JavaScript. At most one request is queued, so an idle
    /// isolate does not pile them up.
    pub fn request_measure(self: &Arc<Self>, isolate: &v8::IsolateHandle) {
        if self.measure_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let data = Weak::into_raw(Arc::downgrade(self)) as *mut c_void;
        if !isolate.request_interrupt(measure_interrupt, data) {
            // SAFETY: the interrupt will never run: take back the pointer made just above.
            drop(unsafe { Weak::from_raw(data as *const WorkerMemory) });
            self.measure_pending.store(false, Ordering::Release);
        }
    }

    /// Takes a measurement of the isolate (on its thread): its heap, and its memory outside the
    /// heap, which must stay within the worker's limit.
    pub fn measure(&self, isolate: &mut v8::Isolate) {
        let stats = isolate.get_heap_statistics();
        // V8 keeps two counts: backing-store bytes (`external_memory`: array buffers) and the
        // isolate's external memory, which holds the array buffers too plus what its managed
        // objects hold: WebAssembly memories (grown ones included) and compiled modules. A zero
        // adjustment only reads that total. The larger of the two is what lives outside the heap.
        let managed = isolate.adjust_amount_of_external_allocated_memory(0).max(0) as usize;
        let outside_heap = stats.external_memory().max(managed);
        let beyond_allocator = outside_heap.saturating_sub(self.external());
        self.set_heap(stats.total_heap_size().saturating_add(beyond_allocator));
        if outside_heap > self.limit {
            tracing::debug!(
                allocator = self.external(),
                backing_stores = stats.external_memory(),
                managed,
                "memory outside the heap, measured"
            );
            self.over_limit();
        }
    }

    /// Records what was measured beyond the allocator's count.
    fn set_heap(&self, bytes: usize) {
        let before = self.heap.swap(bytes, Ordering::Relaxed);
        if bytes >= before {
            self.budget
                .heaps
                .fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            self.budget
                .heaps
                .fetch_sub(before - bytes, Ordering::Relaxed);
        }
    }

    /// Array-buffer bytes this worker holds now.
    pub fn external(&self) -> usize {
        self.external.load(Ordering::Relaxed)
    }

    /// Whether an allocation was refused since the last call: V8 then collects garbage as a
    /// last resort (and calls the near-heap-limit callback) before it gives up on it.
    pub fn take_refusal(&self) -> bool {
        self.refused.swap(false, Ordering::AcqRel)
    }

    /// Takes `len` bytes for this worker. Past the worker's limit the worker is terminated and
    /// the allocation refused — unless it is small and within the slack: the runtime's own
    /// buffers are made through V8 calls that abort the whole process when the allocator says
    /// no, and a worker being terminated must not take the runner with it.
    fn take(&self, len: usize) -> bool {
        let before = self.external.fetch_add(len, Ordering::Relaxed);
        let after = before.saturating_add(len);
        if after > self.limit {
            self.over_limit();
            if after > self.limit.saturating_add(slack(len)) {
                self.external.fetch_sub(len, Ordering::Relaxed);
                self.refused.store(true, Ordering::Release);
                return false;
            }
        }
        if !self.budget.take(len) {
            self.external.fetch_sub(len, Ordering::Relaxed);
            self.refused.store(true, Ordering::Release);
            tracing::warn!(
                budget_mb = self.budget.limit_mb(),
                "an array-buffer allocation was refused: the runner's memory budget is used up"
            );
            return false;
        }
        true
    }

    fn give_back(&self, len: usize) {
        self.external.fetch_sub(len, Ordering::Relaxed);
        self.budget.give_back(len);
    }

    fn over_limit(&self) {
        let limit_mb = self.limit / MIB;
        if let Some(breach) = self.breach.get() {
            if breach.status.state().is_alive() {
                tracing::warn!(worker = %breach.status.id(), limit_mb, "worker went over its array-buffer memory limit");
            }
            breach
                .status
                .terminate(TerminationReason::ArrayBufferLimit { limit_mb });
            breach.isolate.terminate_execution();
        }
    }
}

impl Drop for WorkerMemory {
    fn drop(&mut self) {
        // Every backing store is freed before V8 drops the allocator; the heap goes with it.
        self.set_heap(0);
        let left = self.external.swap(0, Ordering::Relaxed);
        self.budget.give_back(left);
    }
}

/// Runs on the isolate's thread, at a point where V8 may be asked for statistics.
unsafe extern "C" fn measure_interrupt(mut isolate: v8::UnsafeRawIsolatePtr, data: *mut c_void) {
    // SAFETY: `data` was made by `request_measure` with `Weak::into_raw`; this runs once.
    let weak = unsafe { Weak::from_raw(data as *const WorkerMemory) };
    let Some(memory) = weak.upgrade() else {
        return;
    };
    memory.measure_pending.store(false, Ordering::Release);
    // SAFETY: V8 runs interrupts on the isolate's own thread with the isolate entered.
    let isolate = unsafe { v8::Isolate::ref_from_raw_isolate_ptr_mut(&mut isolate) };
    memory.measure(isolate);
}

static VTABLE: v8::RustAllocatorVtable<WorkerMemory> = v8::RustAllocatorVtable {
    allocate,
    allocate_uninitialized,
    free,
    drop: drop_handle,
};

/// Zeroed memory for `len` bytes, or null (V8 then throws a `RangeError`).
unsafe extern "C" fn allocate(memory: &WorkerMemory, len: usize) -> *mut c_void {
    if !memory.take(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: calloc with a non-zero size; a null result is handled.
    let data = unsafe { libc::calloc(len.max(1), 1) };
    if data.is_null() {
        memory.give_back(len);
    }
    data
}

unsafe extern "C" fn allocate_uninitialized(memory: &WorkerMemory, len: usize) -> *mut c_void {
    if !memory.take(len) {
        return std::ptr::null_mut();
    }
    // SAFETY: malloc with a non-zero size; a null result is handled.
    let data = unsafe { libc::malloc(len.max(1)) };
    if data.is_null() {
        memory.give_back(len);
    }
    data
}

/// V8 frees with the length it allocated with.
unsafe extern "C" fn free(memory: &WorkerMemory, data: *mut c_void, len: usize) {
    // SAFETY: `data` came from `allocate` or `allocate_uninitialized` (or is null).
    unsafe { libc::free(data) };
    memory.give_back(len);
}

unsafe extern "C" fn drop_handle(memory: *const WorkerMemory) {
    // SAFETY: the pointer is the one `allocator` made with `Arc::into_raw`, dropped once.
    drop(unsafe { Arc::from_raw(memory) });
}

/// Physical memory, from `sysconf`.
fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| (pages as usize).saturating_mul(size as usize))
}

/// The cgroup v2 memory limit of this process, when it has one.
fn cgroup_memory_max() -> Option<usize> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim())).ok()?;
    max.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_cannot_take_more_than_its_limit_and_gets_it_back_when_freed() {
        let budget = Arc::new(MemoryBudget::new(1024));
        let worker = WorkerMemory::new(budget.clone(), 10);
        assert!(worker.take(8 * MIB));
        assert!(!worker.take(3 * MIB), "over the worker's 10 MiB");
        assert_eq!(worker.external(), 8 * MIB);
        worker.give_back(8 * MIB);
        assert!(worker.take(10 * MIB));
        assert_eq!(budget.used(), 10 * MIB);
    }

    #[test]
    fn small_allocations_may_pass_a_limit_by_the_slack_large_ones_never() {
        let budget = Arc::new(MemoryBudget::new(1024));
        let worker = WorkerMemory::new(budget.clone(), 10);
        assert!(worker.take(10 * MIB));
        assert!(!worker.take(2 * MIB), "a large allocation past the limit");
        for _ in 0..16 {
            assert!(worker.take(MIB), "within the slack");
        }
        assert!(!worker.take(MIB), "past the slack");
        assert_eq!(worker.external(), 26 * MIB);
    }

    #[test]
    fn all_workers_together_stay_within_the_budget_heaps_included() {
        let budget = Arc::new(MemoryBudget::new(100));
        let a = WorkerMemory::new(budget.clone(), 80);
        let b = WorkerMemory::new(budget.clone(), 80);
        assert!(a.take(60 * MIB));
        b.set_heap(20 * MIB);
        assert!(!b.take(30 * MIB), "60 + 20 + 30 > 100");
        assert!(b.take(10 * MIB));
        assert!(!budget.has_room(), "10 MiB left, a new worker needs 16");
        drop(a);
        assert_eq!(budget.used(), 30 * MIB);
        assert!(budget.has_room());
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_default_budget_is_a_share_of_this_machines_memory() {
        let limit = MemoryBudget::default_limit_mb();
        let total = physical_memory().unwrap() / MIB;
        assert!(limit > 0 && limit < total, "{limit} of {total}");
    }
}
