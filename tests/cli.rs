//! The `qnetd serve` binary's start-up failures: each has its own exit code
//! and a one-line cause on stderr (see README, "Exit codes").

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qnetd-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `qnetd serve` with private paths and `extra` arguments; it must exit
/// on its own within 20 s.
fn serve(dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qnetd"));
    cmd.arg("serve")
        .arg("-f")
        .arg("--metrics-listen")
        .arg("off")
        .arg("-S")
        .arg(format!(
            "lock_file={},local_socket_file={},state_dir={}",
            dir.join("qnetd.pid").display(),
            dir.join("qnetd.sock").display(),
            dir.join("state").display()
        ))
        .args(extra)
        .env("QNETD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start qnetd");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "qnetd did not exit within 20 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now (TLS and the lock are checked
/// before the port is bound, so a race here cannot change those results).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

fn check(out: &Output, code: i32, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr:\n{err}");
    assert!(err.contains(says), "stderr should say '{says}':\n{err}");
}

#[test]
fn bad_configuration_exits_2() {
    let d = scratch("config");
    let out = serve(&d, &["-S", "init_timeout=1"]);
    check(&out, 2, "init_timeout: 1 is out of range");
}

#[test]
fn port_in_use_exits_4() {
    let d = scratch("port");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = serve(&d, &["-s", "off", "-l", "127.0.0.1", "-p", &port]);
    check(&out, 4, "the port is already in use");
}

#[test]
fn unreadable_tls_material_exits_5() {
    let d = scratch("tls");
    // A file where the TLS directory should be.
    let not_a_dir = d.join("tls");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let tls_dir = format!("tls_dir={}", not_a_dir.display());
    let out = serve(
        &d,
        &[
            "-s",
            "on",
            "-l",
            "127.0.0.1",
            "-p",
            &free_port(),
            "-S",
            &tls_dir,
        ],
    );
    check(&out, 5, "cannot create directory");
}

#[test]
fn second_instance_exits_3() {
    let d = scratch("lock");
    let lock = std::fs::File::create(d.join("qnetd.pid")).unwrap();
    lock.try_lock().unwrap();
    let out = serve(&d, &["-s", "off", "-l", "127.0.0.1", "-p", &free_port()]);
    check(&out, 3, "another instance is running");
    drop(lock);
}

/// systemd lifecycle: READY=1 on $NOTIFY_SOCKET once listening; SIGTERM
/// closes every client cleanly (EOF, not a reset) and exits 0.
#[test]
fn notify_readiness_and_sigterm_drain() {
    use std::io::Read;
    use std::os::unix::net::UnixDatagram;

    let d = scratch("lifecycle");
    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qnetd"))
        .args(["serve", "-f", "-s", "off", "-l", "127.0.0.1", "-p", &port])
        .args(["--metrics-listen", "off", "-S"])
        .arg(format!(
            "lock_file={},local_socket_file={},state_dir=off",
            d.join("qnetd.pid").display(),
            d.join("qnetd.sock").display()
        ))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");

    // A connected client (PREINIT answered) sees a clean close on SIGTERM.
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::Write;
    // PREINIT seq=1 cluster "c".
    s.write_all(&[
        0, 0, 0, 0, 0, 0x0d, 0, 0, 0, 4, 0, 0, 0, 1, 0, 1, 0, 1, b'c',
    ])
    .unwrap();
    let mut reply = [0u8; 6];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..2], &[0, 1], "PREINIT_REPLY");
    // SAFETY: signalling the child we started, by its pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok(), "clean close (EOF), got {r:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "qnetd did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}
