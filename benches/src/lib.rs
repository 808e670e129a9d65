//! Shared workloads for the benchmarks of VedaRT against tokio and smol.
