//! The local listener: accepts connections and serves the router over
//! HTTP/1.1 within limits that no local program can exhaust, with or without
//! credentials:
//! - a request's headers must arrive within [`Config::idle_timeout`], which
//!   is also how long a kept-alive connection may sit idle (hyper starts that
//!   clock whenever it waits for a request's head);
//! - headers are at most [`MAX_HEADER_BYTES`] (`431` past it), and a
//!   connection's read buffer at most [`READ_BUFFER_BYTES`], so memory per
//!   connection is bounded;
//! - at most [`Config::max_connections`] connections are open (fewer if the
//!   open-file limit is low). At the cap, the oldest connection with no
//!   request in progress is closed to make room, so idle or half-sent ones
//!   never lock out a tool that posts an event; only when every open one is
//!   busy is the newcomer answered `503` at once.
//!
//! [`Config::idle_timeout`]: crate::Config::idle_timeout
//! [`Config::max_connections`]: crate::Config::max_connections

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::sync::Locked;
use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Most bytes of a request's start line and headers.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most bytes a connection buffers while reading (headers or a body chunk).
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;
/// File descriptors kept free of connections: the database, the log, the
/// log files and outgoing deliveries need some too.
const FILES_KEPT: u64 = 256;
/// How long requests in progress may take to finish once the engine stops.
const DRAIN: Duration = Duration::from_secs(5);

/// The answer to a connection past the cap when every open one is busy.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 102\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections are busy; try again shortly\"}}";

/// Raises the soft limit on open files to the hard limit where the system
/// allows it, so a crowd of connections does not starve the database and
/// the log of descriptors. Returns the soft limit in force afterwards.
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) => {
            tracing::info!(from = soft, to = now, "raised the open-file limit");
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, "could not raise the open-file limit");
            Some(soft)
        }
    }
}

/// The connection cap in force: the configured one, or fewer when the
/// open-file limit leaves less room.
pub(crate) fn connection_cap(configured: usize) -> usize {
    let files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let room = usize::try_from(files.saturating_sub(FILES_KEPT)).unwrap_or(usize::MAX);
    configured.min(room.max(16))
}

/// One open connection.
struct Conn {
    /// Requests in progress, until their answer's body has been sent.
    busy: AtomicUsize,
    /// Cancelled to close it (to make room for a newer one).
    evict: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    open: Mutex<(u64, BTreeMap<u64, Arc<Conn>>)>,
}

impl Conns {
    /// A place for a new connection, closing the oldest idle one at the cap;
    /// `None` when every open connection is busy.
    fn admit(&self, cap: usize) -> Option<(u64, Arc<Conn>)> {
        let mut guard = self.open.locked();
        let (next, open) = &mut *guard;
        if open.len() >= cap {
            let idle = open
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(c) = open.remove(&idle) {
                c.evict.cancel();
            }
        }
        *next += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            evict: CancellationToken::new(),
        });
        open.insert(*next, conn.clone());
        Some((*next, conn))
    }

    fn closed(&self, id: u64) {
        let mut guard = self.open.locked();
        guard.1.remove(&id);
    }
}

/// What [`serve`] needs besides the router.
pub(crate) struct Serve {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// Accepts connections until `cancel`, then lets the requests in progress
/// finish (for at most [`DRAIN`]).
pub(crate) async fn serve(listener: TcpListener, app: Router, limits: Serve) {
    let cap = connection_cap(limits.max_connections);
    let conns = Arc::new(Conns::default());
    let mut last_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = limits.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: say so at most once a
                // second, and give the system a moment instead of spinning.
                if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    last_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match conns.admit(cap) {
            Some((id, conn)) => {
                let (app, conns) = (app.clone(), conns.clone());
                let (cancel, timeout) = (limits.cancel.clone(), limits.idle_timeout);
                limits.tasks.spawn(async move {
                    connection(stream, app, &conn, timeout, &cancel).await;
                    conns.closed(id);
                });
            }
            None => {
                tracing::warn!(cap, "every connection is busy; a new one was refused");
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// Serves one connection until it closes, is evicted, or the engine stops.
async fn connection(
    stream: TcpStream,
    app: Router,
    conn: &Arc<Conn>,
    idle_timeout: Duration,
    cancel: &CancellationToken,
) {
    let counted = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let busy = Busy::start(&counted);
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Guarded { body, _busy: busy }))
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(READ_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
    tokio::pin!(served);
    tokio::select! {
        done = served.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        }
        // Dropping the connection closes it.
        _ = conn.evict.cancelled() => tracing::debug!("an idle connection was closed to make room"),
        _ = cancel.cancelled() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, served).await;
        }
    }
}

