//! The connection driver: one tokio task per client connection that moves
//! bytes and time between the socket and the connection's
//! [`qnetd_core::session::Session`] (and, after STARTTLS, its
//! [`TlsConn`]), and nothing else.
//!
//! The loop: hand the session's output to the socket; wait for whichever
//! comes first of a delivery in the session's mailbox (the shutdown comes
//! that way too, see [`Connections`]), the result of a TLS handshake step, the socket becoming writable (while
//! output is pending) or readable, and the session's next deadline; feed
//! that to the session with the current time. Established work goes first
//! (output and input before timers), so a task that was starved past a
//! deadline still reads the heartbeat waiting in its socket before the
//! timer can cut it.
//!
//! TLS: after STARTTLS the bytes from the socket go through the
//! connection's [`TlsConn`]. Its handshake steps run on the handshake
//! workers ([`crate::handshake`]); while one is queued or running the
//! session is told that the connection waits for the server
//! (`handle_server_wait`), so no client deadline runs, and the socket is
//! not read. Records of the established connection are encrypted and
//! decrypted here.
//!
//! Memory: an idle connection holds no buffer. Reads go into scratch space
//! on the worker thread's stack; the framing layer keeps only a partial
//! message; the output buffer is freed once written; the future itself is
//! kept small (see the size test below).

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use qnetd_core::close::{CloseReason, IoOp, TlsFailure, TlsFailureKind};
use qnetd_core::framing::FrameReader;
use qnetd_core::mailbox::Mailbox;
use qnetd_core::session::Session;
use qnetd_core::telemetry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Sleep};
use tracing::debug;

use crate::ctx::{Admitted, ServerCtx};
use crate::handshake::{Newcomer, PoolStopped, Priority, StepHandle};
use crate::tls::{HandshakeStep, TlsConn, TlsReadEnd};

/// Scratch space for one read from the socket (and then for the plaintext
/// of one TLS record): on the stack, only while reading.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing connection may take to deliver its last replies and
/// to shut its socket down.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// What a handshake step hands back: the connection's TLS (unless it could
/// not even be set up) and how the step ended.
type StepOutcome = (Option<Box<TlsConn>>, HandshakeStep);

/// Where the connection's TLS is.
enum Tls {
    /// Plain TCP (before STARTTLS, or for good).
    Off,
    /// Between STARTTLS and the end of the handshake: here between steps,
    /// `None` while a step is on a handshake worker.
    Handshake(Option<Box<TlsConn>>),
    /// Established.
    On(Box<TlsConn>),
}

/// What woke the connection.
enum Event {
    Mailbox,
    Step(Result<StepOutcome, PoolStopped>),
    Writable(io::Result<()>),
    Readable(io::Result<()>),
    Timeout,
}

/// One connection's state between events.
struct Conn {
    stream: TcpStream,
    session: Session,
    frames: FrameReader,
    tls: Tls,
    /// The handshake step on a worker, if one is.
    step: Option<StepHandle<StepOutcome>>,
    /// Bytes for the socket (ciphertext once TLS is on), and how many of
    /// them were written; freed once all are written.
    out: Vec<u8>,
    written: usize,
    /// The last read filled the scratch buffer: let the others run first.
    yield_next: bool,
    /// Counted by the accept loop's gate until TLS is established or INIT
    /// done (see `crate::handshake`).
    newcomer: Option<Newcomer>,
    ctx: Arc<ServerCtx>,
}

/// The live connections of one listener, so that a shutdown can close
/// them all: each registers its mailbox, and [`Connections::close_all`]
/// kicks every one with the shutdown's reason ([`CloseReason::ServerShutdown`],
/// or the end of a high-availability lease). Cheaper per
/// connection than a shutdown future each (a slot of 8 bytes).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    slots: Mutex<Slots>,
    /// Set by [`Connections::close_all`]: why every connection closes.
    closing: OnceLock<CloseReason>,
}

#[derive(Debug, Default)]
struct Slots {
    live: Vec<Option<Weak<Mailbox>>>,
    free: Vec<usize>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection's mailbox until the returned guard drops.
    fn register(self: &Arc<Self>, mailbox: &Arc<Mailbox>) -> Registration {
        let mut s = self.lock();
        let weak = Some(Arc::downgrade(mailbox));
        let slot = match s.free.pop() {
            Some(i) => {
                s.live[i] = weak;
                i
            }
            None => {
                s.live.push(weak);
                s.live.len() - 1
            }
        };
        Registration {
            set: Arc::clone(self),
            slot,
        }
    }

