//! Telemetry of a [`ProcessPool`](super::ProcessPool): live counters and the
//! snapshot types of [`ProcessPool::stats`](super::ProcessPool::stats).

use std::time::Duration;

use crate::sync::atomic::AtomicU64;

/// Counters of a pool; see [`ProcessPool::stats`](super::ProcessPool::stats).
///
/// Shared with process-wide telemetry, which keeps summing them after the
/// pool is gone.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spawned: AtomicU64,
    pub(crate) respawns: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) calls_ok: AtomicU64,
    pub(crate) calls_failed: AtomicU64,
}

impl crate::telemetry::ProcessCounters for Counters {
    fn add_to(&self, pools: &mut crate::telemetry::ProcessPools) {
        use crate::sync::atomic::Ordering::Relaxed;
        pools.spawned += self.spawned.load(Relaxed);
        pools.respawns += self.respawns.load(Relaxed);
        pools.bytes_sent += self.bytes_sent.load(Relaxed);
        pools.bytes_received += self.bytes_received.load(Relaxed);
    }
}

/// What one child is doing; see [`WorkerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Accepting calls.
    Live,
    /// Finishing its last calls before it exits (`max_tasks_per_child`, shutdown).
    Retiring,
    /// Being terminated (cancellation, protocol error, pool drop).
    Terminating,
}

/// One child in a [`PoolStats`] snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The child's pid.
    pub pid: u32,
    /// What it is doing.
    pub state: WorkerState,
    /// Calls sent to it and not answered yet.
    pub in_flight: usize,
    /// Requests sent to it over its life.
    pub tasks_sent: u64,
    /// Requests it answered.
    pub completed: u64,
    /// Time since it was started.
    pub uptime: Duration,
}

/// A snapshot of a pool; see [`ProcessPool::stats`](super::ProcessPool::stats).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolStats {
    /// Every child not yet reaped, including retiring and terminating ones.
    pub workers: Vec<WorkerStats>,
    /// Children started over the pool's life.
    pub spawned: u64,
    /// Children started to replace others (after death, retirement, cancellation).
    pub respawns: u64,
    /// Bytes written to the children's stdin (frames, headers included).
    pub bytes_sent: u64,
    /// Bytes read from the children's stdout.
    pub bytes_received: u64,
    /// Calls answered with a response frame.
    pub calls_ok: u64,
    /// Calls that ended in an error (remote errors included, cancellations not).
    pub calls_failed: u64,
}
