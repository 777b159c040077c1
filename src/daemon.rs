//! Daemon mode and the pid file lock.
//!
//! Started as `corosync-qnetd` without `-f` (as the OCF agent and SysV
//! scripts do), the server detaches like the reference, but so that a start
//! failure still reaches the caller's exit status: [`detach`] forks before
//! any thread exists; the parent waits on a pipe until the child reports
//! "ready" (client port, admin socket and metrics bound) or a start error
//! with its exit code, prints the error, and exits with that code. The child
//! starts a new session, puts stdin/stdout/stderr on `/dev/null` (so a
//! caller that captures the output, like `$(corosync-qnetd ...)`, does not
//! wait for the daemon) and logs to syslog ([`Syslog`]).
//!
//! The pid file ([`lock_pid_file`]) is locked with `fcntl(F_SETLK)`, the lock
//! the reference takes on the same file, so qnetd and corosync-qnetd exclude
//! each other.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The child's end of the start-up pipe: tell the waiting parent how the
/// start went. Dropping it unreported makes the parent exit with 1.
pub struct ReadyPipe(File);

impl ReadyPipe {
    /// The server is ready: the parent exits with 0.
    pub fn ready(mut self) {
        let _ = self.0.write_all(&[0]);
    }

    /// The start failed: the parent prints `message` and exits with `code`.
    pub fn failed(mut self, code: u8, message: &str) {
        let mut report = vec![code.max(1)];
        report.extend_from_slice(message.as_bytes());
        let _ = self.0.write_all(&report);
    }
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// Forks. In the parent this never returns: it waits for the child's
/// report and exits with the start status (`prog` prefixes its message). In
/// the child it returns the pipe to report on, after `setsid` and with the
/// standard streams on `/dev/null`.
///
/// Must be called while the process has a single thread (before the async
/// runtime starts).
pub fn detach(prog: &str) -> Result<ReadyPipe, String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os_error("cannot create the start-up pipe"));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: the caller guarantees a single-threaded process, so the child
    // may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(last_os_error("cannot fork the daemon")),
        0 => {
            drop(read_end);
            // SAFETY: plain system calls on the child's own state.
            unsafe { libc::setsid() };
            redirect_stdio()?;
            Ok(ReadyPipe(write_end))
        }
        child => {
            drop(write_end);
            std::process::exit(wait_for_child(read_end, child, prog))
        }
    }
}

/// The parent's side: reads the child's report and returns the exit code.
fn wait_for_child(mut pipe: File, child: libc::pid_t, prog: &str) -> i32 {
    let mut report = Vec::new();
    let _ = pipe.read_to_end(&mut report);
    match report.split_first() {
        Some((0, _)) => 0,
        Some((code, message)) => {
            eprintln!("{prog}: {}", String::from_utf8_lossy(message));
            i32::from(*code)
        }
        None => {
            // The child died before reporting: collect its status.
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let waited = unsafe { libc::waitpid(child, &mut status, 0) };
            let how = if waited == child && libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else if waited == child && libc::WIFEXITED(status) {
                format!("exit status {}", libc::WEXITSTATUS(status))
            } else {
                "status unknown".to_owned()
            };
            eprintln!(
                "{prog}: the daemon ended during start-up ({how}); see the system log, \
                 or run it in the foreground with -f to see why"
            );
            1
        }
    }
}

fn redirect_stdio() -> Result<(), String> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    for fd in 0..3 {
        // SAFETY: duplicating a valid descriptor onto the standard ones.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(last_os_error("cannot redirect the standard streams"));
        }
    }
    Ok(())
}

/// Takes the `fcntl` write lock of the whole pid file: `Ok(true)` when
/// taken, `Ok(false)` when another process holds it. The lock lasts as long
/// as the process keeps a descriptor of the file open (and closes none).
pub fn lock_pid_file(file: &File) -> io::Result<bool> {
    // SAFETY: an all-zero flock is a valid value; fields are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: valid descriptor and flock struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EACCES) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// A `tracing` writer that sends each log line to the local syslog socket
/// (`/dev/log`, facility daemon), as the reference logs. Lines are dropped
/// when no syslog daemon listens.
pub struct Syslog {
    ident: String,
    socket: Mutex<Option<UnixDatagram>>,
}

const SYSLOG_SOCKET: &str = "/dev/log";
const LOG_DAEMON: u8 = 3 << 3;

impl Syslog {
    /// Logs as `ident[PID]`.
    pub fn new(ident: &str) -> Syslog {
        Syslog {
            ident: ident.to_owned(),
            socket: Mutex::new(None),
        }
    }

    fn send(&self, severity: u8, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let msg = format!(
            "<{}>{}[{}]: {}",
            LOG_DAEMON + severity,
            self.ident,
            std::process::id(),
            text
        );
        let mut sock = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        // One reconnection attempt: syslog may have been restarted.
        for _ in 0..2 {
            if sock.is_none() {
                *sock = UnixDatagram::unbound()
                    .and_then(|s| s.connect(SYSLOG_SOCKET).map(|()| s))
                    .ok();
            }
            match sock.as_ref() {
                Some(s) if s.send(msg.as_bytes()).is_ok() => return,
                Some(_) => *sock = None,
                None => return,
            }
        }
    }
}

/// One log event being formatted; sent when dropped.
pub struct SyslogLine<'a> {
    log: &'a Syslog,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        self.log.send(self.severity, &self.buf);
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine {
            log: self,
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let severity = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        SyslogLine {
            log: self,
            severity,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn pid_file_lock_is_exclusive_between_processes() {
        let path = std::env::temp_dir().join(format!("qnetd-lock-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&path)
            .unwrap();
        assert!(lock_pid_file(&f).unwrap());
        // fcntl locks never conflict within one process, so a child process
        // asks; it only makes system calls (no allocation after fork).
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: fork in a test; the child makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: valid C string; the descriptor is owned by the File.
            let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_WRONLY) };
            let held = fd >= 0 && {
                let g = unsafe { File::from_raw_fd(fd) };
                matches!(lock_pid_file(&g), Ok(false))
            };
            // SAFETY: leave the forked test process at once.
            unsafe { libc::_exit(if held { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn syslog_lines_carry_priority_ident_and_pid() {
        let dir = std::env::temp_dir().join(format!("qnetd-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new("corosync-qnetd");
        *log.socket.lock().unwrap() = UnixDatagram::unbound()
            .and_then(|s| s.connect(&path).map(|()| s))
            .ok();
        {
            let mut w = log.make_writer();
            w.severity = 3;
            w.write_all(b"cannot bind\n").unwrap();
        }
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("<27>corosync-qnetd[{}]: cannot bind", std::process::id())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
