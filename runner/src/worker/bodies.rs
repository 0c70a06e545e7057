//! The host side of HTTP bodies crossing the isolate boundary: request bodies
//! flow in through a channel the HTTP layer fills, response bodies flow out
//! through a channel the HTTP layer drains. Each fetch gets two stream
//! numbers: `2n` for its request body, `2n + 1` for its response body.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use deno_core::futures::future::LocalBoxFuture;
use deno_core::futures::FutureExt;
use tokio::sync::mpsc;
use tokio::sync::Mutex;

use super::extension::BodyStreams;

/// A chunk of a response body, or why the body broke off.
pub type ResponseChunk = Result<Bytes, String>;

#[derive(Default)]
pub struct HostBodies {
    requests: RefCell<HashMap<u32, Rc<Mutex<mpsc::Receiver<Bytes>>>>>,
    responses: RefCell<HashMap<u32, mpsc::Sender<ResponseChunk>>>,
}

impl HostBodies {
    /// Registers the bodies of fetch number `n`; returns their stream numbers.
    pub fn open(
        &self,
        n: u32,
        request: mpsc::Receiver<Bytes>,
        response: mpsc::Sender<ResponseChunk>,
    ) -> (u32, u32) {
        let (request_stream, response_stream) =
            (n.wrapping_mul(2), n.wrapping_mul(2).wrapping_add(1));
        self.requests
            .borrow_mut()
            .insert(request_stream, Rc::new(Mutex::new(request)));
        self.responses
            .borrow_mut()
            .insert(response_stream, response);
        (request_stream, response_stream)
    }

    /// Forgets fetch `n`'s bodies, breaking off a response still open.
    pub fn abort(&self, n: u32, why: &str) {
        self.close(n.wrapping_mul(2).wrapping_add(1), Some(why.to_owned()));
    }
}

impl BodyStreams for HostBodies {
    fn read(&self, stream: u32) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        let reader = self.requests.borrow().get(&stream).cloned();
        async move {
            let Some(reader) = reader else {
                return Ok(None);
            };
            let chunk = reader.lock().await.recv().await;
            Ok(chunk.map(|bytes| bytes.to_vec()))
        }
        .boxed_local()
    }

    fn write(&self, stream: u32, chunk: Vec<u8>) -> LocalBoxFuture<'static, Result<(), String>> {
        let writer = self.responses.borrow().get(&stream).cloned();
        async move {
            let writer = writer.ok_or("the response body is already closed")?;
            writer
                .send(Ok(Bytes::from(chunk)))
                .await
                .map_err(|_| "the client went away".to_string())
        }
        .boxed_local()
    }

    fn close(&self, stream: u32, error: Option<String>) {
        if stream.is_multiple_of(2) {
            self.requests.borrow_mut().remove(&stream);
            return;
        }
        // A finished response also ends the request: nothing reads it any more.
        self.requests.borrow_mut().remove(&(stream - 1));
        if let Some(writer) = self.responses.borrow_mut().remove(&stream) {
            if let Some(error) = error {
                let _ = writer.try_send(Err(error));
            }
        }
    }
}

impl Drop for HostBodies {
    // The isolate is going away: responses still streaming break off.
    fn drop(&mut self) {
        for (_, writer) in self.responses.borrow_mut().drain() {
            let _ = writer.try_send(Err("the worker stopped".into()));
        }
    }
}

/// The host's bodies as the ops see them.
pub fn shared(bodies: &Rc<HostBodies>) -> Rc<dyn BodyStreams> {
    bodies.clone()
}
