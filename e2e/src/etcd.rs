//! A private etcd for a test (the storage contract tests and the e2e suite): Debian trixie's etcd-server (installed on first
//! use when no etcd on PATH orders its progress notifications; a failed install panics, tests never skip), listening on
//! free loopback ports with a temporary data dir, killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

static INSTALL: Once = Once::new();

/// Where apt is told of Debian trixie, for etcd-server alone: bookworm's
/// 3.4.23 may report watch progress ahead of events, so the etcd backend
/// refuses progress there and its consistent reads from the cache would go
/// untested; trixie's (3.5.16) orders them, as upstream requires (3.5.13 on).
const TRIXIE_SOURCE: (&str, &str) =
    ("/etc/apt/sources.list.d/kube-apiserver-tests-trixie.list", "deb http://deb.debian.org/debian trixie main\n");
/// Nothing else comes from trixie unless asked for by name.
const TRIXIE_PIN: (&str, &str) =
    ("/etc/apt/preferences.d/kube-apiserver-tests-trixie", "Package: *\nPin: release n=trixie\nPin-Priority: 100\n");

/// Every `etcd` on PATH, in PATH's order.
fn etcds_on_path() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("etcd")).filter(|p| p.is_file()).collect()
}

/// The version `etcd --version` reports, if it runs.
fn version_of(etcd: &Path) -> Option<String> {
    let out = Command::new(etcd).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("etcd Version:")).map(|v| v.trim().to_string())
}

/// The first etcd on PATH whose progress notifications follow the events
/// they cover (an older one earlier on PATH is passed over).
fn usable_etcd() -> Option<PathBuf> {
    etcds_on_path()
        .into_iter()
        .find(|p| version_of(p).is_some_and(|v| generic_server::storage::etcd::progress_in_order(&v)))
}

/// Runs `program args` as root: directly when we are root, else through
/// `sudo -n`; `input` is its standard input. Panics when it fails: the etcd
/// tests never skip.
fn as_root(program: &str, args: &[&str], input: Option<&str>) {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut cmd = if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(program);
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("writing to {program} {args:?}: {e}"));
    }
    let status = child.wait().unwrap_or_else(|e| panic!("waiting for {program} {args:?}: {e}"));
    assert!(status.success(), "{program} {args:?} failed ({status}): cannot install etcd-server for the etcd tests");
}

/// Installs Debian trixie's etcd-server unless an etcd on PATH already
/// orders its progress notifications.
pub fn ensure_etcd_installed() -> PathBuf {
    INSTALL.call_once(|| {
        if usable_etcd().is_some() {
            return;
        }
        eprintln!("no etcd of 3.5.13 or later on PATH: installing Debian trixie's etcd-server with apt-get");
        for (file, content) in [TRIXIE_SOURCE, TRIXIE_PIN] {
            as_root("tee", &[file], Some(content));
        }
        as_root("apt-get", &["update"], None);
        as_root("apt-get", &["install", "-y", "etcd-server/trixie"], None);
    });
    usable_etcd().unwrap_or_else(|| {
        let found: Vec<String> =
            etcds_on_path().iter().map(|p| format!("{} ({:?})", p.display(), version_of(p))).collect();
        panic!("no etcd of 3.5.13 or later on PATH even after installing trixie's etcd-server: found {found:?}")
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct EtcdServer {
    binary: PathBuf,
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        let binary = ensure_etcd_installed();
        let data_dir = crate::scratch_dir();
        let mut server = EtcdServer { binary, child: None, data_dir, client_port: free_port(), peer_port: free_port() };
        server.spawn();
        server
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.client_url();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("etcd.log"))
            .expect("etcd log file");
        let child = Command::new(&self.binary)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        crate::reaper::adopt(child.id());
        self.child = Some(child);
        self.wait_healthy();
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("etcd exited ({status}) at start; log:\n{}", self.log());
                }
            }
            if self.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd did not become healthy within 30s; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (SIGKILL), keeping its data dir and ports for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            crate::reaper::release(child.id());
        }
    }

    /// Starts etcd again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
