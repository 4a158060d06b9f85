//! A request refused before its body was read (413 too large, 415 wrong type, a malformed
//! upload) must still have the rest of its body read. A socket closed with unread bytes is
//! reset by the kernel, and the reset can reach the client before the answer does: a browser
//! shows a network error, a script a broken pipe, instead of "larger than the limit". nginx
//! reads and discards for the same reason ("lingering close"); this middleware does it after
//! the handler, up to a bound, so the answer arrives and the connection stays usable. A client
//! that asked before sending (`Expect: 100-continue`, as curl does for large files) and was
//! never told to go on has sent nothing: it gets the answer at once, and nothing is read.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// Most bytes read and thrown away after a refusal. Past it, the connection is closed: the
/// client is sending far more than any photo, and may not see the answer.
const MOST_DISCARDED: usize = 64 * 1024 * 1024;

/// Runs the handler, then reads whatever it left of the request body.
pub async fn drain_unread_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let asks_first = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let too_long_to_read = declared_length(&parts.headers).is_some_and(|n| n > MOST_DISCARDED);
    let unread =
        Arc::new(Unread { body: Mutex::new(Some(body)), asked_for: AtomicBool::new(false) });
    let lent = Body::new(Lent(unread.clone()));
    let mut response = next.run(Request::from_parts(parts, lent)).await;
    let rest = unread.body.lock().expect("the body's lock is never poisoned").take();
    if let Some(rest) = rest {
        let nothing_sent = asks_first && !unread.asked_for.load(Ordering::Relaxed);
        if nothing_sent || too_long_to_read || !discard(rest, MOST_DISCARDED).await {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// The body length the client declared (`Content-Length`), when it did.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads `body` to its end, keeping nothing; false when it holds more than `most` bytes or
/// fails.
async fn discard(mut body: Body, most: usize) -> bool {
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return false };
        read += frame.data_ref().map_or(0, Bytes::len);
        if read > most {
            return false;
        }
    }
    true
}

/// The request body, kept by the middleware while the handler reads it.
struct Unread {
    body: Mutex<Option<Body>>,
    /// Whether the handler asked for the body (which tells a client that expects
    /// `100-continue` to send it).
    asked_for: AtomicBool,
}

/// The request body as the handler sees it: the body itself stays with the middleware, so
/// what the handler does not read is still there after it returns.
struct Lent(Arc<Unread>);

impl http_body::Body for Lent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.0.asked_for.store(true, Ordering::Relaxed);
        let mut body = self.0.body.lock().expect("the body's lock is never poisoned");
        match body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let body = self.0.body.lock().expect("the body's lock is never poisoned");
        body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let body = self.0.body.lock().expect("the body's lock is never poisoned");
        body.as_ref().map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn discarding_stops_past_the_bound() {
        assert!(discard(Body::from(vec![0u8; 10]), 10).await);
        assert!(!discard(Body::from(vec![0u8; 11]), 10).await);
        assert!(discard(Body::empty(), 0).await);
    }
}
