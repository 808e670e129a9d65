//! `DeterministicScheduler`: Python's deterministic mode (`veda.deterministic`,
//! `veda.replay`) driven by the runtime's deterministic scheduler.
//!
//! # Implementation
//!
//! Python's tasks (a pipeline's chunks, spawned callables) are synchronous
//! calls, and a task may wait for other tasks (a nested pipeline, a scope) in
//! the middle of its call. So a Python task cannot *be* a future polled by the
//! runtime: the wait would have to block inside a poll. Instead each Python
//! task has a **ticket**, a task of a runtime built with
//! [`vedart::Builder::new_deterministic`]`(seed)`, and the runtime's seeded
//! pick chooses which Python task runs next:
//!
//! 1. [`Core::submit`] spawns the ticket (its [`vedart::TaskId`] is the Python
//!    task's id) into a *queue*: a pipeline run's chunks, or a scope's spawns.
//! 2. When Python waits for a task, [`Core::drive`] repeats, until that task
//!    has run: the *candidates* are the oldest queued tickets of the awaited
//!    task's queue (at most [`WINDOW`]). Their tickets are woken, and the runtime's `block_on` runs its
//!    loop (a PCG32 pick among every runnable task, recorded in
//!    [`vedart::Runtime::schedule_trace`]) until a candidate's ticket is
//!    polled: that ticket completes, and its Python task runs (outside the
//!    runtime, so that it may wait for tasks in turn). A ticket polled while
//!    it is not a candidate (woken for an earlier wait, or spawned since)
//!    parks until a wait makes it one. Every step depends only on the seed
//!    and on what the program submitted, so the order does too.
//! 3. The task's seed for `random`/NumPy is [`task_seed`]`(seed, id)`; its
//!    dispatch is appended to the trace (task id, stage, executor, logical
//!    worker, logical time, index, and the number of candidates of the
//!    runtime's pick, from its schedule trace). A replay checks each dispatch
//!    against the recorded one.
//! 4. [`Core::drain`] runs the spawned tasks nobody waited for (candidates:
//!    the oldest queued spawns of every scope), when a `deterministic` block
//!    ends.
//!
//! Waits nested deeper than [`MAX_PICK_DEPTH`] make the awaited task the only
//! candidate, which bounds recursion when tasks wait for tasks that wait.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Poll, Waker};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rand_core::Rng;
use rand_pcg::Pcg32;
use vedart::{Builder, JoinHandle, Runtime};

use crate::errors::{VedaErrorKind, internal_panic};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, lock};

/// Nested waits deeper than this run the awaited task directly.
pub(crate) const MAX_PICK_DEPTH: usize = 32;

/// The most queued tasks a pick chooses among: the oldest of the awaited
/// task's queue (or of every scope's, at the end of a block). Tickets stay
/// runnable in the runtime after a pick, until its `block_on` future is
/// picked, so a pick costs about this many polls; a bounded window keeps it
/// constant however long the queue (16,000 spawns in one scope).
pub(crate) const WINDOW: usize = 64;

/// The seed of task `task` under `seed`: the first 64-bit output of the PCG32
/// stream `task` seeded with `seed` (`pcg32_srandom(seed, task)`).
pub(crate) fn task_seed(seed: u64, task: u64) -> u64 {
    Pcg32::new(seed, task).next_u64()
}

/// One dispatch of a deterministic run: what the trace records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dispatch {
    /// The task: its ticket's id in the runtime ([`vedart::TaskId`]).
    pub(crate) task: u64,
    /// What ran (a pipeline segment, `spawn(fn)`).
    pub(crate) stage: String,
    /// The executor the task was assigned.
    pub(crate) executor: String,
    /// The logical worker: `time % workers`.
    pub(crate) worker: u64,
    /// Logical time: the dispatch's position in the run.
    pub(crate) time: u64,
    /// The chunk's index in its pipeline, or the spawn's in its scope.
    pub(crate) index: u64,
    /// Candidates of the runtime's pick that chose the ticket.
    pub(crate) runnable: u64,
}

/// Why [`Core::drive`] or [`Core::drain`] stopped early.
#[derive(Debug)]
pub(crate) enum Stop<E> {
    /// A replay found the program doing something else than the trace.
    Replay(String),
    /// The awaited task is running: a task waits for itself or its caller.
    Cycle(u64),
    /// The task's own call failed.
    Task(E),
}

