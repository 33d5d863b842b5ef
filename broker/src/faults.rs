//! Link faults injected at this broker's transports, for tests that cut a broker off
//! without containers: isolation from peers and controllers (both directions), and a
//! delay on replication traffic (a slow follower or leader).
//!
//! The faults live in the transport, not in the services: [`FaultLayer`] is a tower
//! layer on the replication gRPC server (incoming) and on the channels of the
//! replication and controller clients (outgoing). While isolated, a call is refused, a
//! call in flight fails, an answer computed before the cut is not sent, and an open
//! stream breaks. Production never sets a fault; the layer then costs one atomic load
//! per call and one per body frame.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tokio::sync::watch;
use tonic::body::Body;
use tonic::Status;
use tower::{BoxError, Layer, Service};

/// The faults currently injected.
#[derive(Debug, Default)]
pub struct LinkFaults {
    isolated: AtomicBool,
    replication_delay_ms: AtomicU64,
    changed: watch::Sender<u64>,
}

impl LinkFaults {
    /// Cuts (or restores) every link to other brokers and to the controllers: outgoing
    /// calls fail, incoming replication requests are refused, open streams break.
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Whether this broker is cut off.
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }

    /// Delays every replication request this broker sends or serves by `delay`.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.replication_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The injected replication delay.
    pub fn replication_delay(&self) -> Duration {
        Duration::from_millis(self.replication_delay_ms.load(Ordering::SeqCst))
    }

    /// Changes whenever a fault is set or cleared.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Resolves once this broker is isolated (at once if it is).
    pub async fn isolated(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|_| self.is_isolated()).await;
    }
}

/// Puts a broker's [`LinkFaults`] on a gRPC transport (server or client side).
#[derive(Debug, Clone)]
pub struct FaultLayer {
    faults: Arc<LinkFaults>,
}

impl FaultLayer {
    /// A layer applying `faults`.
    pub fn new(faults: Arc<LinkFaults>) -> Self {
        FaultLayer { faults }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Faulted<S>;

    fn layer(&self, inner: S) -> Faulted<S> {
        Faulted {
            inner,
            faults: self.faults.clone(),
        }
    }
}

/// A gRPC transport (a channel, or a server's routes) with the faults applied.
#[derive(Debug, Clone)]
pub struct Faulted<S> {
    inner: S,
    faults: Arc<LinkFaults>,
}

/// What a call through an isolated link gets; `Unavailable`, so callers retry.
fn cut_off() -> Status {
    Status::unavailable("broker is isolated (injected fault)")
}

impl<S, B, RB> Service<http::Request<B>> for Faulted<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    RB: HttpBody<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    // A `Status`, not a boxed error: the generated clients' futures are only `Send` with
    // a concrete error type (and both tonic's server and client find a `Status` as is).
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Status::from_error(e.into()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service that was polled ready serves this call; a clone stays for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let faults = self.faults.clone();
        Box::pin(async move {
            let delay = faults.replication_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if faults.is_isolated() {
                return Err(cut_off());
            }
            let response = tokio::select! {
                response = inner.call(request) => response.map_err(|e| Status::from_error(e.into()))?,
                _ = faults.isolated() => return Err(cut_off()),
            };
            // An answer computed before the cut (a fetch that read a write made after
            // it) must not cross it.
            if faults.is_isolated() {
                return Err(cut_off());
            }
            Ok(response.map(|body| Body::new(CutBody::new(body, faults))))
        })
    }
}

/// A response body that breaks when the link is cut (an open stream, a long answer).
struct CutBody<B> {
    inner: Pin<Box<B>>,
    /// Resolves once the link is cut; `None` after it did (the body then ended in an
    /// error and yields nothing more).
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<B> CutBody<B> {
    fn new(inner: B, faults: Arc<LinkFaults>) -> Self {
        CutBody {
            inner: Box::pin(inner),
            cut: Some(Box::pin(async move { faults.isolated().await })),
        }
    }
}

impl<B> HttpBody for CutBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(cut) = self.cut.as_mut() else {
            return Poll::Ready(None);
        };
        if cut.as_mut().poll(cx).is_ready() {
            self.cut = None;
            return Poll::Ready(Some(Err(cut_off().into())));
        }
        self.inner.as_mut().poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::mpsc;
    use tower::{service_fn, ServiceExt};

    use super::*;

    /// A response body fed by a channel: a stream that stays open until the test ends it.
    struct Fed(mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn request() -> http::Request<()> {
        http::Request::new(())
    }

    fn answering(
        faults: &Arc<LinkFaults>,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<Body>,
        Error = Status,
        Future = impl Send,
    > + Clone {
        let answer = service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        FaultLayer::new(faults.clone()).layer(answer)
    }

    #[tokio::test]
    async fn healthy_links_pass_calls_through() {
        let faults = Arc::new(LinkFaults::default());
        let response = answering(&faults).oneshot(request()).await;
        assert!(response.is_ok());
    }

    #[tokio::test]
    async fn an_isolated_link_refuses_calls_with_unavailable() {
        let faults = Arc::new(LinkFaults::default());
        faults.set_isolated(true);
        let status = answering(&faults).oneshot(request()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        faults.set_isolated(false);
        assert!(answering(&faults).oneshot(request()).await.is_ok());
    }

    #[tokio::test]
    async fn a_call_in_flight_fails_when_the_link_is_cut() {
        let faults = Arc::new(LinkFaults::default());
        let never = service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        let call = tokio::spawn(
            FaultLayer::new(faults.clone())
                .layer(never)
                .oneshot(request()),
        );
        tokio::task::yield_now().await;
        faults.set_isolated(true);
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn an_answer_computed_across_the_cut_is_not_delivered() {
        let faults = Arc::new(LinkFaults::default());
        let cut_while_answering = {
            let faults = faults.clone();
            service_fn(move |_: http::Request<()>| {
                let faults = faults.clone();
                async move {
                    // The isolation lands while the answer is computed, without a yield
                    // the fault watch could win.
                    faults.set_isolated(true);
                    Ok::<_, Infallible>(http::Response::new(Body::empty()))
                }
            })
        };
        let layered = FaultLayer::new(faults.clone()).layer(cut_while_answering);
        let status = layered.oneshot(request()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn an_open_stream_breaks_when_the_link_is_cut() {
        let faults = Arc::new(LinkFaults::default());
        let (tx, rx) = mpsc::channel(4);
        let rx = Arc::new(parking_lot::Mutex::new(Some(rx)));
        let streaming = service_fn(move |_: http::Request<()>| {
            let body = Fed(rx.lock().take().expect("one call"));
            async move { Ok::<_, Infallible>(http::Response::new(body)) }
        });
        let response = FaultLayer::new(faults.clone())
            .layer(streaming)
            .oneshot(request())
            .await
            .unwrap();
        let mut body = Box::pin(response.into_body());
        tx.send(Bytes::from_static(b"first")).await.unwrap();
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert_eq!(
            frame.unwrap().unwrap().into_data().unwrap(),
            Bytes::from_static(b"first")
        );
        faults.set_isolated(true);
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap_err().code(), tonic::Code::Unavailable);
        // Data sent after the cut never arrives: the stream is over.
        let _ = tx.send(Bytes::from_static(b"after")).await;
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(frame.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_replication_delay_holds_each_call() {
        let faults = Arc::new(LinkFaults::default());
        faults.set_replication_delay(Duration::from_millis(300));
        let start = tokio::time::Instant::now();
        assert!(answering(&faults).oneshot(request()).await.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
