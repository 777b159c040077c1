//! `corosync-qnetd-tool`: asks the server over its admin socket for its
//! status (`-s`), its clusters (`-l`, one with `-c NAME`, details with `-v`)
//! or to shut down (`-H`), with the stock program's options, request
//! format, output and exit codes, so that pcs (`pcs qdevice status net`)
//! and the OCF agent (`monitor`) read it unchanged:
//!
//! * the reply's first line is `OK` or `Error` (any case, `\r` ignored); the
//!   rest is copied byte for byte to stdout, or after `Error: ` to stderr;
//! * exit 0 ok, 1 usage, 2 internal error, 3 no server on the socket (the
//!   message contains "is QNetd running?", which pcs looks for) or an
//!   unknown status line, 4 the server answered with an error.

use std::ffi::OsString;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use super::getopt::{self, Opt, Style};
use super::{program_name, strerror};

/// The stock default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/corosync-qnetd/corosync-qnetd.sock";

const EXIT_USAGE: u8 = 1;
const EXIT_INTERNAL: u8 = 2;
const EXIT_CONNECT: u8 = 3;
const EXIT_SERVER_ERROR: u8 = 4;

/// Longest socket path a `sockaddr_un` holds (with its NUL).
const SUN_PATH_MAX: usize = 108;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Shutdown,
    Status,
    List,
}

fn usage() {
    println!("usage: corosync-qnetd-tool [-Hhlsv] [-c cluster_name] [-p qnetd_ipc_socket_path]");
}

/// The request line, as the stock tool spells it: the command, `verbose`,
/// `cluster "NAME"` (quotes and backslashes escaped), each followed by a
/// space, then a newline.
fn request(op: Operation, verbose: bool, cluster: Option<&[u8]>) -> Vec<u8> {
    let mut req: Vec<u8> = match op {
        Operation::Shutdown => b"shutdown ".to_vec(),
        Operation::Status => b"status ".to_vec(),
        Operation::List => b"list ".to_vec(),
    };
    if verbose {
        req.extend_from_slice(b"verbose ");
    }
    if let Some(name) = cluster {
        req.extend_from_slice(b"cluster \"");
        for &b in name {
            if b == b'"' || b == b'\\' {
                req.push(b'\\');
            }
            req.push(b);
        }
        req.extend_from_slice(b"\" ");
    }
    req.push(b'\n');
    req
}

/// Copies the reply: returns the exit code. Read errors end the reply like
/// an end of file, as in the stock tool.
fn copy_reply(reply: impl Read, out: &mut impl Write, err: &mut impl Write, prog: &str) -> u8 {
    let mut status = Vec::new();
    let mut to_err: Option<bool> = None;
    for byte in BufReader::new(reply).bytes() {
        let Ok(b) = byte else { break };
        match to_err {
            Some(true) => {
                let _ = err.write_all(&[b]);
            }
            Some(false) => {
                let _ = out.write_all(&[b]);
            }
            None if b == b'\r' => {}
            None if b == b'\n' => {
                if status.eq_ignore_ascii_case(b"OK") {
                    to_err = Some(false);
                } else if status.eq_ignore_ascii_case(b"Error") {
                    let _ = err.write_all(b"Error: ");
                    to_err = Some(true);
                } else {
                    let _ = out.flush();
                    let _ = writeln!(err, "{prog}: Unknown status line returned by IPC server");
                    return EXIT_CONNECT;
                }
            }
            None => status.push(b),
        }
    }
    let _ = out.flush();
    let _ = err.flush();
    if to_err == Some(true) {
        EXIT_SERVER_ERROR
    } else {
        0
    }
}

/// Runs `corosync-qnetd-tool` with `argv` (including `argv[0]`).
pub fn run(argv: &[OsString]) -> ExitCode {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let prog = program_name(&argv0);
    let (opts, _operands) =
        getopt::parse(argv.get(1..).unwrap_or(&[]), "Hhlsvc:p:", Style::Permute);
    let mut op = None;
    let mut verbose = false;
    let mut cluster: Option<OsString> = None;
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    for opt in opts {
        match opt {
            Opt::Known('H', _) => op = Some(Operation::Shutdown),
            Opt::Known('l', _) => op = Some(Operation::List),
            Opt::Known('s', _) => op = Some(Operation::Status),
            Opt::Known('v', _) => verbose = true,
            Opt::Known('c', Some(v)) => cluster = Some(v),
            Opt::Known('p', Some(v)) => socket = PathBuf::from(v),
            Opt::Unknown(c) => {
                eprintln!("{}: invalid option -- '{c}'", argv0.to_string_lossy());
                usage();
                return ExitCode::from(EXIT_USAGE);
            }
            Opt::MissingValue(c) => {
                eprintln!(
                    "{}: option requires an argument -- '{c}'",
                    argv0.to_string_lossy()
                );
                usage();
                return ExitCode::from(EXIT_USAGE);
            }
            _ => {
                usage();
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let Some(op) = op else {
        usage();
        return ExitCode::from(EXIT_USAGE);
    };

    let path_len = socket.as_os_str().as_bytes().len();
    let connected = if path_len == 0 || path_len >= SUN_PATH_MAX {
        Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
    } else {
        UnixStream::connect(&socket)
    };
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{prog}: Can't connect to qnetd socket (is QNetd running?): {}",
                strerror(&e)
            );
            return ExitCode::from(EXIT_CONNECT);
        }
    };
    let req = request(
        op,
        verbose,
        cluster.as_ref().map(|c| c.as_os_str().as_bytes()),
    );
    if stream
        .write_all(&req)
        .and_then(|()| stream.flush())
        .is_err()
    {
        eprintln!("{prog}: Can't send command");
        return ExitCode::from(EXIT_INTERNAL);
    }
    let stdout = io::stdout();
    let stderr = io::stderr();
    let code = copy_reply(&stream, &mut stdout.lock(), &mut stderr.lock(), &prog);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spelled_as_the_stock_tool() {
        assert_eq!(request(Operation::Status, false, None), b"status \n");
        assert_eq!(
            request(Operation::List, true, Some(b"we\"b\\1")),
            b"list verbose cluster \"we\\\"b\\\\1\" \n"
        );
        assert_eq!(request(Operation::Shutdown, false, None), b"shutdown \n");
    }

    fn reply(input: &[u8]) -> (u8, Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = copy_reply(input, &mut out, &mut err, "corosync-qnetd-tool");
        (code, out, err)
    }

    #[test]
    fn replies_are_copied_verbatim() {
        assert_eq!(
            reply(b"ok\r\nQNetd address:\t\t\t*:5403\n"),
            (0, b"QNetd address:\t\t\t*:5403\n".to_vec(), vec![])
        );
        assert_eq!(
            reply(b"Error\nUnknown command 'x'\n"),
            (4, vec![], b"Error: Unknown command 'x'\n".to_vec())
        );
        assert_eq!(
            reply(b"Maybe\nbody"),
            (
                3,
                vec![],
                b"corosync-qnetd-tool: Unknown status line returned by IPC server\n".to_vec()
            )
        );
        // No status line at all: nothing printed, success (as the stock tool).
        assert_eq!(reply(b"OK"), (0, vec![], vec![]));
    }
}
