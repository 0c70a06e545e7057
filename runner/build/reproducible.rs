//! Making the startup snapshot the same bytes in every build of one commit.
//!
//! `deno_runtime::snapshot::create_runtime_snapshot` (deno_runtime 0.268, deno_core 0.413,
//! V8 15.0) differs from one run to the next in three ways, all neutralised here, in this
//! build script's process only:
//!
//! 1. **HashMap order.** deno_core writes several `std::collections::HashMap`s in iteration
//!    order: `SnapshottedData::ext_source_maps` (the source maps of the transpiled TypeScript,
//!    about 1 MB of the sidecar), `ModuleMapData`'s `by_name` and `known_lazy_esm`, and
//!    `loaded_script_results`, whose V8 values are added to the context in that order (so
//!    the order also shows in the V8 part). std seeds every HashMap from `getrandom(2)` with
//!    `GRND_INSECURE`, looked up as a weak symbol so that it can be interposed: this binary
//!    defines [`getrandom`], answers those requests with fixed bytes and passes every other
//!    request to the kernel.
//! 2. **The GC schedule.** deno_core sets `--predictable --random-seed=42` (one GC thread,
//!    fixed seeds), but V8 still sizes the young generation and grows the heap by measured
//!    allocation rates and times, so when collections happen, and with that where objects end
//!    up and in what order the snapshot meets them, varies with the machine's load (a few
//!    KB of the V8 part). [`V8_FLAGS`] adds `--predictable-gc-schedule`, which fixes both.
//! 3. **Freed memory.** deno_core backs three ArrayBuffers that JavaScript keeps (tick,
//!    immediate and timer info: 2, 12 and 4 bytes) with boxes in the main realm's
//!    `ContextState`, frees that state when it tears the realm down for the snapshot
//!    (`JsRealm::destroy`), and V8 then serialises the buffers' contents: whatever malloc
//!    wrote into the freed blocks (its free-list pointers). From that teardown until the
//!    snapshot exists, [`KeepFreed`] zeroes what Rust frees and never hands it back to malloc.
//!    The teardown is noticed through a [`RealmTeardown`] kept in the main context's slots,
//!    which `JsRealm::destroy` drops just before it drops the `ContextState`.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use deno_core::v8;
use deno_runtime::ops::bootstrap::SnapshotOptions;
use deno_runtime::snapshot::create_runtime_snapshot;
use deno_runtime::snapshot::CreateRuntimeSnapshotOutput;

/// Added to deno_core's snapshot flags (`--predictable --random-seed=42`).
const V8_FLAGS: &str = "--predictable-gc-schedule";

/// deno_runtime's snapshot plus `extension`, written to `path`, the same bytes every time.
pub fn create_snapshot(
    path: PathBuf,
    mut extension: deno_core::Extension,
) -> CreateRuntimeSnapshotOutput {
    // Before deno_core initialises V8 (flags are read once, at initialisation).
    v8::V8::set_flags_from_string(V8_FLAGS);
    assert!(
        extension.global_object_middleware.is_none(),
        "the extension has a global object middleware of its own"
    );
    extension.global_object_middleware = Some(watch_realm_teardown);
    let output = create_runtime_snapshot(path, SnapshotOptions::default(), vec![extension]);
    KEEP_FREED.store(false, Ordering::SeqCst);
    output
}

/// Stores a [`RealmTeardown`] in the main context's slots.
fn watch_realm_teardown<'s>(scope: &mut v8::PinScope<'s, '_>, _global: v8::Local<'s, v8::Object>) {
    let context = scope.get_current_context();
    context.set_slot(Rc::new(RealmTeardown));
}

/// Dropped with the main context's slots when deno_core tears the realm down for the snapshot.
struct RealmTeardown;

impl Drop for RealmTeardown {
    fn drop(&mut self) {
        KEEP_FREED.store(true, Ordering::SeqCst);
    }
}

/// Set from the realm's teardown until the snapshot is made.
static KEEP_FREED: AtomicBool = AtomicBool::new(false);

/// The system allocator, except that while [`KEEP_FREED`] is set, freed memory is zeroed and
/// kept (leaked: about 8 MB, once) so that what V8 still reads from it is the same every time.
struct KeepFreed;

#[global_allocator]
static ALLOCATOR: KeepFreed = KeepFreed;

// SAFETY: allocation is System's; a block is given back to System or never reused.
unsafe impl GlobalAlloc for KeepFreed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if KEEP_FREED.load(Ordering::Relaxed) {
            // SAFETY: the block is ours, `layout.size()` bytes, and nobody else's from now on.
            unsafe { ptr.write_bytes(0, layout.size()) };
        } else {
            // SAFETY: the caller's contract is System's.
            unsafe { System.dealloc(ptr, layout) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !KEEP_FREED.load(Ordering::Relaxed) {
            // SAFETY: the caller's contract is System's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees that `new_size`, rounded up to `layout.align()`,
        // does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size` is not zero (the caller's contract).
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the bytes copied, and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// std's HashMap keys: `getrandom(2)` interposed (see the module documentation). Requests
/// with `GRND_INSECURE` (std asks for its HashMap keys that way; nothing wanting secure bytes
/// can) get fixed bytes; all others go to the kernel.
///
/// # Safety
///
/// `buf` is valid for writes of `len` bytes, as for `getrandom(2)`.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[no_mangle]
pub unsafe extern "C" fn getrandom(
    buf: *mut std::ffi::c_void,
    len: usize,
    flags: std::ffi::c_uint,
) -> isize {
    const GRND_INSECURE: std::ffi::c_uint = 0x0004;
    #[cfg(target_arch = "x86_64")]
    const SYS_GETRANDOM: std::ffi::c_long = 318;
    #[cfg(target_arch = "aarch64")]
    const SYS_GETRANDOM: std::ffi::c_long = 278;
    extern "C" {
        fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
    }
    if flags & GRND_INSECURE != 0 {
        // SAFETY: the caller's contract.
        unsafe { buf.cast::<u8>().write_bytes(0x5a, len) };
        return len as isize;
    }
    // SAFETY: the caller's contract is the system call's.
    unsafe { syscall(SYS_GETRANDOM, buf, len, flags) as isize }
}
