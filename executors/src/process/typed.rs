//! Typed requests and answers over the pool, encoded with serde and
//! [postcard](https://docs.rs/postcard): [`ProcessPool::call_typed`] on the
//! parent's side, [`typed`] / [`typed_async`] wrapping a handler for
//! [`serve`](super::serve) / [`serve_async`](super::serve_async) on the
//! worker's side.
//!
//! The request payload is the postcard encoding of the request value, the
//! `Response` payload that of the answer; a handler's `Err(e)` travels as a
//! [`Failure`] of kind `Handler` whose detail is `e.to_string()`. Both sides must
//! agree on the types (postcard is not self-describing): build the worker and
//! the caller from the same definitions, typically one binary that is both
//! (see `runtime/examples/process_pool.rs`).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Call, CancelHandle, Context};
use super::error::ProcessError;
use super::pool::ProcessPool;
use super::serve::{AsyncHandler, Failure, FailureKind, Handler, Reply, Request};

impl ProcessPool {
    /// Sends `request`, encoded with postcard, to the least-loaded child and
    /// resolves to its answer decoded as `Resp`. The worker must serve the same
    /// types with [`typed`] or [`typed_async`]. Everything said of
    /// [`ProcessPool::call`] holds (pipelining, cancellation on drop, timeouts).
    ///
    /// The request is the postcard encoding of `request`, the answer that of
    /// the handler's value; a handler's `Err(e)` arrives as a `Handler` error
    /// with `e.to_string()`. Both sides must use the same types (postcard is
    /// not self-describing): build them from the same definitions, typically
    /// one binary that is both (`runtime/examples/process_pool.rs`).
    ///
    /// # Errors
    ///
    /// The future resolves to a [`TypedError`]: see [`TypedErrorKind`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde::{Deserialize, Serialize};
    /// use vedart_executors::process::{ProcessPool, serve, typed};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     if std::env::args().nth(1).as_deref() == Some("--worker") {
    ///         serve(typed(|add: Add| add.a.checked_add(add.b).ok_or("overflow")))?;
    ///         return Ok(());
    ///     }
    ///     let pool = ProcessPool::builder(std::env::current_exe()?).arg("--worker").build()?;
    ///     let sum: i64 = futures::executor::block_on(pool.call_typed(&Add { a: 2, b: 40 }))?;
    ///     assert_eq!(sum, 42);
    ///     Ok(())
    /// }
    /// ```
    pub fn call_typed<Req, Resp>(&self, request: &Req) -> TypedCall<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        TypedCall::new(encode(request).map(|bytes| self.call(bytes)))
    }

    /// Like [`ProcessPool::call_typed`], making sure the child has received
    /// `context` first (see [`ProcessPool::call_with`]); the handler finds it
    /// through [`Request::context`].
    ///
    /// # Panics
    ///
    /// Panics if `context` was created by another pool.
    pub fn call_typed_with<Req, Resp>(&self, context: &Context, request: &Req) -> TypedCall<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        TypedCall::new(encode(request).map(|bytes| self.call_with(context, bytes)))
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, TypedError> {
    postcard::to_stdvec(value).map_err(|err| TypedError::codec(TypedErrorKind::Encode, err))
}

/// A typed call: resolves to the answer decoded as `Resp`. Created by
/// [`ProcessPool::call_typed`]; a [`Call`] underneath, with its options.
#[must_use = "a call does nothing unless awaited, and dropping it cancels it"]
pub struct TypedCall<Resp> {
    call: Result<Call, Option<TypedError>>,
    answer: PhantomData<fn() -> Resp>,
}

impl<Resp> fmt::Debug for TypedCall<Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedCall")
            .field("call", &self.call)
            .finish()
    }
}

impl<Resp> TypedCall<Resp> {
    fn new(call: Result<Call, TypedError>) -> TypedCall<Resp> {
        TypedCall {
            call: call.map_err(Some),
            answer: PhantomData,
        }
    }

    fn map_call(mut self, f: impl FnOnce(Call) -> Call) -> TypedCall<Resp> {
        if let Ok(call) = self.call {
            self.call = Ok(f(call));
        }
        self
    }

    /// See [`Call::retries`].
    pub fn retries(self, retries: u32) -> TypedCall<Resp> {
        self.map_call(|call| call.retries(retries))
    }

    /// See [`Call::timeout`].
    pub fn timeout(self, timeout: Duration) -> TypedCall<Resp> {
        self.map_call(|call| call.timeout(timeout))
    }

