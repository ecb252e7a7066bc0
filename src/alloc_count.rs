//! A counting global allocator, so that tests and `dermcam bench` can prove how many heap
//! allocations each part of the frame path makes.
//!
//! Allocations are counted per [`Bucket`]: dermcam's own code (the default), tract's
//! inference, and the MJPEG decoder. A thread moves its allocations into another bucket for
//! the duration of a closure with [`scope`]. The binary and the tests install
//! [`CountingAlloc`] as `#[global_allocator]`; when it is not installed every count stays 0
//! and [`is_installed`] says so.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Who an allocation is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Bucket {
    /// dermcam's own code: must stay at zero per frame after warm-up.
    Dermcam = 0,
    /// tract's `SimpleState::run` (allocates its output tensors per run).
    Tract = 1,
    /// The MJPEG decoder (`zune-jpeg`).
    Decoder = 2,
    /// Output off the frame path: PNG encoding, file writes, logging, status.
    Output = 3,
}

const BUCKETS: usize = 4;

static COUNTS: [AtomicU64; BUCKETS] = [const { AtomicU64::new(0) }; BUCKETS];
static BYTES: [AtomicU64; BUCKETS] = [const { AtomicU64::new(0) }; BUCKETS];
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Allocations (and bytes) charged to [`Bucket::Dermcam`] by threads inside [`frame_path`].
static FRAME_PATH: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(0) };
    static THREAD_DERMCAM: Cell<u64> = const { Cell::new(0) };
    static ON_FRAME_PATH: Cell<bool> = const { Cell::new(false) };
}

/// The counting allocator: forwards to the system allocator and counts allocations
/// (`alloc`, `alloc_zeroed` and `realloc`) in the calling thread's current bucket.
pub struct CountingAlloc;

#[inline]
fn record(size: usize) {
    INSTALLED.store(true, Ordering::Relaxed);
    // `try_with` never allocates (const-initialised, no destructor) and fails only while the
    // thread is being torn down, when we charge dermcam.
    let bucket = CURRENT.try_with(Cell::get).unwrap_or(0) as usize;
    if bucket == Bucket::Dermcam as usize {
        let _ = THREAD_DERMCAM.try_with(|c| c.set(c.get() + 1));
        if ON_FRAME_PATH.try_with(Cell::get).unwrap_or(false) {
            FRAME_PATH[0].fetch_add(1, Ordering::Relaxed);
            FRAME_PATH[1].fetch_add(size as u64, Ordering::Relaxed);
        }
    }
    COUNTS[bucket].fetch_add(1, Ordering::Relaxed);
    BYTES[bucket].fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc` contract; the
// bookkeeping only touches atomics and a const thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same layout the caller gave us, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr`/`layout` come from `System`, as the contract requires.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` with this thread's allocations charged to `bucket`, then restores the previous one.
pub fn scope<R>(bucket: Bucket, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.replace(bucket as u8));
    let out = f();
    CURRENT.with(|c| c.set(previous));
    out
}

/// Runs `f` as part of the frame path (the pipeline's capture, inference and compose
/// threads): its [`Bucket::Dermcam`] allocations are also counted in
/// [`Counts::frame_path`], which other threads of the process (a test harness reporting
/// another test, the status thread) cannot touch.
pub fn frame_path<R>(f: impl FnOnce() -> R) -> R {
    let previous = ON_FRAME_PATH.with(|c| c.replace(true));
    let out = f();
    ON_FRAME_PATH.with(|c| c.set(previous));
    out
}

/// A snapshot of all counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Allocations per bucket, indexed by `Bucket as usize`.
    pub allocations: [u64; BUCKETS],
    /// Bytes requested per bucket.
    pub bytes: [u64; BUCKETS],
    /// [`Bucket::Dermcam`] allocations made inside [`frame_path`].
    pub frame_path: u64,
    /// Bytes of those.
    pub frame_path_bytes: u64,
}

impl Counts {
    /// Allocations charged to `bucket`.
    pub fn get(&self, bucket: Bucket) -> u64 {
        self.allocations[bucket as usize]
    }
    /// The counts accumulated since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut d = Counts::default();
        for i in 0..BUCKETS {
            d.allocations[i] = self.allocations[i].wrapping_sub(earlier.allocations[i]);
            d.bytes[i] = self.bytes[i].wrapping_sub(earlier.bytes[i]);
        }
        d.frame_path = self.frame_path.wrapping_sub(earlier.frame_path);
        d.frame_path_bytes = self.frame_path_bytes.wrapping_sub(earlier.frame_path_bytes);
        d
    }
}

/// Reads all counters.
pub fn snapshot() -> Counts {
    let mut c = Counts::default();
    for i in 0..BUCKETS {
        c.allocations[i] = COUNTS[i].load(Ordering::Relaxed);
        c.bytes[i] = BYTES[i].load(Ordering::Relaxed);
    }
    c.frame_path = FRAME_PATH[0].load(Ordering::Relaxed);
    c.frame_path_bytes = FRAME_PATH[1].load(Ordering::Relaxed);
    c
}

/// Allocations charged to [`Bucket::Dermcam`] by the calling thread only (immune to other
/// threads of the process, such as a test harness printing progress).
pub fn thread_dermcam_allocations() -> u64 {
    THREAD_DERMCAM.try_with(Cell::get).unwrap_or(0)
}

/// Whether [`CountingAlloc`] is the global allocator of this process (it has seen an
/// allocation).
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}