    /// Why every connection closes, once [`Connections::close_all`] was
    /// called.
    fn closing(&self) -> Option<&CloseReason> {
        self.closing.get()
    }

    /// Asks every connection, and every one registering from now on, to
    /// close for `reason` (the server's shutdown, or the lease's end).
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let reason = self.closing.get_or_init(|| reason).clone();
        let mailboxes: Vec<Arc<Mailbox>> = self
            .lock()
            .live
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect();
        for m in mailboxes {
            m.kick(reason.clone());
        }
    }
}

/// A connection's place in [`Connections`].
struct Registration {
    set: Arc<Connections>,
    slot: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut s = self.set.lock();
        s.live[self.slot] = None;
        s.free.push(self.slot);
    }
}

/// Serves one connection until it closes.
pub(crate) fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    ctx: Arc<ServerCtx>,
    connections: Arc<Connections>,
    admitted: Admitted,
) -> impl Future<Output = ()> + Send {
    // Everything is set up before the future is made, so that the future
    // holds each piece once (an async fn would keep its arguments too).
    let _ = stream.set_nodelay(true);
    debug!(%addr, "connection accepted");
    let mut session = Session::new(Arc::clone(&ctx.arbiter), addr, Instant::now());
    let registration = connections.register(session.mailbox());
    // Registered after the shutdown's sweep: close at once.
    if let Some(reason) = connections.closing() {
        session.close(reason.clone());
    }
    drop(connections);
    let frames = FrameReader::new(ctx.arbiter.settings.max_client_receive_size);
    let mut conn = Conn {
        stream,
        session,
        frames,
        tls: Tls::Off,
        step: None,
        out: Vec::new(),
        written: 0,
        yield_next: false,
        newcomer: Some(ctx.handshakes.newcomer()),
        ctx,
    };
    async move {
        let _registration = registration;
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        conn.run(sleep).await;
        conn.session.finish(Instant::now());
        // The connection's slots are freed once it left its cluster.
        drop(admitted);
    }
}

