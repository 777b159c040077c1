//! The local administration socket (a Unix stream socket at
//! `local_socket_file`), compatible with `corosync-qnetd-tool` and pcs.
//!
//! One request per connection: the client writes one line; the server
//! answers `OK\n` and the body, or `Error\n` and a message, then closes.
//! Commands (case-insensitive): `status [verbose]`, `list [verbose]
//! [cluster NAME]`, `shutdown`, as the reference; and qnetd's structured
//! requests `protobuf` (the status model encoded with
//! `proto/qnetd/status.proto`) and `json` (the same model as JSON, used by
//! `qnetd status`). Tokens are separated by white space; double quotes and
//! backslash escapes group and escape characters, as the reference's lexer.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qnetd_core::status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::ctx::ServerCtx;
use crate::error::{AdminSocketProblem, StartError};
use crate::shutdown::Shutdown;

/// Splits a request line into tokens the way the reference's lexer does.
pub fn tokenize(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
                in_token = true;
            }
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        tokens.push(cur);
    }
    tokens
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status {
        verbose: bool,
    },
    List {
        verbose: bool,
        cluster: Option<String>,
    },
    Shutdown,
    Json,
    Protobuf,
}

/// A request that cannot be parsed; its text is the reference's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    NoCommand,
    Unknown(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NoCommand => f.write_str("No command specified"),
            RequestError::Unknown(cmd) => write!(f, "Unknown command '{cmd}'"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses a request line.
pub fn parse(line: &str) -> Result<Request, RequestError> {
    let tokens = tokenize(line);
    let Some(cmd) = tokens.first() else {
        return Err(RequestError::NoCommand);
    };
    let rest = &tokens[1..];
    match cmd.to_ascii_lowercase().as_str() {
        "status" => Ok(Request::Status {
            verbose: rest
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case("verbose")),
        }),
        "list" => {
            let mut verbose = false;
            let mut cluster = None;
            let mut it = rest.iter();
            while let Some(t) = it.next() {
                if t.eq_ignore_ascii_case("verbose") {
                    verbose = true;
                } else if t.eq_ignore_ascii_case("cluster") {
                    cluster = it.next().cloned();
                }
            }
            Ok(Request::List { verbose, cluster })
        }
        "shutdown" => Ok(Request::Shutdown),
        "json" => Ok(Request::Json),
        "protobuf" => Ok(Request::Protobuf),
        _ => Err(RequestError::Unknown(cmd.clone())),
    }
}

/// Answers one request: the full reply, and whether to shut down after it.
pub fn answer(ctx: &ServerCtx, line: &str) -> (Vec<u8>, bool) {
    let text = |t: String| (t.into_bytes(), false);
    match parse(line) {
        Err(e) => text(format!("Error\n{e}\n")),
        Ok(Request::Shutdown) => (b"OK\n".to_vec(), true),
        Ok(Request::Status { verbose }) => {
            let st = ctx.status();
            text(format!("OK\n{}", status::tool_status(&st, verbose)))
        }
        Ok(Request::List { verbose, cluster }) => {
            let st = ctx.status();
            text(format!(
                "OK\n{}",
                status::tool_list(&st, verbose, cluster.as_deref())
            ))
        }
        Ok(Request::Json) => match serde_json::to_string_pretty(&ctx.status()) {
            Ok(j) => text(format!("OK\n{j}\n")),
            Err(e) => text(format!("Error\nInternal error: {e}\n")),
        },
        Ok(Request::Protobuf) => {
            use qnetd_proto::Message;
            let mut out = b"OK\n".to_vec();
            out.extend_from_slice(&ctx.status().encode_to_vec());
            (out, false)
        }
    }
}

/// Binds the socket with the configured permissions. A socket file left by
/// a dead server is replaced; one that answers means another server runs.
pub async fn bind(path: &Path, umask: u32, gid: Option<u32>) -> Result<UnixListener, StartError> {
    let fail = |what: AdminSocketProblem, error: Option<io::Error>| StartError::Admin {
        path: path.to_path_buf(),
        what,
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(AdminSocketProblem::CreateDir, Some(e)))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(fail(AdminSocketProblem::InUse, None));
        }
        std::fs::remove_file(path).map_err(|e| fail(AdminSocketProblem::RemoveStale, Some(e)))?;
    }
    // Bind under a temporary name, set the mode, then move it into place,
    // so nobody can connect before the permissions are right.
    let tmp: PathBuf = path.with_file_name(format!(
        ".{}.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("qnetd.sock"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| fail(AdminSocketProblem::Bind, Some(e)))?;
    let mode = 0o777 & !umask;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(AdminSocketProblem::SetMode, Some(e)))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&tmp, None, Some(gid))
            .map_err(|e| fail(AdminSocketProblem::SetGroup, Some(e)))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| fail(AdminSocketProblem::Rename, Some(e)))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown` fires; the request `shutdown`
/// triggers it. The socket file is removed at the end.
pub async fn run(listener: UnixListener, ctx: Arc<ServerCtx>, shutdown: Shutdown) {
    let limit = ctx.arbiter.settings.ipc_max_clients;
    let permits = Arc::new(Semaphore::new(if limit == 0 {
        Semaphore::MAX_PERMITS
    } else {
        limit
    }));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.triggered() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("admin socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            warn!("admin socket: ipc_max_clients ({limit}) reached; refusing a request");
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match handle(stream, &ctx).await {
                Ok(true) => {
                    info!("shutdown requested on the admin socket");
                    shutdown.trigger();
                }
                Ok(false) => {}
                Err(e) => debug!("admin request failed: {e}"),
            }
            drop(permit);
        });
    }
    if ctx.arbiter.settings.admin_socket {
        let _ = std::fs::remove_file(&ctx.arbiter.settings.local_socket_file);
    }
}

/// Answers one request; returns whether the server must shut down.
async fn handle(mut stream: UnixStream, ctx: &ServerCtx) -> io::Result<bool> {
    let max = ctx.arbiter.settings.ipc_max_receive_size;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, io::Error>(true);
            }
            line.extend_from_slice(&buf[..n]);
            if line.contains(&b'\n') {
                return Ok(true);
            }
            if line.len() > max {
                return Ok(false);
            }
        }
    })
    .await;
    let (reply, shutdown) = match read {
        Err(_) => return Ok(false),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(false)) => (b"Error\nCommand too long\n".to_vec(), false),
        Ok(Ok(true)) => {
            let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            debug!(request = %text.trim(), "admin request");
            answer(ctx, &text)
        }
    };
    if reply.len() > ctx.arbiter.settings.ipc_max_send_size {
        stream
            .write_all(b"Error\nInternal IPC buffer too small\n")
            .await?;
    } else {
        stream.write_all(&reply).await?;
    }
    stream.shutdown().await?;
    Ok(shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_handles_quotes_and_escapes() {
        assert_eq!(
            tokenize("list verbose cluster \"my cluster\" \n"),
            vec!["list", "verbose", "cluster", "my cluster"]
        );
        assert_eq!(tokenize("  status  "), vec!["status"]);
        assert_eq!(
            tokenize("list cluster a\\ b"),
            vec!["list", "cluster", "a b"]
        );
        assert_eq!(tokenize("list cluster \"\""), vec!["list", "cluster", ""]);
        assert!(tokenize("   ").is_empty());
    }

    #[test]
    fn requests_parse_like_the_reference() {
        assert_eq!(
            parse("STATUS verbose"),
            Ok(Request::Status { verbose: true })
        );
        assert_eq!(
            parse("list cluster \"x\" verbose"),
            Ok(Request::List {
                verbose: true,
                cluster: Some("x".into())
            })
        );
        assert_eq!(parse(""), Err(RequestError::NoCommand));
        assert_eq!(parse("frob"), Err(RequestError::Unknown("frob".into())));
        assert_eq!(
            parse("frob").unwrap_err().to_string(),
            "Unknown command 'frob'"
        );
    }
}
