//! The process side of the bench: raising RLIMIT_NOFILE, starting the
//! server under test from a command line (`--spawn`), waiting until it
//! accepts connections, and stopping it by its PID (for `reconnect`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::BenchError;

/// Raises the open-files limit (see [`qnetd_core::sys::raise_nofile_limit`]).
pub fn raise_nofile(want: u64) -> u64 {
    qnetd_core::sys::raise_nofile_limit(Some(want))
}

/// A server started by the bench (`sh -c 'exec CMD'`).
pub struct Spawned {
    cmd: String,
    log: Option<PathBuf>,
    child: Option<Child>,
}

impl Spawned {
    pub fn new(cmd: &str, log: Option<PathBuf>) -> Spawned {
        Spawned {
            cmd: cmd.to_owned(),
            log,
            child: None,
        }
    }

    pub fn start(&mut self) -> Result<u32, BenchError> {
        let (out, err) = match &self.log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| BenchError::ServerLog {
                        path: p.clone(),
                        source,
                    })?;
                let g = f.try_clone().map_err(|source| BenchError::ServerLog {
                    path: p.clone(),
                    source,
                })?;
                (Stdio::from(f), Stdio::from(g))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {}", self.cmd))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| BenchError::ServerStart {
                cmd: self.cmd.clone(),
                source,
            })?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// "running", or how it ended.
    pub fn state(&mut self) -> String {
        match self.child.as_mut().map(|c| c.try_wait()) {
            None => "not started".into(),
            Some(Ok(None)) => "running".into(),
            Some(Ok(Some(st))) => format!("exited ({st})"),
            Some(Err(e)) => format!("unknown ({e})"),
        }
    }

    /// Waits until the server accepts a TCP connection on `addr`.
    pub async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        within: Duration,
    ) -> Result<(), BenchError> {
        let deadline = Instant::now() + within;
        loop {
            let st = self.state();
            if st != "running" {
                return Err(BenchError::ServerEnded {
                    cmd: self.cmd.clone(),
                    state: st,
                    addr,
                    log: self.log.clone(),
                });
            }
            let probe = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if let Ok(Ok(_)) = probe {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::ServerNotReady {
                    cmd: self.cmd.clone(),
                    addr,
                    within,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to the PID started, SIGKILL after `grace`; waits for the exit.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on the PID of a child we started and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