impl Conn {
    async fn run(&mut self, mut sleep: Pin<&mut Sleep>) {
        let mailbox = Arc::clone(self.session.mailbox());
        let mut armed: Option<Instant> = None;
        loop {
            if std::mem::take(&mut self.yield_next) {
                tokio::task::yield_now().await;
            }
            if self.newcomer.is_some()
                && (matches!(self.tls, Tls::On(_)) || self.session.node_id().is_some())
            {
                self.newcomer = None;
            }
            self.collect_output();
            if self.session.poll_close().is_some() {
                // Boxed: the closing steps' state would otherwise make
                // every connection's future larger for its whole life.
                Box::pin(self.close()).await;
                return;
            }
            if let Err(e) = self.try_flush() {
                self.session.close(io_error(IoOp::Write, &e));
                continue;
            }
            let deadline = self.session.poll_timeout();
            if deadline.is_some() && deadline != armed {
                if let Some(t) = deadline {
                    sleep.as_mut().reset(t.into());
                }
            }
            armed = deadline;
            let pending = self.written < self.out.len();
            let want_read = self.step.is_none() && !matches!(self.tls, Tls::Handshake(None));
            let event = poll_fn(|cx| {
                if mailbox.poll_ready(cx).is_ready() {
                    return Poll::Ready(Event::Mailbox);
                }
                if let Some(step) = self.step.as_mut() {
                    if let Poll::Ready(r) = Pin::new(step).poll(cx) {
                        return Poll::Ready(Event::Step(r));
                    }
                }
                if pending {
                    if let Poll::Ready(r) = self.stream.poll_write_ready(cx) {
                        return Poll::Ready(Event::Writable(r));
                    }
                }
                if want_read {
                    if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                        return Poll::Ready(Event::Readable(r));
                    }
                }
                if armed.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timeout);
                }
                Poll::Pending
            })
            .await;
            let now = Instant::now();
            match event {
                Event::Mailbox => self.session.handle_mailbox(now),
                Event::Step(r) => {
                    self.step = None;
                    self.session.handle_server_resume(now);
                    self.on_step(r, now);
                }
                Event::Writable(Err(e)) => self.session.close(io_error(IoOp::Write, &e)),
                // The loop writes at its top.
                Event::Writable(Ok(())) => {}
                Event::Readable(Err(e)) => self.session.close(io_error(IoOp::Read, &e)),
                Event::Readable(Ok(())) => self.on_readable(now),
                Event::Timeout => {
                    armed = None;
                    self.session.handle_timeout(now);
                    if matches!(self.tls, Tls::Handshake(_)) && self.session.poll_close().is_some()
                    {
                        count_handshake(Some(TlsFailureKind::Timeout));
                    }
                }
            }
        }
    }

    /// Moves the session's output into `out` (encrypted once TLS is on).
    /// During the TLS handshake the session's output waits: it is meant
    /// for the TLS connection.
    fn collect_output(&mut self) {
        match &mut self.tls {
            Tls::Off => {
                self.session.poll_transmit(&mut self.out);
            }
            Tls::Handshake(_) => {}
            Tls::On(tls) => {
                let mut plain = Vec::new();
                if self.session.poll_transmit(&mut plain) {
                    if let Err(e) = tls.write_plain(&plain) {
                        self.session.close(CloseReason::Io {
                            op: IoOp::Write,
                            kind: io::ErrorKind::InvalidData,
                            detail: e.to_string(),
                        });
                    }
                }
                if tls.has_output() {
                    tls.take_output(&mut self.out);
                }
            }
        }
    }

    /// Writes as much of `out` as the socket takes now; frees it once all
    /// is written.
    fn try_flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.stream.try_write(&self.out[self.written..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the socket accepts no more bytes",
                    ))
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out = Vec::new();
        self.written = 0;
        Ok(())
    }

    /// Reads what the socket has (one read) and hands it on.
    fn on_readable(&mut self, now: Instant) {
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return self.session.close(io_error(IoOp::Read, &e)),
        };
        if n == 0 {
            return self.on_eof();
        }
        // A full buffer means more is waiting: after handling it, let other
        // connections run first, so a client that streams data cannot hold
        // a worker thread while a quiet client's heartbeat waits.
        self.yield_next = n == buf.len();
        match &mut self.tls {
            Tls::Off => {
                self.frames.push(&buf[..n]);
                self.feed_frames();
            }
            Tls::Handshake(slot) => {
                if let Some(mut tls) = slot.take() {
                    tls.feed(&buf[..n]);
                    self.submit_step(Priority::Finish, move || {
                        let step = tls.handshake();
                        (Some(tls), step)
                    });
                    self.session.handle_server_wait(now);
                }
            }
            Tls::On(tls) => {
                tls.feed(&buf[..n]);
                self.read_tls(&mut buf);
            }
        }
    }

    /// Decrypts the records buffered in the TLS connection and feeds the
    /// messages to the session (`buf`: scratch space for one record).
    fn read_tls(&mut self, buf: &mut [u8]) {
        let Tls::On(tls) = &mut self.tls else {
            return;
        };
        let frames = &mut self.frames;
        let read = tls.read_plain(buf, |plain| frames.push(plain));
        self.feed_frames();
        match read {
            Ok(()) => {}
            Err(TlsReadEnd::Closed) => self.session.close(CloseReason::ClientClosed),
            Err(TlsReadEnd::Failed(e)) => self.session.close(CloseReason::Io {
                op: IoOp::Read,
                kind: io::ErrorKind::InvalidData,
                detail: e.to_string(),
            }),
        }
    }

    fn on_eof(&mut self) {
        if matches!(self.tls, Tls::Handshake(_)) {
            let failure = TlsFailure {
                kind: TlsFailureKind::ClientClosed,
                detail: "connection closed during the TLS handshake".into(),
            };
            count_handshake(Some(failure.kind));
            self.session.close(CloseReason::TlsHandshake(failure));
        } else {
            self.session.close(CloseReason::ClientClosed);
        }
    }

    /// Feeds every complete frame to the session; stops early when the
    /// session closes or asks for TLS (the bytes after STARTTLS are TLS
    /// records, left in the framing buffer for the handshake).
    fn feed_frames(&mut self) {
        while let Some(frame) = self.frames.next_frame() {
            let started = Instant::now();
            self.session.handle_frame(frame, started);
            if self.session.algorithm_ran() {
                metrics::histogram!(telemetry::DECISION_LATENCY)
                    .record(started.elapsed().as_secs_f64());
            }
            if self.session.poll_start_tls() {
                self.start_tls(started);
                return;
            }
            if self.session.poll_close().is_some() {
                return;
            }
        }
    }

    /// STARTTLS: what the session queued before it goes out in plain
    /// text; the first handshake step, with the bytes already read after
    /// STARTTLS, goes to the handshake workers.
    fn start_tls(&mut self, now: Instant) {
        let Some(tls) = self.ctx.tls.as_ref() else {
            return self.session.close(CloseReason::TlsOff);
        };
        self.session.poll_transmit(&mut self.out);
        let starter = tls.starter();
        let prefix = self.frames.take_buffered();
        self.tls = Tls::Handshake(None);
        self.submit_step(Priority::Start, move || match starter.start(prefix) {
            Ok(tls) => {
                let mut tls = Box::new(tls);
                let step = tls.handshake();
                (Some(tls), step)
            }
            Err(failure) => (None, HandshakeStep::Failed(failure)),
        });
        self.session.handle_server_wait(now);
    }

    fn submit_step(
        &mut self,
        priority: Priority,
        work: impl FnOnce() -> StepOutcome + Send + 'static,
    ) {
        self.step = Some(self.ctx.handshakes.run(priority, work));
    }

    /// A handshake step came back from a worker.
    fn on_step(&mut self, result: Result<StepOutcome, PoolStopped>, now: Instant) {
        let (tls, step) = match result {
            Ok(outcome) => outcome,
            Err(stopped) => (
                None,
                HandshakeStep::Failed(TlsFailure {
                    kind: TlsFailureKind::Other,
                    detail: stopped.to_string(),
                }),
            ),
        };
        let Some(mut tls) = tls else {
            if let HandshakeStep::Failed(failure) = step {
                count_handshake(Some(failure.kind));
                self.session.close(CloseReason::TlsHandshake(failure));
            }
            return;
        };
        // The server's flight (or an alert) goes out first.
        tls.take_output(&mut self.out);
        match step {
            HandshakeStep::NeedInput => self.tls = Tls::Handshake(Some(tls)),
            HandshakeStep::Done(names) => {
                count_handshake(None);
                // The handshake's transient memory is free now (trimmed
                // in batches by the accept loop's task).
                self.ctx.churn_since_trim.fetch_add(1, Ordering::Relaxed);
                debug!(addr = %self.session_addr(), client_certificate = ?names, "TLS established");
                self.tls = Tls::On(tls);
                self.session.handle_tls_established(names, now);
                // The client's first message may have come with its last
                // handshake records: no read event will announce it.
                self.read_tls(&mut [0u8; READ_CHUNK]);
            }
            HandshakeStep::Failed(failure) => {
                count_handshake(Some(failure.kind));
                self.tls = Tls::Handshake(Some(tls));
                self.session.close(CloseReason::TlsHandshake(failure));
            }
        }
    }

    fn session_addr(&self) -> String {
        self.stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// The session is closing: deliver what it queued (unless the server
    /// is going down), end TLS with close_notify, and shut the socket
    /// down, each within [`CLOSE_GRACE`].
    async fn close(&mut self) {
        let server_down = self
            .session
            .poll_close()
            .is_some_and(CloseReason::server_going_down);
        if server_down {
            // Nothing queued is meant to go out any more (after a lease
            // ended, a queued ACK must not outlive it).
            let mut dropped = Vec::new();
            self.session.poll_transmit(&mut dropped);
        } else {
            self.collect_output();
        }
        if let Tls::On(tls) = &mut self.tls {
            tls.close_notify();
            tls.take_output(&mut self.out);
        }
        if self.written < self.out.len() {
            let _ = timeout(CLOSE_GRACE, self.flush_all()).await;
        }
        let _ = timeout(CLOSE_GRACE, self.stream.shutdown()).await;
    }

    async fn flush_all(&mut self) -> io::Result<()> {
        loop {
            self.try_flush()?;
            if self.written >= self.out.len() {
                return Ok(());
            }
            self.stream.writable().await?;
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

fn io_error(op: IoOp, e: &io::Error) -> CloseReason {
    CloseReason::Io {
        op,
        kind: e.kind(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
