//! Whether a connection has a request in progress, and since when it has had none.
//!
//! [`Tracked`] wraps the router for one connection: a request counts from the moment its head
//! is parsed until its response body has been sent (or dropped), streamed bodies included.
//! [`Activity::idle_for`] resolves once the connection has had no request in progress for a
//! given time — from its start, so a client that connects and sends nothing (or half a head,
//! or half the HTTP/2 preface) is covered whatever the protocol turns out to be.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use http_body::SizeHint;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
struct State {
    in_progress: usize,
    idle_since: Instant,
}

/// One connection's requests in progress.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_progress: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request as in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InProgress {
        self.lock().in_progress += 1;
        InProgress(self.clone())
    }

    /// Requests in progress now.
    pub fn in_progress(&self) -> usize {
        self.lock().in_progress
    }

    /// Resolves once no request has been in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            // Registered before reading the state, so a change in between is not missed.
            let changed = self.changed.notified();
            let deadline = {
                let state = self.lock();
                (state.in_progress == 0).then(|| state.idle_since + limit)
            };
            match deadline {
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in progress; dropping it ends it.
#[derive(Debug)]
pub struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            state.in_progress = state.in_progress.saturating_sub(1);
            state.idle_since = Instant::now();
        }
        self.0.changed.notify_waiters();
    }
}

/// The router, counting each request of one connection in its [`Activity`].
#[derive(Clone)]
pub struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

impl Tracked {
    pub fn new(router: Router, activity: Arc<Activity>) -> Self {
        Self { router, activity }
    }
}

impl<B> tower_service::Service<Request<B>> for Tracked
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower_service::Service::<Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_progress = self.activity.begin();
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _in_progress: in_progress,
                })
            }))
        })
    }
}

/// A response body that keeps its request in progress until it is done or dropped.
struct Guarded {
    body: Body,
    _in_progress: InProgress,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_time_counts_from_the_end_of_the_last_request() {
        let activity = Activity::new();
        let limit = Duration::from_millis(200);
        let started = Instant::now();
        activity.idle_for(limit).await;
        assert!(started.elapsed() >= limit);

        let request = activity.begin();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(limit * 2).await;
        assert!(
            !waiting.is_finished(),
            "idle while a request was in progress"
        );
        let ended = Instant::now();
        drop(request);
        waiting.await.expect("the idle wait");
        assert!(
            ended.elapsed() >= limit,
            "idle before `limit` after the request"
        );
    }
}
