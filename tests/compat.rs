//! The binary under the stock names (links named corosync-qnetd,
//! corosync-qnetd-tool, corosync-qnetd-certutil, as the package installs
//! them): daemon mode and its exit codes, the tool's request and output
//! against a scripted admin socket, the certutil's -i/-s with the NSS tools
//! replaced by small scripts (the real ones: tests/package), and the import
//! of a corosync-qnetd NSS database from PKCS#12 files pk12util made
//! (tests/data/nss, a throw-away test CA).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory with links to the binary under the stock names.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("qnetd-compat-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        for name in [
            "corosync-qnetd",
            "corosync-qnetd-tool",
            "corosync-qnetd-certutil",
        ] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_qnetd"), d.join("bin").join(name))
                .unwrap();
        }
        // An empty settings file: the host's /etc/qnetd/qnetd.toml is not read.
        std::fs::write(d.join("qnetd.toml"), b"").unwrap();
        Scratch(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The program `name` (a link), with no settings file and the NSS tool
    /// stand-ins of this directory.
    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.0.join("bin").join(name));
        c.env("QNETD_CONFIG", self.path("qnetd.toml"))
            .env("QNETD_NSS_CERTUTIL", self.path("certutil"))
            .env("QNETD_NSS_PK12UTIL", self.path("pk12util"))
            .stdin(Stdio::null());
        c
    }

    /// Settings file of the compat commands: TLS material in `nssdb`.
    fn settings(&self) -> PathBuf {
        let db = self.path("nssdb");
        std::fs::write(
            self.path("qnetd.toml"),
            format!("[advanced]\ntls_dir = \"{}\"\n", db.display()),
        )
        .unwrap();
        db
    }

    /// A `certutil` stand-in: `-N -d sql:DIR ...` creates the three files of
    /// an SQLite NSS database (empty), and records its arguments.
    fn fake_certutil(&self) {
        script(
            &self.path("certutil"),
            &format!(
                "echo \"$@\" >> {log}\n\
                 [ \"$1\" = -N ] || exit 1\n\
                 d=${{3#sql:}}\n\
                 : > \"$d/cert9.db\"; : > \"$d/key4.db\"; : > \"$d/pkcs11.txt\"\n",
                log = self.path("certutil.log").display()
            ),
        );
    }

    /// A `pk12util` stand-in: `-o FILE -n NICK ...` writes the committed
    /// export of that nickname.
    fn fake_pk12util(&self) {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nss");
        script(
            &self.path("pk12util"),
            &format!(
                "case \"$4\" in\n\
                 'QNet CA') cp {d}/nss-ca.p12 \"$2\" ;;\n\
                 'QNetd Cert') cp {d}/nss-server.p12 \"$2\" ;;\n\
                 *) echo \"pk12util: no such nickname $4\" >&2; exit 1 ;;\n\
                 esac\n",
                d = data.display()
            ),
        );
    }
}

impl Drop for Scratch {
    /// Stops a daemon a failed test left running, then removes the files.
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "pid") {
                let pid: i32 = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if pid > 0 && comm.trim() == "corosync-qnetd" {
                    // SAFETY: signalling a process this test started.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(mut c: Command) -> Output {
    c.output().expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

/// A one-shot admin socket: records the request line and answers `reply`.
fn scripted_socket(path: &Path, reply: &'static [u8]) -> std::thread::JoinHandle<Vec<u8>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 {
            req.push(b[0]);
            if b[0] == b'\n' {
                break;
            }
        }
        s.write_all(reply).unwrap();
        req
    })
}

#[test]
fn tool_sends_the_stock_request_and_copies_the_reply() {
    let s = Scratch::new("tool");
    let sock = s.path("s.sock");
    let server = scripted_socket(&sock, b"OK\r\nCluster \"a b\":\n\tx\n");
    let mut c = s.cmd("corosync-qnetd-tool");
    c.args(["-lv", "-c", "a \"b", "-p"]).arg(&sock);
    let out = run(c);
    assert_eq!(
        text(&server.join().unwrap()),
        "list verbose cluster \"a \\\"b\" \n"
    );
    assert_eq!(
        (code(&out), text(&out.stdout)),
        (0, "Cluster \"a b\":\n\tx\n".into())
    );
    assert!(out.stderr.is_empty());

    std::fs::remove_file(&sock).unwrap();
    let server = scripted_socket(&sock, b"Error\nNo such cluster\n");
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-s").arg(format!("-p{}", sock.display()));
    let out = run(c);
    assert_eq!(text(&server.join().unwrap()), "status \n");
    assert_eq!(code(&out), 4);
    assert_eq!(text(&out.stderr), "Error: No such cluster\n");

    std::fs::remove_file(&sock).unwrap();
    let server = scripted_socket(&sock, b"Maybe\n");
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-H").arg("-p").arg(&sock);
    let out = run(c);
    assert_eq!(text(&server.join().unwrap()), "shutdown \n");
    assert_eq!(code(&out), 3);
    assert_eq!(
        text(&out.stderr),
        "corosync-qnetd-tool: Unknown status line returned by IPC server\n"
    );
}