/// Answers `503` without reading the request, then closes.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the connection
        // before it has read the answer.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The JSON error body for an answer hyper writes by itself, before any
/// handler runs (a request it cannot parse): by its status line.
fn hyper_error_body(status_line: &[u8]) -> Option<&'static str> {
    Some(match status_line {
        b"HTTP/1.1 400 Bad Request" => {
            r#"{"error":{"code":"bad_request","message":"the request is not valid HTTP/1.1"}}"#
        }
        b"HTTP/1.1 414 URI Too Long" => {
            r#"{"error":{"code":"uri_too_long","message":"the request target is too long"}}"#
        }
        b"HTTP/1.1 431 Request Header Fields Too Large" => {
            r#"{"error":{"code":"headers_too_large","message":"the request's headers are over 16 KiB or 100 fields"}}"#
        }
        _ => return None,
    })
}

/// The answer to write instead of `head`, when `head` is one of hyper's own
/// bodiless error answers (they are the only answers without a content type).
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(2).position(|w| w == b"\r\n")?;
    let body = hyper_error_body(&head[..end])?;
    let text = std::str::from_utf8(head).ok()?;
    let lower = text.to_ascii_lowercase();
    if !lower.ends_with("\r\n\r\n")
        || lower.contains("\r\ncontent-type:")
        || !lower.contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let head = text[..text.len() - 2]
        .replacen("content-length: 0\r\n", "", 1)
        .replacen("Content-Length: 0\r\n", "", 1);
    Some(
        format!(
            "{head}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The connection's socket, with hyper's own error answers (`400`, `414`,
/// `431` for requests it cannot parse, which it writes with no body) given
/// the JSON error body every other answer has.
struct JsonErrors {
    stream: TcpStream,
    /// A replacement being written: its bytes, how many are out, and how
    /// many bytes of hyper's it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl JsonErrors {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            replacing: None,
        }
    }

    /// Writes `buf`, or its replacement; reports `buf` written once all is.
    fn write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_none() {
            if !buf.starts_with(b"HTTP/1.1 4") {
                return Pin::new(&mut self.stream).poll_write(cx, buf);
            }
            match with_json_body(buf) {
                Some(bytes) => self.replacing = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut self.stream).poll_write(cx, buf),
            }
        }
        let Some((bytes, done, stands_for)) = &mut self.replacing else {
            return Poll::Ready(Ok(0));
        };
        while *done < bytes.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *done += n,
                other => return other,
            }
        }
        let n = *stands_for;
        self.replacing = None;
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_one(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // An error answer is a head alone; anything else goes out as it is.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if self.replacing.is_some() || first.starts_with(b"HTTP/1.1 4") => {
                let first: &[u8] = first;
                self.write_one(cx, first)
            }
            _ => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts a request in progress on its connection until dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress until it
/// has been sent (a live event stream stays busy while it is open).
struct Guarded {
    body: Body,
    _busy: Busy,
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

    #[test]
    fn the_busy_answer_is_one_json_error_of_its_declared_length() {
        let text = std::str::from_utf8(BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[test]
    fn hypers_own_error_answers_get_the_json_error_body_and_others_stay() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 19:39:01 GMT\r\n\r\n";
        let out = String::from_utf8(with_json_body(head).expect("replaced")).expect("utf-8");
        let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(!head.contains("content-length: 0"));
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"]["code"], "headers_too_large");
        // Our own answers (they have a content type) and other statuses stay.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(ours).is_none());
        let other = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(with_json_body(other).is_none());
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let conns = Conns::default();
        let (first, a) = conns.admit(2).expect("room");
        let (_, b) = conns.admit(2).expect("room");
        let busy = Busy::start(&a);
        // Full: the oldest idle one (b, as a is busy) is closed for the newcomer.
        let (_, c) = conns.admit(2).expect("room made");
        assert!(!a.evict.is_cancelled());
        assert!(b.evict.is_cancelled());
        // Full of busy connections: refused.
        let busy_c = Busy::start(&c);
        assert!(conns.admit(2).is_none());
        drop(busy);
        assert!(conns.admit(2).is_some(), "a is idle again");
        assert!(a.evict.is_cancelled());
        drop(busy_c);
        conns.closed(first);
    }
}
