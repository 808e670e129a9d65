//! The typed requests and answers of `vedart-serve-worker`, one definition for
//! the worker and for `tests/process_serve.rs` (which includes this file).

use serde::{Deserialize, Serialize};

/// The typed requests of the `sync` and `async` modes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Job {
    /// Answers the sum, or fails on overflow.
    Add(i64, i64),
    /// Answers the same bytes.
    Echo(Vec<u8>),
    /// Fails with this message.
    Fail(String),
    /// Panics with this message.
    Panic(String),
    /// Answers the worker's pid.
    Pid,
    /// Prints the text to stdout (which must not reach the protocol pipe) and
    /// answers its length.
    Print(String),
    /// Waits until this many `Rendezvous` jobs arrived in this worker (for up to
    /// 10 s), then answers how many did.
    Rendezvous(u32),
}

/// The answers to [`Job`]s.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Sum(i64),
    Bytes(Vec<u8>),
    Pid(u32),
    Len(u64),
    Arrived(u32),
}
