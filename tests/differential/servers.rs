//! The two servers under comparison: the Debian `corosync-qnetd` as a child
//! process (stopped by its PID, also on panic) and our server in-process.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use qnetd_core::config::{Settings, TlsMode};
use qnetd_server::Server;
use tokio::task::JoinHandle;

/// The reference binary: `$QNETD_REF_BIN`, else `corosync-qnetd` on the PATH,
/// else /usr/sbin or /usr/bin.
pub fn reference_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QNETD_REF_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .map(|d| d.join("corosync-qnetd"))
        .find(|p| p.is_file())
}

/// A running `corosync-qnetd -f -d -s off` with its files in `dir`.
pub struct RefServer {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    stopped: bool,
}

fn free_port() -> std::io::Result<u16> {
    // Small race (the port is free again until the reference binds it): a
    // failed start is retried with another port.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RefServer {
    pub fn start(bin: &Path, dir: &Path) -> Result<RefServer, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("corosync-qnetd.log");
        let mut last_err = String::new();
        for attempt in 1..=5 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            let settings = format!(
                "lock_file={},local_socket_file={}",
                dir.join("qnetd.pid").display(),
                dir.join("qnetd.sock").display()
            );
            let child = Command::new(bin)
                .args(["-f", "-d", "-s", "off", "-l", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .arg("-S")
                .arg(&settings)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
            let mut srv = RefServer {
                child,
                addr,
                log: log.clone(),
                stopped: false,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if !srv.alive() {
                    last_err = format!(
                        "corosync-qnetd exited at start (attempt {attempt}, port {port}); log:\n{}",
                        tail(&log, 10)
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(srv);
                }
                if Instant::now() > deadline {
                    srv.stop();
                    return Err(format!(
                        "corosync-qnetd did not accept connections on {addr} within 10 s; log:\n{}",
                        tail(&log, 10)
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            srv.stop();
        }
        Err(last_err)
    }

    /// "alive", or how the process ended ("died (signal 11)", "died (exit 1)").
    pub fn state(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(None) => "alive".into(),
            Ok(Some(st)) => match (st.signal(), st.code()) {
                (Some(sig), _) => format!("died (signal {sig})"),
                (None, Some(code)) => format!("died (exit {code})"),
                _ => "died".into(),
            },
            Err(e) => format!("unknown ({e})"),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to the PID we started, SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if !self.alive() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Log lines of our in-process servers (one per scenario, run one at a time).
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn our_log() -> &'static LogBuffer {
    static LOG: OnceLock<LogBuffer> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    })
}

impl LogBuffer {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn since(&self, offset: usize) -> String {
        let b = self.0.lock().unwrap();
        String::from_utf8_lossy(&b[offset.min(b.len())..]).into_owned()
    }
}

/// Our server, in-process on 127.0.0.1:0 with `-s off`.
pub struct OurServer {
    pub addr: SocketAddr,
    shutdown: qnetd_server::Shutdown,
    task: Option<JoinHandle<()>>,
}

impl OurServer {
    pub async fn start(dir: &Path) -> Result<OurServer, String> {
        our_log();
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let settings = Settings {
            tls: TlsMode::Off,
            listen_address: Some("127.0.0.1".into()),
            port: 0,
            lock_file: dir.join("qnetd.pid"),
            local_socket_file: dir.join("qnetd.sock"),
            // The reference remembers nothing across restarts; compare like
            // with like.
            state_dir: None,
            ..Settings::default()
        };
        let server = Server::bind(settings)
            .await
            .map_err(|e| format!("our server: {e}"))?;
        let addr = server.local_addr().map_err(|e| e.to_string())?;
        let shutdown = qnetd_server::Shutdown::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Ok(OurServer {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn alive(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