#[test]
fn tool_without_server_exits_3_with_what_pcs_looks_for() {
    let s = Scratch::new("toolnone");
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-s").arg("-p").arg(s.path("none.sock"));
    let out = run(c);
    assert_eq!(code(&out), 3);
    assert_eq!(
        text(&out.stderr),
        "corosync-qnetd-tool: Can't connect to qnetd socket (is QNetd running?): No such file or directory\n"
    );
    // Usage errors: exit 1, usage on stdout.
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-x");
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).ends_with(": invalid option -- 'x'\n"));
    assert!(text(&out.stdout).starts_with("usage: corosync-qnetd-tool [-Hhlsv]"));
    assert_eq!(code(&run(s.cmd("corosync-qnetd-tool"))), 1);
}

/// Daemon mode: the parent returns once the server is ready, with the
/// start status; the daemon is named corosync-qnetd and holds the lock.
#[test]
fn corosync_qnetd_detaches_and_reports_start_failures() {
    let s = Scratch::new("daemon");
    let port = free_port();
    let adv = |tag: &str| {
        format!(
            "lock_file={},local_socket_file={},state_dir=off,metrics_listen=off",
            s.path(&format!("{tag}.pid")).display(),
            s.path(&format!("{tag}.sock")).display()
        )
    };
    let start = Instant::now();
    let mut c = s.cmd("corosync-qnetd");
    c.args(["-s", "off", "-l", "127.0.0.1", "-p", &port, "-S", &adv("a")]);
    let out = run(c);
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(20));
    let pid: u32 = std::fs::read_to_string(s.path("a.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "corosync-qnetd");
    // Ready means the admin socket answers at once.
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-s").arg("-p").arg(s.path("a.sock"));
    let out = run(c);
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).starts_with(&format!("QNetd address:\t\t\t127.0.0.1:{port}\n")));

    // Start failures reach the caller's exit status through the pipe.
    let mut c = s.cmd("corosync-qnetd");
    c.args(["-s", "off", "-l", "127.0.0.1", "-p", &port, "-S", &adv("b")]);
    let out = run(c);
    assert_eq!(code(&out), 4, "port in use: {}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("corosync-qnetd: cannot listen on"));
    let mut c = s.cmd("corosync-qnetd");
    c.args([
        "-s",
        "off",
        "-l",
        "127.0.0.1",
        "-p",
        &free_port(),
        "-S",
        &adv("a"),
    ]);
    let out = run(c);
    assert_eq!(code(&out), 3, "lock held: {}", text(&out.stderr));
    let db = s.settings();
    let mut c = s.cmd("corosync-qnetd");
    c.args(["-l", "127.0.0.1", "-p", &free_port(), "-S", &adv("c")]);
    let out = run(c);
    assert_eq!(code(&out), 5, "no TLS material: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("no TLS key material in {}", db.display())));
    assert!(text(&out.stderr).contains("corosync-qnetd-certutil -i"));
    let mut c = s.cmd("corosync-qnetd");
    c.arg("-h");
    assert_eq!(code(&run(c)), 1);

    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-H").arg("-p").arg(s.path("a.sock"));
    assert_eq!(code(&run(c)), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn certutil_initialises_once_and_signs_node_requests() {
    let s = Scratch::new("certutil");
    let db = s.settings();
    s.fake_certutil();
    let mut c = s.cmd("corosync-qnetd-certutil");
    c.arg("-i");
    let out = run(c);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!(
        "QNetd CA certificate is exported as {}/qnetd-cacert.crt",
        db.display()
    )));
    assert_eq!(
        std::fs::read_to_string(s.path("certutil.log")).unwrap(),
        format!("-N -d sql:{} --empty-password\n", db.display())
    );
    let mode = |f: &str| std::fs::metadata(db.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("."), 0o770);
    assert_eq!(mode("cert9.db"), 0o660);
    assert_eq!(mode("qnetd-ca-key.pem"), 0o600);
    assert_eq!(mode("qnetd-server-key.pem"), 0o640);
    assert_eq!(mode("qnetd-cacert.crt"), 0o644);
    // Initialised: refused, nothing changed.
    let ca = std::fs::read(db.join("qnetd-ca.pem")).unwrap();
    let mut c = s.cmd("corosync-qnetd-certutil");
    c.arg("-i");
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read(db.join("qnetd-ca.pem")).unwrap(), ca);

    // -s: the request certutil -R made for CN=testcluster.
    let csr =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/tests/data/certutil-testcluster.crq");
    for _ in 0..2 {
        let mut c = s.cmd("corosync-qnetd-certutil");
        c.args(["-s", "-c"]).arg(&csr).args(["-n", "testcluster"]);
        let out = run(c);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        let crt = db.join("cluster-testcluster.crt");
        assert!(text(&out.stdout)
            .lines()
            .any(|l| l == format!("Certificate stored in {}", crt.display())));
        let info = qnetd_certs::describe(&std::fs::read(&crt).unwrap()).unwrap();
        assert_eq!(info[0].subject, "CN=testcluster");
        assert_eq!(info[0].issuer, "CN=QNet CA");
    }
    let exit = |args: &[&str]| {
        let mut c = s.cmd("corosync-qnetd-certutil");
        c.args(args);
        code(&run(c))
    };
    assert_eq!(exit(&["-s", "-c", csr.to_str().unwrap()]), 2, "no -n");
    assert_eq!(exit(&["-s", "-c", "/nonexistent", "-n", "x"]), 2, "no file");
    assert_eq!(
        exit(&["-s", "-c", csr.to_str().unwrap(), "-n", "other"]),
        1,
        "CN mismatch"
    );
    assert_eq!(exit(&["-x"]), 1);
    assert_eq!(exit(&["-c"]), 1);
    assert_eq!(exit(&["-h"]), 0);
    assert_eq!(exit(&[]), 0);
    std::fs::remove_file(db.join("cert9.db")).unwrap();
    std::fs::remove_file(db.join("key4.db")).unwrap();
    std::fs::remove_file(db.join("pkcs11.txt")).unwrap();
    assert_eq!(
        exit(&["-s", "-c", csr.to_str().unwrap(), "-n", "testcluster"]),
        1,
        "no db"
    );
}

