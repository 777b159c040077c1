//! The connection driver: one tokio task per client connection that moves
//! bytes and time between the socket and the connection's
//! [`qnetd_core::session::Session`], and nothing else.
//!
//! The loop: hand the session's output to the socket; wait for whichever
//! comes first of the shutdown token, a delivery in the session's mailbox,
//! the socket becoming writable (while output is pending), bytes to read,
//! and the session's next deadline; feed that to the session with the
//! current time. Established work goes first (biased select: output and
//! input before timers), so a task that was starved past a deadline still
//! reads the heartbeat waiting in its socket before the timer can cut it.
//! After STARTTLS the same loop runs over the TLS stream.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_core::close::{CloseReason, IoOp, TlsFailureKind};
use qnetd_core::framing::FrameReader;
use qnetd_core::session::Session;
use qnetd_core::telemetry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tracing::debug;

use crate::ctx::ServerCtx;
use crate::shutdown::Shutdown;

/// Size of one read from the socket.
const READ_CHUNK: usize = 2048;
/// How long a closing connection may take to deliver its last replies and
/// to shut its socket down.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How a run of the loop over one stream ended.
enum Exit<S> {
    /// The session is closing (its reason is in the session).
    Closed,
    /// The client sent STARTTLS: everything before it was written; here is
    /// the plain stream back for the handshake.
    StartTls(S),
}

/// Serves one connection until it closes.
pub(crate) async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    ctx: Arc<ServerCtx>,
    shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(Arc::clone(&ctx.arbiter), addr, Instant::now());
    let mut frames = FrameReader::new(ctx.arbiter.settings.max_client_receive_size);
    debug!("connection accepted");
    if let Exit::StartTls(stream) = run(&mut session, &mut frames, stream, &shutdown).await {
        if let Some(tls_stream) =
            start_tls(&mut session, &mut frames, stream, &ctx, &shutdown).await
        {
            if let Exit::StartTls(_) = run(&mut session, &mut frames, tls_stream, &shutdown).await {
                session.close(CloseReason::StartTlsInsideTls);
            }
        }
    }
    session.finish(Instant::now());
}

/// Drives the session over `stream` until it closes or asks for TLS.
async fn run<S>(
    session: &mut Session,
    frames: &mut FrameReader,
    stream: S,
    shutdown: &Shutdown,
) -> Exit<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mailbox = Arc::clone(session.mailbox());
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut starting_tls = false;
    loop {
        if written == out.len() {
            out.clear();
            written = 0;
            session.poll_transmit(&mut out);
        }
        if let Some(reason) = session.poll_close() {
            // Server shutdown or lease end: nothing queued goes out (a
            // queued ACK must not outlive the lease).
            if !reason.server_going_down() {
                // Best effort: deliver what was queued before the close
                // (e.g. the error that explains it), without waiting on a
                // client that does not read.
                session.poll_transmit(&mut out);
                let _ = timeout(CLOSE_GRACE, write_flush(&mut wr, &out[written..])).await;
            }
            let _ = timeout(CLOSE_GRACE, wr.shutdown()).await;
            return Exit::Closed;
        }
        let pending = written < out.len();
        if starting_tls && !pending {
            if let Err(e) = wr.flush().await {
                session.close(io_error(IoOp::Write, &e));
                continue;
            }
            return Exit::StartTls(rd.unsplit(wr));
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            biased;
            _ = shutdown.triggered() => session.close(shutdown.close_reason()),
            _ = poll_fn(|cx| mailbox.poll_ready(cx)) => session.handle_mailbox(Instant::now()),
            w = wr.write(&out[written..]), if pending => match w {
                Ok(0) => session.close(CloseReason::Io {
                    op: IoOp::Write,
                    kind: std::io::ErrorKind::WriteZero,
                    detail: "the socket accepts no more bytes".into(),
                }),
                Ok(n) => {
                    written += n;
                    if written == out.len() {
                        if let Err(e) = wr.flush().await {
                            session.close(io_error(IoOp::Write, &e));
                        }
                    }
                }
                Err(e) => session.close(io_error(IoOp::Write, &e)),
            },
            r = rd.read(&mut buf), if !starting_tls => match r {
                Ok(0) => session.close(CloseReason::ClientClosed),
                Ok(n) => {
                    frames.push(&buf[..n]);
                    starting_tls = feed_frames(session, frames);
                    // A full buffer means more is waiting: after handling it,
                    // let other connections run first, so a client that
                    // streams data cannot hold a worker thread while a quiet
                    // client's heartbeat waits (cooperative fairness).
                    if n == buf.len() {
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => session.close(io_error(IoOp::Read, &e)),
            },
            _ = sleep_until(deadline.unwrap_or_else(far_future).into()), if deadline.is_some() => {
                session.handle_timeout(Instant::now());
            }
        }
    }
}

/// Feeds every complete frame to the session; stops early when the session
/// closes or asks for TLS (the bytes after STARTTLS are TLS records, left in
/// the framing buffer for the handshake). Returns whether TLS starts.
fn feed_frames(session: &mut Session, frames: &mut FrameReader) -> bool {
    while let Some(frame) = frames.next_frame() {
        let started = Instant::now();
        session.handle_frame(frame, started);
        if session.algorithm_ran() {
            metrics::histogram!(telemetry::DECISION_LATENCY)
                .record(started.elapsed().as_secs_f64());
        }
        if session.poll_start_tls() {
            return true;
        }
        if session.poll_close().is_some() {
            break;
        }
    }
    false
}

/// Runs the TLS server handshake on the socket, fed first with the bytes
/// already read after STARTTLS, within the session's deadlines.
async fn start_tls(
    session: &mut Session,
    frames: &mut FrameReader,
    stream: TcpStream,
    ctx: &ServerCtx,
    shutdown: &Shutdown,
) -> Option<crate::tls::TlsStream<TcpStream>> {
    let Some(tls) = ctx.tls.as_ref() else {
        session.close(CloseReason::TlsOff);
        return None;
    };
    let prefix = frames.take_buffered();
    let accept = tls.accept(prefix, stream);
    tokio::pin!(accept);
    let result = loop {
        // The handshake runs within the session's deadlines (its own limit,
        // never beyond the INIT deadline).
        let deadline = session.poll_timeout().unwrap_or_else(far_future);
        tokio::select! {
            r = &mut accept => break r,
            _ = sleep_until(deadline.into()) => {
                session.handle_timeout(Instant::now());
                if session.poll_close().is_some() {
                    count_handshake(Some(TlsFailureKind::Timeout));
                    return None;
                }
            }
            _ = shutdown.triggered() => {
                session.close(shutdown.close_reason());
                return None;
            }
        }
    };
    match result {
        Ok((stream, names)) => {
            count_handshake(None);
            debug!(client_certificate = ?names, "TLS established");
            session.handle_tls_established(names, Instant::now());
            Some(stream)
        }
        Err(failure) => {
            count_handshake(Some(failure.kind));
            session.close(CloseReason::TlsHandshake(failure));
            None
        }
    }
}

/// Counts a TLS handshake: `None` for success, else the failure's kind.
fn count_handshake(failure: Option<TlsFailureKind>) {
    let (result, reason) = match failure {
        None => ("ok", ""),
        Some(kind) => ("failed", kind.label()),
    };
    metrics::counter!(telemetry::TLS_HANDSHAKES, "result" => result, "reason" => reason)
        .increment(1);
}

fn io_error(op: IoOp, e: &std::io::Error) -> CloseReason {
    CloseReason::Io {
        op,
        kind: e.kind(),
        detail: e.to_string(),
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}
