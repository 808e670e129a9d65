//! The three runtimes behind the [`Bench`](crate::Bench) trait.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::Map;

use crate::{Bench, Spawner, echo_loop, ping_loop};

/// Expects a task's result: a benchmark task never panics or gets cancelled.
fn expect_joined<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.expect("benchmark task failed")
}

/// VedaRT's multi-thread runtime.
#[derive(Debug)]
pub struct Veda {
    /// The runtime under test.
    pub rt: vedart::Runtime,
}

/// Spawns onto a VedaRT runtime.
#[derive(Debug, Clone)]
pub struct VedaSpawner(vedart::Handle);

impl Spawner for VedaSpawner {
    type Join<T: Send + 'static> =
        Map<vedart::JoinHandle<T>, fn(Result<T, vedart::JoinError>) -> T>;

    fn spawn<F>(&self, future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(future).map(expect_joined as fn(_) -> _)
    }
}

impl Bench for Veda {
    fn spawn_blocking_many(&self, count: usize) {
        let handle = self.rt.handle();
        self.rt.block_on(async move {
            let handles: Vec<_> = (0..count)
                .map(|i| handle.spawn_blocking(move || i))
                .collect();
            for handle in handles {
                handle.await.expect("blocking closure");
            }
        });
    }

    type Spawner = VedaSpawner;
    const NAME: &'static str = "vedart";

    fn new(workers: usize) -> Self {
        let rt = vedart::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
            .expect("vedart runtime");
        Veda { rt }
    }

    fn spawner(&self) -> VedaSpawner {
        VedaSpawner(self.rt.handle())
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        vedart::yield_now()
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
        vedart::time::sleep(duration)
    }

    fn tcp_echo(&self, connections: usize, round_trips: usize) -> Duration {
        let handle = self.rt.handle();
        self.rt.block_on(async move {
            let listener = vedart::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let server = handle.spawn(async move {
                for _ in 0..connections {
                    let (stream, _) = listener.accept().await.expect("accept");
                    stream.set_nodelay(true).expect("nodelay");
                    drop(vedart::spawn(echo_loop(stream)));
                }
            });
            let start = Instant::now();
            let clients: Vec<_> = (0..connections)
                .map(|_| {
                    handle.spawn(async move {
                        let stream = vedart::net::TcpStream::connect(addr)
                            .await
                            .expect("connect");
                        stream.set_nodelay(true).expect("nodelay");
                        ping_loop(stream, round_trips).await;
                    })
                })
                .collect();
            for client in clients {
                client.await.expect("client");
            }
            let elapsed = start.elapsed();
            server.await.expect("server");
            elapsed
        })
    }
}

/// tokio's multi-thread runtime.
#[derive(Debug)]
pub struct Tokio {
    rt: tokio::runtime::Runtime,
}

/// Spawns onto a tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioSpawner(tokio::runtime::Handle);

impl Spawner for TokioSpawner {
    type Join<T: Send + 'static> =
        Map<tokio::task::JoinHandle<T>, fn(Result<T, tokio::task::JoinError>) -> T>;

    fn spawn<F>(&self, future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(future).map(expect_joined as fn(_) -> _)
    }
}

impl Bench for Tokio {
    fn spawn_blocking_many(&self, count: usize) {
        let handle = self.rt.handle().clone();
        self.rt.block_on(async move {
            let handles: Vec<_> = (0..count)
                .map(|i| handle.spawn_blocking(move || i))
                .collect();
            for handle in handles {
                handle.await.expect("blocking closure");
            }
        });
    }

    type Spawner = TokioSpawner;
    const NAME: &'static str = "tokio";

    fn new(workers: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Tokio { rt }
    }

    fn spawner(&self) -> TokioSpawner {
        TokioSpawner(self.rt.handle().clone())
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }

    fn tcp_echo(&self, connections: usize, round_trips: usize) -> Duration {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let server = tokio::spawn(async move {
                for _ in 0..connections {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    stream.set_nodelay(true).expect("nodelay");
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while stream.read_exact(&mut buf).await.is_ok() {
                            stream.write_all(&buf).await.expect("echo write");
                        }
                    });
                }
            });
            let start = Instant::now();
            let clients: Vec<_> = (0..connections)
                .map(|_| {
                    tokio::spawn(async move {
                        let mut stream =
                            tokio::net::TcpStream::connect(addr).await.expect("connect");
                        stream.set_nodelay(true).expect("nodelay");
                        let message = [7u8; 64];
                        let mut buf = [0u8; 64];
                        for _ in 0..round_trips {
                            stream.write_all(&message).await.expect("client write");
                            stream.read_exact(&mut buf).await.expect("client read");
                        }
                    })
                })
                .collect();
            for client in clients {
                client.await.expect("client");
            }
            let elapsed = start.elapsed();
            server.await.expect("server");
            elapsed
        })
    }
}

/// smol's multi-thread executor: one `Executor` run by `workers` threads.
#[derive(Debug)]
pub struct Smol {
    executor: Arc<smol::Executor<'static>>,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<ThreadHandle<()>>,
}

/// Spawns onto a smol executor.
#[derive(Debug, Clone)]
pub struct SmolSpawner(Arc<smol::Executor<'static>>);

/// A smol task that detaches instead of cancelling when dropped, like the other runtimes' handles.
#[derive(Debug)]
pub struct DetachOnDrop<T>(Option<smol::Task<T>>);

impl<T> Future for DetachOnDrop<T> {
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        let task = self.0.as_mut().expect("polled after completion");
        let output = std::task::ready!(task.poll_unpin(cx));
        self.0 = None;
        std::task::Poll::Ready(output)
    }
}

impl<T> Drop for DetachOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.detach();
        }
    }
}

impl Spawner for SmolSpawner {
    type Join<T: Send + 'static> = DetachOnDrop<T>;

    fn spawn<F>(&self, future: F) -> DetachOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        DetachOnDrop(Some(self.0.spawn(future)))
    }
}

impl Bench for Smol {
    fn spawn_blocking_many(&self, count: usize) {
        smol::block_on(async move {
            let handles: Vec<_> = (0..count).map(|i| smol::unblock(move || i)).collect();
            for handle in handles {
                handle.await;
            }
        });
    }

    type Spawner = SmolSpawner;
    const NAME: &'static str = "smol";

    fn new(workers: usize) -> Self {
        let executor = Arc::new(smol::Executor::new());
        let (stop, stopped) = smol::channel::unbounded::<()>();
        let threads = (0..workers)
            .map(|i| {
                let executor = executor.clone();
                let stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("smol-worker-{i}"))
                    .spawn(move || {
                        let _ = smol::block_on(executor.run(stopped.recv()));
                    })
                    .expect("smol worker thread")
            })
            .collect();
        Smol {
            executor,
            stop: Some(stop),
            threads,
        }
    }

    fn spawner(&self) -> SmolSpawner {
        SmolSpawner(self.executor.clone())
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        smol::future::yield_now()
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
        smol::Timer::after(duration).map(drop)
    }

    fn tcp_echo(&self, connections: usize, round_trips: usize) -> Duration {
        let spawner = self.spawner();
        smol::block_on(async move {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let inner = spawner.clone();
            let server = spawner.spawn(async move {
                for _ in 0..connections {
                    let (stream, _) = listener.accept().await.expect("accept");
                    stream.set_nodelay(true).expect("nodelay");
                    drop(inner.spawn(echo_loop(stream)));
                }
            });
            let start = Instant::now();
            let clients: Vec<_> = (0..connections)
                .map(|_| {
                    spawner.spawn(async move {
                        let stream = smol::net::TcpStream::connect(addr).await.expect("connect");
                        stream.set_nodelay(true).expect("nodelay");
                        ping_loop(stream, round_trips).await;
                    })
                })
                .collect();
            for client in clients {
                client.await;
            }
            let elapsed = start.elapsed();
            server.await;
            elapsed
        })
    }
}

impl Drop for Smol {
    fn drop(&mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