#[test]
fn certutil_without_nss_tools_creates_nothing() {
    let s = Scratch::new("nonss");
    let db = s.settings();
    let mut c = s.cmd("corosync-qnetd-certutil");
    c.arg("-i");
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("libnss3-tools"),
        "{}",
        text(&out.stderr)
    );
    assert!(!db.exists(), "the folder pcs tests must not be left behind");
}

/// The import of corosync-qnetd's database, in place (the package's
/// layout): the CA from NSS (RSA 2048) signs node certificates, the server
/// starts with the imported certificate, the old database is kept aside.
#[test]
fn import_nss_in_place_keeps_the_ca_and_sets_the_old_database_aside() {
    let s = Scratch::new("import");
    let db = s.settings();
    s.fake_certutil();
    s.fake_pk12util();
    std::fs::create_dir_all(&db).unwrap();
    for f in [
        "cert9.db",
        "key4.db",
        "pkcs11.txt",
        "pwdfile.txt",
        "noise.txt",
    ] {
        std::fs::write(db.join(f), b"stock").unwrap();
    }
    std::fs::write(db.join("qnetd-cacert.crt"), b"stock export").unwrap();
    std::fs::write(db.join("cluster-web.crt"), b"signed earlier").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o750)).unwrap();
    let db_mode = 0o750;
    let mut c = Command::new(env!("CARGO_BIN_EXE_qnetd"));
    c.args(["certs", "import-nss", "--nssdb"])
        .arg(&db)
        .arg("--dir")
        .arg(&db)
        .env("QNETD_NSS_CERTUTIL", s.path("certutil"))
        .env("QNETD_NSS_PK12UTIL", s.path("pk12util"));
    let out = run(c);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("CN=QNet CA (RSA 2048)"));
    let backup = s.path("nssdb.pre-qnetd");
    assert_eq!(std::fs::read(backup.join("cert9.db")).unwrap(), b"stock");
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o7777,
        db_mode,
        "the kept database keeps its mode (rollback)"
    );
    assert!(
        std::fs::read(db.join("cert9.db")).unwrap().is_empty(),
        "a new, empty database"
    );
    assert!(!db.join("pwdfile.txt").exists());
    assert_eq!(
        std::fs::read(db.join("cluster-web.crt")).unwrap(),
        b"signed earlier"
    );
    let ca = qnetd_certs::describe(&std::fs::read(db.join("qnetd-ca.pem")).unwrap()).unwrap();
    assert_eq!((ca[0].subject.as_str(), ca[0].is_ca), ("CN=QNet CA", true));
    assert_eq!(
        std::fs::read(db.join("qnetd-cacert.crt")).unwrap(),
        std::fs::read(db.join("qnetd-ca.pem")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(db.join("qnetd-ca-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The CA key from NSS signs a node request.
    let csr =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/tests/data/certutil-testcluster.crq");
    let mut c = s.cmd("corosync-qnetd-certutil");
    c.args(["-s", "-c"]).arg(&csr).args(["-n", "testcluster"]);
    let out = run(c);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let crt = std::fs::read(db.join("cluster-testcluster.crt")).unwrap();
    assert_eq!(qnetd_certs::describe(&crt).unwrap()[0].issuer, "CN=QNet CA");

    // A second import refuses: the material exists.
    let mut c = Command::new(env!("CARGO_BIN_EXE_qnetd"));
    c.args(["certs", "import-nss", "--nssdb"])
        .arg(&db)
        .arg("--dir")
        .arg(&db)
        .env("QNETD_NSS_CERTUTIL", s.path("certutil"))
        .env("QNETD_NSS_PK12UTIL", s.path("pk12util"));
    assert_eq!(code(&run(c)), 1);

    // The server starts with the imported (RSA) server certificate.
    let port = free_port();
    let mut c = s.cmd("corosync-qnetd");
    c.args(["-l", "127.0.0.1", "-p", &port, "-S"]).arg(format!(
        "lock_file={},local_socket_file={},state_dir=off,metrics_listen=off",
        s.path("q.pid").display(),
        s.path("q.sock").display()
    ));
    let out = run(c);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-s").arg("-p").arg(s.path("q.sock"));
    let out = run(c);
    assert!(text(&out.stdout).contains("TLS:\t\t\t\tSupported (client certificate required)"));
    let mut c = s.cmd("corosync-qnetd-tool");
    c.arg("-H").arg("-p").arg(s.path("q.sock"));
    assert_eq!(code(&run(c)), 0);
}

#[test]
fn import_nss_to_another_folder_leaves_the_database_alone() {
    let s = Scratch::new("import2");
    s.fake_certutil();
    s.fake_pk12util();
    let db = s.path("nssdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("cert9.db"), b"stock").unwrap();
    let tls = s.path("tls");
    let mut c = Command::new(env!("CARGO_BIN_EXE_qnetd"));
    c.args(["certs", "import-nss", "--nssdb"])
        .arg(&db)
        .arg("--dir")
        .arg(&tls)
        .env("QNETD_NSS_PK12UTIL", s.path("pk12util"));
    let out = run(c);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(std::fs::read(db.join("cert9.db")).unwrap(), b"stock");
    for f in [
        "qnetd-ca.pem",
        "qnetd-ca-key.pem",
        "qnetd-server.pem",
        "qnetd-server-key.pem",
    ] {
        assert!(tls.join(f).is_file(), "{f}");
    }
    let server =
        qnetd_certs::describe(&std::fs::read(tls.join("qnetd-server.pem")).unwrap()).unwrap();
    assert_eq!(server[0].subject, "CN=Qnetd Server");

    // A nickname that is not there: a clear error, nothing written.
    let mut c = Command::new(env!("CARGO_BIN_EXE_qnetd"));
    c.args(["certs", "import-nss", "--ca-nickname", "Nope", "--nssdb"])
        .arg(&db)
        .arg("--dir")
        .arg(s.path("tls2"))
        .env("QNETD_NSS_PK12UTIL", s.path("pk12util"));
    let out = run(c);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("cannot export \"Nope\""),
        "{}",
        text(&out.stderr)
    );
    assert!(!s.path("tls2").exists());
}

/// The settings file the package installs as /etc/qnetd/qnetd.toml is
/// valid and puts the TLS material where pcs looks.
#[test]
fn packaged_settings_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/qnetd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut s = qnetd_core::config::Settings::default();
    let warnings = s.apply_toml(&text, &path).expect("valid settings file");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(s.tls_dir, Path::new("/etc/corosync/qnetd/nssdb"));
    assert_eq!(s.state_dir.as_deref(), Some(Path::new("/var/lib/qnetd")));
    s.validate().unwrap();
}

/// The stock key `nss_db_dir` (the OCF agent's `nss_db_dir` parameter)
/// points at the folder of the keys.
#[test]
fn nss_db_dir_sets_the_tls_folder() {
    let mut s = qnetd_core::config::Settings::default();
    s.set_advanced_list("nss_db_dir=/srv/qnetd/nssdb").unwrap();
    assert_eq!(s.tls_dir, Path::new("/srv/qnetd/nssdb"));
    s.set_advanced_list("tls_dir=/etc/qnetd/tls").unwrap();
    assert_eq!(s.tls_dir, Path::new("/etc/qnetd/tls"));
}
