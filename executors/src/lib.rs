//! VedaRT's offload executors: where work that must not run on the async
//! workers goes. The runtime crate `vedart` re-exports all of it; this crate
//! depends only on the reactor, so it never sees a scheduler.
//!
//! # Implementation
//!
//! - [`blocking`]: a job pool for closures that block or burn CPU. Threads
//!   (`veda-blocking-{i}`) start lazily when a job finds no idle thread, up to
//!   `max_workers`; idle threads above the Little's-law target (arrival rate x
//!   mean service time) exit after a keep-alive. `vedart::spawn_blocking` wraps
//!   each closure in a task whose schedule function submits it here.
//! - [`process`]: a pool of warm child processes speaking length-prefixed
//!   frames over pipes (wire format in `process/README.md`). Each child's pipes
//!   are driven by one task on the reactor, with no thread per child; a child's
//!   death fails its calls and the child is replaced; cancelling a call
//!   terminates its child. Children are forked on one long-lived thread,
//!   `veda-process-spawn`, and exec at once. Without a runtime's spawner the
//!   driver tasks run on one background thread, `veda-process`.
//!   [`process::Command`] runs async children with piped stdio.
//! - [`gpu`]: CUDA through cudarc with dynamic loading, so the crate builds and
//!   runs where no CUDA is installed. Copies, launches and synchronisation
//!   return futures completed by a stream callback (`gpu/README.md`).
//! - [`telemetry`]: lock-free counters and histograms these pools (and the
//!   runtime's scheduler) report into.
#![deny(unsafe_op_in_unsafe_fn)]

/// Opens a doc example: run as a doctest, compiled only under `loom` (one
/// definition for the workspace, `vedart_reactor::__doc_example`).
macro_rules! example {
    () => {
        vedart_reactor::__doc_example!()
    };
}
// A path for inner (`//!`) docs, which textual macro scope does not reach.
pub(crate) use example;

// The process pool relies on Linux system calls (`pidfd_open` to watch a
// child's exit, `prctl(PR_SET_PDEATHSIG)` so that children die with their
// parent, `pipe2`); there is no fallback for other systems, and none is tested.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "vedart-executors supports Linux only (x86_64 and aarch64): its process pool \
     uses pidfd_open, prctl(PR_SET_PDEATHSIG) and pipe2, which other systems lack"
);

pub mod blocking;
pub mod gpu;
pub mod process;
mod sync;
pub mod telemetry;