    /// See [`Call::cancel_handle`]; `None` when the request did not encode
    /// (the call fails at once, there is nothing to cancel).
    pub fn cancel_handle(&self) -> Option<CancelHandle> {
        self.call.as_ref().ok().map(Call::cancel_handle)
    }
}

impl<Resp: DeserializeOwned> Future for TypedCall<Resp> {
    type Output = Result<Resp, TypedError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (`Call` is).
        let this = self.get_mut();
        let call = match &mut this.call {
            Ok(call) => call,
            Err(err) => {
                return Poll::Ready(Err(err
                    .take()
                    .expect("`TypedCall` polled after it completed")));
            }
        };
        Poll::Ready(match std::task::ready!(Pin::new(call).poll(cx)) {
            Ok(answer) => postcard::from_bytes(&answer)
                .map_err(|err| TypedError::codec(TypedErrorKind::Decode, err)),
            Err(err) => Err(TypedError::from_process(err)),
        })
    }
}

/// Why a typed call failed. See [`TypedError::kind`].
#[derive(Clone)]
pub struct TypedError {
    kind: TypedErrorKind,
    message: String,
    process: Option<ProcessError>,
}

/// The category of a [`TypedError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TypedErrorKind {
    /// The pool failed the call: the worker died, the call timed out or was
    /// cancelled, ... See [`TypedError::process_error`].
    Process,
    /// The handler returned an error; [`TypedError::message`] is its text.
    Handler,
    /// The handler panicked; [`TypedError::message`] is the panic message. The
    /// worker survived and serves the next calls.
    Panicked,
    /// The worker could not decode the request as its handler's type (the two
    /// sides disagree on the types), or the request was too large for it.
    BadRequest,
    /// The request did not encode (a serde `Serialize` impl failed).
    Encode,
    /// The answer did not decode as the expected type.
    Decode,
}

impl TypedError {
    fn codec(kind: TypedErrorKind, err: postcard::Error) -> TypedError {
        TypedError {
            kind,
            message: err.to_string(),
            process: None,
        }
    }

    fn from_process(err: ProcessError) -> TypedError {
        let Some(failure) = Failure::from_error(&err) else {
            return TypedError {
                kind: TypedErrorKind::Process,
                message: err.to_string(),
                process: Some(err),
            };
        };
        let kind = match failure.kind() {
            FailureKind::Handler => TypedErrorKind::Handler,
            FailureKind::Panicked => TypedErrorKind::Panicked,
            FailureKind::BadRequest => TypedErrorKind::BadRequest,
        };
        TypedError {
            kind,
            message: failure.message().into_owned(),
            process: Some(err),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> TypedErrorKind {
        self.kind
    }

    /// The handler's error text, the panic message, or what went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The pool's error underneath, for every kind but `Encode` and `Decode`
    /// (for `Handler`, `Panicked` and `BadRequest`, a `Remote` error whose
    /// pid says which worker answered).
    pub fn process_error(&self) -> Option<&ProcessError> {
        self.process.as_ref()
    }

    /// Whether the handler panicked.
    pub fn is_panic(&self) -> bool {
        self.kind == TypedErrorKind::Panicked
    }
}

impl fmt::Debug for TypedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for TypedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TypedErrorKind::Process => write!(f, "process pool call failed: {}", self.message),
            TypedErrorKind::Handler => write!(f, "the worker's handler failed: {}", self.message),
            TypedErrorKind::Panicked => {
                write!(f, "the worker's handler panicked: {}", self.message)
            }
            TypedErrorKind::BadRequest => {
                write!(f, "the worker rejected the request: {}", self.message)
            }
            TypedErrorKind::Encode => write!(f, "the request did not encode: {}", self.message),
            TypedErrorKind::Decode => write!(
                f,
                "the answer did not decode as the expected type: {}",
                self.message
            ),
        }
    }
}