/// What tickets and the pick share.
#[derive(Default)]
struct Gate {
    /// The tickets that may complete now (sorted ids; at most [`WINDOW`]).
    candidates: Vec<u64>,
    /// The ticket that completed for the current pick.
    picked: Option<u64>,
    /// Wakers of tickets polled while not candidates.
    parked: HashMap<u64, Waker>,
    /// The pick's `block_on` future.
    main: Option<Waker>,
}

struct Ticket {
    queue: u64,
    stage: String,
    executor: String,
    index: u64,
    handle: JoinHandle<()>,
}

#[derive(Default)]
struct Queue {
    spawns: bool,
    /// Queued tickets (ids grow in submission order).
    tickets: BTreeSet<u64>,
}

#[derive(Default)]
struct State {
    /// Queued tasks.
    tickets: HashMap<u64, Ticket>,
    /// Tasks dispatched whose call has not returned.
    running: HashSet<u64>,
    /// Non-empty queues, by key (keys grow in creation order).
    queues: BTreeMap<u64, Queue>,
    /// Queued tasks of scopes' queues.
    queued_spawns: usize,
    clock: u64,
    depth: usize,
    trace: Option<Vec<Dispatch>>,
    /// The replayed trace's `(task, stage)` per dispatch.
    expected: Option<Vec<(u64, String)>>,
}

/// The scheduling state of one deterministic context.
pub(crate) struct Core {
    runtime: Runtime,
    seed: u64,
    workers: u64,
    gate: Arc<Mutex<Gate>>,
    state: Mutex<State>,
    next_queue: AtomicU64,
}

impl Core {
    /// A scheduler over a new deterministic runtime seeded with `seed`.
    pub(crate) fn new(
        seed: u64,
        workers: u64,
        record: bool,
        expected: Option<Vec<(u64, String)>>,
    ) -> std::io::Result<Core> {
        let runtime = Builder::new_deterministic(seed).build()?;
        Ok(Core {
            runtime,
            seed,
            workers: workers.max(1),
            gate: Arc::default(),
            state: Mutex::new(State {
                trace: (record || expected.is_some()).then(Vec::new),
                expected,
                ..State::default()
            }),
            next_queue: AtomicU64::new(1),
        })
    }