impl std::error::Error for TypedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.kind {
            TypedErrorKind::Process => self
                .process
                .as_ref()
                .map(|err| err as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// Makes a handler of `Req` values answering `Resp` values into a [`Handler`]
/// for [`serve`](super::serve): requests are decoded from postcard (a request
/// that does not decode is answered with a `BadRequest` failure), answers
/// encoded, and an `Err(e)` becomes a `Handler` failure with `e.to_string()`.
///
/// # Examples
///
/// ```no_run
/// use vedart_executors::process::{serve, typed};
///
/// fn main() -> std::io::Result<()> {
///     serve(typed(|words: Vec<String>| Ok::<_, String>(words.join(" "))))
/// }
/// ```
pub fn typed<Req, Resp, E, F>(handler: F) -> Typed<F, Req>
where
    F: Fn(Req) -> Result<Resp, E>,
    Req: DeserializeOwned,
    Resp: Serialize,
    E: fmt::Display,
{
    Typed {
        handler,
        request: PhantomData,
    }
}

/// Like [`typed`], for an async handler served by
/// [`serve_async`](super::serve_async).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use vedart_executors::process::{serve_async, typed_async};
///
/// fn main() -> std::io::Result<()> {
///     futures::executor::block_on(serve_async(typed_async(|ms: u64| async move {
///         vedart_reactor::sleep(Duration::from_millis(ms)).await;
///         Ok::<_, String>(ms)
///     })))
/// }
/// ```
pub fn typed_async<Req, Resp, E, F, Fut>(handler: F) -> TypedAsync<F, Req>
where
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Result<Resp, E>>,
    Req: DeserializeOwned,
    Resp: Serialize,
    E: fmt::Display,
{
    TypedAsync {
        handler,
        request: PhantomData,
    }
}

/// A typed synchronous handler; see [`typed`].
pub struct Typed<F, Req> {
    handler: F,
    request: PhantomData<fn(Req)>,
}

/// A typed asynchronous handler; see [`typed_async`].
pub struct TypedAsync<F, Req> {
    handler: F,
    request: PhantomData<fn(Req)>,
}

impl<F, Req> fmt::Debug for Typed<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Typed")
            .field("request", &std::any::type_name::<Req>())
            .finish_non_exhaustive()
    }
}

impl<F, Req> fmt::Debug for TypedAsync<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedAsync")
            .field("request", &std::any::type_name::<Req>())
            .finish_non_exhaustive()
    }
}

fn decode_request<Req: DeserializeOwned>(request: &Request) -> Result<Req, Failure> {
    postcard::from_bytes(request.payload()).map_err(|err| {
        Failure::new(
            FailureKind::BadRequest,
            format!(
                "the request did not decode as {}: {err}",
                std::any::type_name::<Req>()
            ),
        )
    })
}

fn encode_reply<Resp: Serialize, E: fmt::Display>(result: Result<Resp, E>) -> Reply {
    match result {
        Ok(answer) => postcard::to_stdvec(&answer).map_err(|err| {
            Failure::new(
                FailureKind::Handler,
                format!("the answer did not encode: {err}"),
            )
        }),
        Err(err) => Err(Failure::new(FailureKind::Handler, err.to_string())),
    }
}

impl<Req, Resp, E, F> Handler for Typed<F, Req>
where
    F: Fn(Req) -> Result<Resp, E>,
    Req: DeserializeOwned,
    Resp: Serialize,
    E: fmt::Display,
{
    fn handle(&self, request: Request) -> Reply {
        encode_reply((self.handler)(decode_request(&request)?))
    }
}

impl<Req, Resp, E, F, Fut> AsyncHandler for TypedAsync<F, Req>
where
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Result<Resp, E>>,
    Req: DeserializeOwned,
    Resp: Serialize,
    E: fmt::Display,
{
    type Future = TypedReply<Fut>;

    fn handle(&self, request: Request) -> TypedReply<Fut> {
        TypedReply {
            state: match decode_request(&request) {
                Ok(value) => Ok(Box::pin((self.handler)(value))),
                Err(failure) => Err(Some(failure)),
            },
        }
    }
}

/// The answer future of a [`TypedAsync`] handler.
pub struct TypedReply<Fut> {
    /// The handler's future, or the failure to decode its request.
    state: Result<Pin<Box<Fut>>, Option<Failure>>,
}

impl<Fut> fmt::Debug for TypedReply<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedReply").finish_non_exhaustive()
    }
}

impl<Resp, E, Fut> Future for TypedReply<Fut>
where
    Fut: Future<Output = Result<Resp, E>>,
    Resp: Serialize,
    E: fmt::Display,
{
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Reply> {
        // Every field is Unpin (the handler's future is boxed).
        match &mut self.get_mut().state {
            Ok(future) => future.as_mut().poll(cx).map(encode_reply),
            Err(failure) => Poll::Ready(Err(failure
                .take()
                .expect("`TypedReply` polled after it completed"))),
        }
    }
}