    /// A fresh queue key.
    pub(crate) fn new_queue(&self) -> u64 {
        self.next_queue.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a task in `queue` (`spawns`: a scope's queue, which
    /// [`Core::drain`] runs); returns its id.
    pub(crate) fn submit(
        &self,
        queue: u64,
        spawns: bool,
        stage: String,
        executor: String,
        index: u64,
    ) -> u64 {
        let gate = self.gate.clone();
        let own_id = Arc::new(AtomicU64::new(0));
        let id_cell = own_id.clone();
        let handle = self.runtime.spawn(poll_fn(move |cx| {
            let id = id_cell.load(Ordering::Relaxed);
            let mut gate = lock(&gate);
            if gate.picked.is_none() && gate.candidates.binary_search(&id).is_ok() {
                gate.picked = Some(id);
                let main = gate.main.take();
                drop(gate);
                if let Some(main) = main {
                    main.wake();
                }
                Poll::Ready(())
            } else {
                gate.parked.insert(id, cx.waker().clone());
                Poll::Pending
            }
        }));
        let id = handle.id().as_u64();
        // The ticket is first polled inside a later `block_on`, on this thread.
        own_id.store(id, Ordering::Relaxed);
        let mut state = lock(&self.state);
        let entry = state.queues.entry(queue).or_default();
        entry.spawns |= spawns;
        entry.tickets.insert(id);
        if spawns {
            state.queued_spawns += 1;
        }
        state.tickets.insert(
            id,
            Ticket {
                queue,
                stage,
                executor,
                index,
                handle,
            },
        );
        id
    }

    /// Whether `task` is queued (submitted, neither run nor cancelled).
    pub(crate) fn is_queued(&self, task: u64) -> bool {
        lock(&self.state).tickets.contains_key(&task)
    }

    /// The queued tasks of `queue`, in submission order.
    pub(crate) fn queued(&self, queue: u64) -> Vec<u64> {
        lock(&self.state)
            .queues
            .get(&queue)
            .map_or_else(Vec::new, |queue| queue.tickets.iter().copied().collect())
    }

    /// The queued tasks of every scope's queue.
    pub(crate) fn queued_spawns(&self) -> Vec<u64> {
        let state = lock(&self.state);
        state
            .queues
            .values()
            .filter(|queue| queue.spawns)
            .flat_map(|queue| queue.tickets.iter().copied())
            .collect()
    }

    /// Takes `task` out of the scheduler if it is queued; returns whether it was.
    pub(crate) fn cancel(&self, task: u64) -> bool {
        let Some(ticket) = self.unqueue(task) else {
            return false;
        };
        ticket.handle.abort();
        lock(&self.gate).parked.remove(&task);
        true
    }

    fn unqueue(&self, task: u64) -> Option<Ticket> {
        let mut state = lock(&self.state);
        let ticket = state.tickets.remove(&task)?;
        let mut spawns = false;
        if let Some(queue) = state.queues.get_mut(&ticket.queue) {
            queue.tickets.remove(&task);
            spawns = queue.spawns;
            if queue.tickets.is_empty() {
                state.queues.remove(&ticket.queue);
            }
        }
        if spawns {
            state.queued_spawns -= 1;
        }
        Some(ticket)
    }

    /// Runs tasks of `wanted`'s queue, each chosen by the runtime's seeded
    /// pick and run by `execute(task, task_seed)`, until `wanted` has run.
    pub(crate) fn drive<E>(
        &self,
        wanted: u64,
        execute: &mut dyn FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        loop {
            let candidates = {
                let state = lock(&self.state);
                let Some(ticket) = state.tickets.get(&wanted) else {
                    if state.running.contains(&wanted) {
                        return Err(Stop::Cycle(wanted));
                    }
                    return Ok(());
                };
                if state.depth > MAX_PICK_DEPTH {
                    vec![wanted]
                } else {
                    let queue = &state.queues[&ticket.queue];
                    queue.tickets.iter().take(WINDOW).copied().collect()
                }
            };
            self.dispatch(&candidates, execute)?;
        }
    }

    /// Runs every queued spawn, in seeded order (spawns they queue too).
    pub(crate) fn drain<E>(
        &self,
        execute: &mut dyn FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        loop {
            let candidates: Vec<u64> = {
                let state = lock(&self.state);
                if state.queued_spawns == 0 {
                    return Ok(());
                }
                let mut candidates: Vec<u64> = state
                    .queues
                    .values()
                    .filter(|queue| queue.spawns)
                    .flat_map(|queue| queue.tickets.iter().copied())
                    .take(WINDOW)
                    .collect();
                candidates.sort_unstable();
                candidates
            };
            self.dispatch(&candidates, execute)?;
        }
    }

    /// The ticket among `candidates` (queued, sorted, at most [`WINDOW`])
    /// that the runtime polls first, with the number of candidates of that
    /// poll.
    fn pick(&self, candidates: &[u64]) -> (u64, u64) {
        let wakers: Vec<Waker> = {
            let mut gate = lock(&self.gate);
            gate.candidates.clear();
            gate.candidates.extend_from_slice(candidates);
            gate.picked = None;
            candidates
                .iter()
                .filter_map(|id| gate.parked.remove(id))
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
        // Every eligible ticket is now runnable (never polled yet, woken
        // before and not polled since, or just woken), so the loop polls one
        // of them and this returns.
        let gate = &self.gate;
        let picked = self.runtime.block_on(poll_fn(|cx| {
            let mut gate = lock(gate);
            match gate.picked {
                Some(id) => Poll::Ready(id),
                None => {
                    gate.main = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }));
        {
            let mut gate = lock(&self.gate);
            gate.candidates.clear();
            gate.picked = None;
        }
        let runnable = self
            .runtime
            .handle()
            .take_schedule_trace()
            .iter()
            .rev()
            .find(|event| event.task.map(vedart::TaskId::as_u64) == Some(picked))
            .map_or(0, |event| event.runnable as u64);
        (picked, runnable)
    }

    fn dispatch<E>(
        &self,
        candidates: &[u64],
        execute: &mut dyn FnMut(u64, u64) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        let (task, runnable) = self.pick(candidates);
        {
            let mut state = lock(&self.state);
            let time = state.clock;
            let Some(ticket) = state.tickets.get(&task) else {
                unreachable!("a picked ticket is queued");
            };
            let event = Dispatch {
                task,
                stage: ticket.stage.clone(),
                executor: ticket.executor.clone(),
                worker: time % self.workers,
                time,
                index: ticket.index,
                runnable,
            };
            if let Some(expected) = &state.expected {
                check_replay(expected, &event)?;
            }
            if let Some(trace) = &mut state.trace {
                trace.push(event);
            }
            state.clock += 1;
            state.depth += 1;
            state.running.insert(task);
        }
        self.unqueue(task);
        let outcome = execute(task, task_seed(self.seed, task));
        let mut state = lock(&self.state);
        state.depth -= 1;
        state.running.remove(&task);
        outcome.map_err(Stop::Task)
    }

    /// Checks that a replay dispatched every recorded task.
    pub(crate) fn finish_replay(&self) -> Result<(), String> {
        let state = lock(&self.state);
        let Some(expected) = &state.expected else {
            return Ok(());
        };
        match expected.get(state.clock as usize) {
            None => Ok(()),
            Some((task, stage)) => Err(format!(
                "replay diverged: the program ran {} tasks, the trace has {} (next: task {task}, {stage})",
                state.clock,
                expected.len()
            )),
        }
    }

    /// The dispatches recorded so far.
    pub(crate) fn trace(&self) -> Vec<Dispatch> {
        lock(&self.state).trace.clone().unwrap_or_default()
    }
}

fn check_replay<E>(expected: &[(u64, String)], event: &Dispatch) -> Result<(), Stop<E>> {
    let Some((task, stage)) = expected.get(event.time as usize) else {
        return Err(Stop::Replay(format!(
            "replay diverged: the trace has {} tasks, the program runs more (task {}: {})",
            expected.len(),
            event.task,
            event.stage
        )));
    };
    if *task != event.task || *stage != event.stage {
        return Err(Stop::Replay(format!(
            "replay diverged at logical time {}: the trace ran task {task} as {stage:?}, \
             the program ran task {} as {:?}",
            event.time, event.task, event.stage
        )));
    }
    Ok(())
}

/// The scheduler of a `veda.deterministic` context (see the module docs).
#[pyclass(frozen, module = "vedart._vedart", name = "DeterministicScheduler")]
pub(crate) struct PyDeterministicScheduler {
    core: Core,
}

fn stop_error<'py>(py: Python<'py>, stop: Stop<PyErr>) -> PyErr {
    match stop {
        Stop::Replay(message) => VedaErrorKind::Replay.err(py, message),
        Stop::Cycle(task) => VedaErrorKind::Base.err(
            py,
            format!("deterministic task {task} waits for itself (it is running)"),
        ),
        Stop::Task(error) => error,
    }
}

/// `f` with panics turned into Python exceptions, so that none crosses into
/// Python as a `PanicException`.
fn guarded<T>(py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(internal_panic(py, &*payload)))
}

#[pymethods]
impl PyDeterministicScheduler {
    /// A scheduler seeded with `seed`, assigning `workers` logical workers;
    /// `record` keeps a trace; `replay` (`(task, stage)` pairs) checks each
    /// dispatch against a recorded trace.
    #[new]
    #[pyo3(signature = (seed, workers, record=false, replay=None))]
    fn new(
        seed: u64,
        workers: u64,
        record: bool,
        replay: Option<Vec<(u64, String)>>,
    ) -> PyResult<Self> {
        if workers == 0 {
            return Err(PyValueError::new_err("workers must be at least 1"));
        }
        let core = Core::new(seed, workers, record, replay)
            .map_err(|error| PyValueError::new_err(format!("no deterministic runtime: {error}")))?;
        Ok(PyDeterministicScheduler { core })
    }

    /// The seed.
    #[getter]
    fn seed(&self) -> u64 {
        self.core.seed
    }

    /// The number of logical workers.
    #[getter]
    fn workers(&self) -> u64 {
        self.core.workers
    }

    /// A fresh queue key.
    fn new_queue(&self) -> u64 {
        self.core.new_queue()
    }

    /// Queues a task; returns its id.
    fn submit(&self, queue: u64, spawns: bool, stage: String, executor: String, index: u64) -> u64 {
        self.core.submit(queue, spawns, stage, executor, index)
    }

    /// Whether `task` is still queued.
    fn is_queued(&self, task: u64) -> bool {
        self.core.is_queued(task)
    }

    /// The queued tasks of `queue`.
    fn queued(&self, queue: u64) -> Vec<u64> {
        self.core.queued(queue)
    }

    /// The queued tasks of every scope's queue.
    fn queued_spawns(&self) -> Vec<u64> {
        self.core.queued_spawns()
    }

    /// Unqueues `task`; whether it was queued.
    fn cancel(&self, task: u64) -> bool {
        self.core.cancel(task)
    }

    /// Runs tasks of `wanted`'s queue, `execute(task, seed)` each, until
    /// `wanted` has run.
    fn drive(&self, py: Python<'_>, wanted: u64, execute: &Bound<'_, PyAny>) -> PyResult<()> {
        guarded(py, || {
            let mut call = |task: u64, seed: u64| execute.call1((task, seed)).map(drop);
            self.core
                .drive(wanted, &mut call)
                .map_err(|stop| stop_error(py, stop))
        })
    }

    /// Runs every queued spawn, `execute(task, seed)` each.
    fn drain(&self, py: Python<'_>, execute: &Bound<'_, PyAny>) -> PyResult<()> {
        guarded(py, || {
            let mut call = |task: u64, seed: u64| execute.call1((task, seed)).map(drop);
            self.core
                .drain(&mut call)
                .map_err(|stop| stop_error(py, stop))
        })
    }

    /// Raises `ReplayError` if a replay ran fewer tasks than recorded.
    fn finish_replay(&self, py: Python<'_>) -> PyResult<()> {
        self.core
            .finish_replay()
            .map_err(|message| VedaErrorKind::Replay.err(py, message))
    }

    /// The recorded dispatches: `(task, stage, executor, worker, time, index,
    /// runnable)` tuples.
    #[allow(clippy::type_complexity)]
    fn trace(&self) -> Vec<(u64, String, String, u64, u64, u64, u64)> {
        self.core
            .trace()
            .into_iter()
            .map(|e| {
                (
                    e.task, e.stage, e.executor, e.worker, e.time, e.index, e.runnable,
                )
            })
            .collect()
    }
}

/// The seed of task `task` under `seed` (see the module docs).
#[pyfunction]
#[pyo3(name = "task_seed")]
pub(crate) fn py_task_seed(seed: u64, task: u64) -> u64 {
    task_seed(seed, task)
}

/// A node of [`native_scope_order`]'s graph: a task that opens a scope and
/// spawns its children there.
struct Node(Vec<Node>);

fn node_from(value: &Bound<'_, PyAny>) -> PyResult<Node> {
    let list = value
        .cast::<PyList>()
        .map_err(|_| PyValueError::new_err("a task graph is nested lists"))?;
    list.iter()
        .map(|child| node_from(&child))
        .collect::<PyResult<Vec<_>>>()
        .map(Node)
}

/// Runs the scope `children` as `vedart.scope()` does in deterministic mode:
/// each child queued, then each waited for in order.
fn run_scope(core: &Core, children: &[Node]) -> Result<(), Stop<()>> {
    let queue = core.new_queue();
    let ids: Vec<u64> = (0..children.len() as u64)
        .map(|index| {
            let stage = "spawn(run_node)".to_owned();
            core.submit(queue, true, stage, "thread".to_owned(), index)
        })
        .collect();
    let nodes: HashMap<u64, &Node> = ids.iter().copied().zip(children).collect();
    for &id in &ids {
        core.drive(id, &mut |task, _seed| {
            run_scope(core, &nodes[&task].0).map_err(|_| ())
        })?;
    }
    Ok(())
}

/// The order (task ids) in which the deterministic scheduler seeded with
/// `seed` runs the task graph `graph` natively, in Rust: `graph` is a scope's
/// children as nested lists, each child a task that opens a scope and spawns
/// its own children (`[[], [[], []]]`: two tasks, the second spawning two).
/// Python's `veda.deterministic(seed)` running the same graph with
/// `veda.scope()` gives the same order.
#[pyfunction]
pub(crate) fn native_scope_order(
    py: Python<'_>,
    seed: u64,
    graph: &Bound<'_, PyAny>,
) -> PyResult<Vec<u64>> {
    let root = node_from(graph)?;
    guarded(py, || {
        let core = Core::new(seed, 1, true, None)
            .map_err(|error| PyValueError::new_err(format!("no deterministic runtime: {error}")))?;
        run_scope(&core, &root.0)
            .map_err(|_| VedaErrorKind::Base.err(py, "the native task graph failed"))?;
        Ok(core.trace().into_iter().map(|event| event.task).collect())
    })
}

// Real runtimes: loom's types work only inside a model (loom-tests/).
#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    /// The order in which `core` runs `count` tasks of one queue, waited for in
    /// submission order (as a scope's end does).
    fn scope_order(core: &Core, count: u64) -> Vec<u64> {
        let queue = core.new_queue();
        let ids: Vec<u64> = (0..count)
            .map(|index| core.submit(queue, true, "spawn(f)".into(), "thread".into(), index))
            .collect();
        let mut order = Vec::new();
        for &id in &ids {
            core.drive(id, &mut |task, _seed| {
                order.push(task);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        order
    }

    #[test]
    fn the_seed_alone_decides_the_order() {
        let order = |seed| scope_order(&Core::new(seed, 4, false, None).unwrap(), 20);
        let first = order(1);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=20).collect::<Vec<_>>());
        assert_ne!(first, sorted, "a seeded order, not submission order");
        assert_eq!(order(1), first);
        assert!((2..6).any(|seed| order(seed) != first));
    }

    #[test]
    fn a_pick_stays_within_the_window() {
        let core = Core::new(3, 4, true, None).unwrap();
        let order = scope_order(&core, (WINDOW as u64) * 3);
        for (time, &task) in order.iter().enumerate() {
            // Task ids start at 1; at time t, only the WINDOW oldest queued
            // tasks, all among the first t + WINDOW submitted, are candidates.
            assert!(task <= (time + WINDOW) as u64, "task {task} at time {time}");
        }
        // The runtime's candidates: the window, and runnable tickets beyond it.
        assert!(core.trace().iter().all(|event| event.runnable >= 1));
    }

    #[test]
    fn task_seeds_follow_the_pcg32_reference() {
        // pcg32_srandom(42, 54): 0xa15c02b7, then 0x7b47f409.
        assert_eq!(task_seed(42, 54), 0x7b47_f409_a15c_02b7);
        assert_ne!(task_seed(1, 2), task_seed(1, 3));
    }

    #[test]
    fn a_replay_of_another_program_stops_at_the_first_difference() {
        let recorded = Core::new(9, 4, true, None).unwrap();
        scope_order(&recorded, 5);
        let expected: Vec<(u64, String)> = recorded
            .trace()
            .into_iter()
            .map(|event| (event.task, event.stage))
            .collect();
        let again = Core::new(9, 4, true, Some(expected.clone())).unwrap();
        scope_order(&again, 5);
        again.finish_replay().unwrap();
        let shorter = Core::new(9, 4, true, Some(expected)).unwrap();
        scope_order(&shorter, 0);
        assert!(shorter.finish_replay().unwrap_err().contains("diverged"));
    }

    #[test]
    fn a_cancelled_task_never_runs_and_drain_runs_the_rest() {
        let core = Core::new(5, 4, false, None).unwrap();
        let queue = core.new_queue();
        let ids: Vec<u64> = (0..4)
            .map(|index| core.submit(queue, true, "spawn(f)".into(), "thread".into(), index))
            .collect();
        assert!(core.cancel(ids[2]));
        assert!(!core.cancel(ids[2]));
        let mut ran = Vec::new();
        core.drain(&mut |task, _| {
            ran.push(task);
            Ok::<(), ()>(())
        })
        .unwrap();
        ran.sort_unstable();
        assert_eq!(ran, vec![ids[0], ids[1], ids[3]]);
        assert!(core.queued_spawns().is_empty());
    }
}
