//! End-to-end harness: starts the real `kube-apiserver` binary on a free port with
//! a temporary data dir and drives it with the real `kubectl` on PATH.
//!
//! Nothing here fakes a part a user would have: a test that needs a missing tool
//! fails with a message that says which.

pub mod etcd;
pub mod kinds;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// The workspace root (the e2e crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e lives inside the workspace").to_path_buf()
}

/// A namespaced CustomResourceDefinition `<plural>.<group>`, one served and
/// stored version v1, whose `spec` property is `spec_schema` (YAML lines
/// indented 12 spaces: `type: object` and what follows).
pub fn namespaced_crd(group: &str, plural: &str, kind: &str, spec_schema: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
{spec_schema}",
        singular = kind.to_lowercase()
    )
}

/// The processes the tests started (servers, etcd), killed when the test
/// binary exits: a server a binary shares lives in a static, which Rust
/// never drops, and would outlive the run otherwise.
pub mod reaper {
    use std::sync::{Mutex, Once};

    static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    static REGISTER: Once = Once::new();

    extern "C" fn reap() {
        let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        for pid in live.iter() {
            // SAFETY: kill(2) on a pid this process started; at worst it is
            // already gone and the call fails.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Kills `pid` at exit unless it is [`release`]d first.
    pub fn adopt(pid: u32) {
        REGISTER.call_once(|| {
            // SAFETY: registers a plain function with no captured state.
            unsafe { libc::atexit(reap) };
        });
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }

    /// `pid` was stopped by its owner.
    pub fn release(pid: u32) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
    }
}

/// Builds the server binary once per test process and returns its path
/// (`E2E_SERVER_BIN` names a prebuilt one instead).
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // A prebuilt binary (for CI, or while the workspace is being edited).
        if let Some(bin) = std::env::var_os("E2E_SERVER_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.exists(), "E2E_SERVER_BIN={} does not exist", bin.display());
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "kube-apiserver-bin", "--bin", "kube-apiserver"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the server binary");
        assert!(status.success(), "building kube-apiserver failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
        let bin = target.join("debug").join("kube-apiserver");
        assert!(bin.exists(), "no server binary at {}", bin.display());
        bin
    })
}

/// The kubectl to use: `kubectl` on PATH, or `kubectl.1.NN` beside it.
pub fn kubectl_path(minor: Option<u32>) -> PathBuf {
    let which = Command::new("sh").args(["-c", "command -v kubectl"]).output().expect("running sh");
    let found = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(!found.is_empty(), "kubectl is not on PATH: the e2e tests drive the real kubectl");
    let path = PathBuf::from(found);
    match minor {
        None => path,
        Some(m) => {
            let real = std::fs::canonicalize(&path).unwrap_or(path);
            let versioned = real.parent().expect("kubectl has a directory").join(format!("kubectl.1.{m}"));
            assert!(versioned.exists(), "{} is missing: the tests cover kubectl 1.{m}", versioned.display());
            versioned
        }
    }
}

/// Which storage the server under test runs on. Every e2e test runs on both:
/// a test written as a plain `#[test]` runs on the embedded store, and
/// [`on_etcd!`] adds its etcd twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Embedded) };
}

/// Runs `test` with servers started on `backend` (each test has its own thread).
pub fn with_backend(backend: Backend, test: fn()) {
    BACKEND.with(|b| b.set(backend));
    test();
}

/// The backend servers started on this thread use.
pub fn current_backend() -> Backend {
    BACKEND.with(|b| b.get())
}

/// Declares the etcd twins of tests in this file: `on_etcd!(a, b, c);` adds
/// `etcd::a` etc., each running the same test body against a private etcd.
#[macro_export]
macro_rules! on_etcd {
    ($($name:ident),* $(,)?) => {
        mod on_etcd {
            $(
                #[test]
                fn $name() {
                    $crate::with_backend($crate::Backend::Etcd, super::$name);
                }
            )*
        }
    };
}

/// Appends each line `from` yields to the file at `path` (from a thread of
/// its own), showing it to `seen` too.
fn tee_lines(from: impl std::io::Read + Send + 'static, path: PathBuf, mut seen: impl FnMut(&str) + Send + 'static) {
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok();
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            seen(&line);
        }
    });
}

/// Where this test process keeps its temporary dirs: one dir per process,
/// named by its pid. A server shared through a static is never dropped, so
/// its dir outlives the process; the first test process to start after it
/// removes the dirs of processes that are gone (some held hundreds of MB).
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        const PREFIX: &str = "kube-apiserver-e2e.";
        let tmp = std::env::temp_dir();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let root = tmp.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("creating the scratch root");
        root
    })
}

/// A fresh temporary dir under [`scratch_root`].
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch_root()).expect("creating a temp dir")
}

/// Runs the server with `flags` (on a throwaway data dir) expecting it to
/// refuse to start; returns what it wrote to stderr.
#[track_caller]
pub fn start_refused(flags: &[&str]) -> String {
    let dir = scratch_dir();
    let out = Command::new(server_binary())
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--secure-port", "0"])
        .args(flags)
        .output()
        .expect("running the server");
    assert!(!out.status.success(), "the server started with {flags:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub struct Server {
    child: Option<Child>,
    /// The private etcd when running on etcd; it outlives server restarts.
    pub etcd: Option<etcd::EtcdServer>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    /// What the server wrote to stdout (the audit log with `--audit-log-path -`).
    pub stdout_log: PathBuf,
    pub extra_args: Vec<String>,
    /// Which kubectl `kubectl()` runs (None = the one on PATH).
    pub kubectl_minor: Option<u32>,
}

impl Server {
    /// Starts a server on a fresh temporary data dir.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Server {
        Self::start_prepared(extra_args, |_, _| {})
    }

    /// Starts a server on a data dir (and etcd, on that backend) that
    /// `prepare` fills first: a store written directly, without the server.
    pub fn start_prepared(extra_args: &[&str], prepare: impl FnOnce(&Path, Option<&etcd::EtcdServer>)) -> Server {
        let tmp = scratch_dir();
        let data_dir = tmp.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("creating the data dir");
        let etcd = match current_backend() {
            Backend::Embedded => None,
            Backend::Etcd => Some(etcd::EtcdServer::start()),
        };
        prepare(&data_dir, etcd.as_ref());
        let mut s = Server {
            child: None,
            etcd,
            log: tmp.path().join("server.log"),
            stdout_log: tmp.path().join("server.stdout"),
            data_dir,
            _tmp: Some(tmp),
            url: String::new(),
            kubeconfig: PathBuf::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            kubectl_minor: None,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(server_binary());
        // A restart listens on the port the first start picked, as a restarted cluster would.
        let port = if self.url.is_empty() { 0 } else { self.port() };
        cmd.arg("--data-dir").arg(&self.data_dir).args(["--secure-port", &port.to_string()]).args(&self.extra_args);
        if let Some(etcd) = &self.etcd {
            cmd.arg("--etcd-servers").arg(etcd.client_url());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("starting kube-apiserver");
        reaper::adopt(child.id());
        tee_lines(child.stdout.take().expect("stdout was piped"), self.stdout_log.clone(), |_| {});
        let (tx, rx) = mpsc::channel();
        tee_lines(child.stderr.take().expect("stderr was piped"), self.log.clone(), move |line| {
            if let Some(rest) = line.split("kube-apiserver ready: ").nth(1) {
                let _ = tx.send(rest.to_string());
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kube-apiserver did not become ready; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        };
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("ready line lacks {name}=: {ready}"))
                .to_string()
        };
        self.url = field("url");
        self.kubeconfig = PathBuf::from(field("kubeconfig"));
        self.child = Some(child);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Stops the process (SIGKILL) and starts it again on the same data dir and port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            reaper::release(c.id());
        }
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(kubectl_path(self.kubectl_minor));
        // One HOME (and so one discovery cache) per kubectl version, so a version
        // never reads what another one cached.
        let home = self
            .data_dir
            .parent()
            .unwrap_or(&self.data_dir)
            .join(format!("home-{}", self.kubectl_minor.map(|m| m.to_string()).unwrap_or_else(|| "default".into())));
        let _ = std::fs::create_dir_all(&home);
        cmd.env("KUBECONFIG", &self.kubeconfig).env("HOME", home);
        cmd.env_remove("KUBECTL_EXTERNAL_DIFF").env_remove("KUBE_EDITOR").env_remove("EDITOR");
        cmd
    }

    /// Runs kubectl with `args`, returning its output whatever the exit code.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl_cmd();
        cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().expect("stdin was piped");
            si.write_all(input.as_bytes()).expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl in the background (a watch), sending each stdout line.
    pub fn kubectl_background(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader};
        let mut cmd = self.kubectl_cmd();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("starting kubectl");
        let out = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    }

    /// Runs kubectl and asserts success; returns stdout.
    #[track_caller]
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    #[track_caller]
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {stdout}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    #[track_caller]
    pub fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed but printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl ... -o json` parsed.
    #[track_caller]
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} gave no JSON ({e}): {out}"))
    }

    /// `kubectl get --raw PATH` parsed as JSON.
    #[track_caller]
    pub fn raw(&self, path: &str) -> serde_json::Value {
        let out = self.kubectl(&["get", "--raw", path]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("GET {path} gave no JSON ({e}): {out}"))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The admin credentials as PEM files (ca, cert, key) for raw HTTPS clients.
    pub fn admin_pem_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let pki = self.data_dir.join("pki");
        (pki.join("ca.crt"), pki.join("admin.crt"), pki.join("admin.key"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a kubectl run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// An HTTP answer read by curl.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The raw response header block(s), as curl wrote them.
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response ({}) is not JSON ({e}): {}", self.status, self.text()))
    }

    /// Values of a response header (case-insensitive name), from the last header block.
    pub fn header(&self, name: &str) -> Vec<String> {
        let last_block = self.headers.split("\r\n\r\n").filter(|b| !b.trim().is_empty()).last().unwrap_or("");
        last_block
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    }

    /// Asserts the answer is a metav1.Status failure with this code and reason; returns it.
    #[track_caller]
    pub fn assert_status(&self, code: u16, reason: &str) -> serde_json::Value {
        assert_eq!(self.status, code, "expected HTTP {code} {reason}, got {}: {}", self.status, self.text());
        let v = self.json();
        assert_eq!(v["kind"], "Status", "error body is not a Status: {v}");
        assert_eq!(v["apiVersion"], "v1", "error body: {v}");
        assert_eq!(v["status"], "Failure", "error body: {v}");
        assert_eq!(v["code"], code, "Status.code: {v}");
        assert_eq!(v["reason"], reason, "Status.reason: {v}");
        v
    }
}

/// Which credentials a raw request carries.
#[derive(Clone, Debug)]
pub enum Cred {
    /// The admin client certificate.
    Admin,
    /// Nothing at all (the CA is still used to verify the server).
    None,
    /// `Authorization: Bearer <token>` and no client certificate.
    Token(String),
}

/// The path of a tool the tests need; panics naming it when it is missing.
#[track_caller]
pub fn require_tool(name: &str) -> PathBuf {
    let which = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().expect("running sh");
    let found = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(!found.is_empty(), "{name} is not on PATH: these e2e tests need it");
    PathBuf::from(found)
}

/// Parses kubectl's table output: one map per row, keyed by the header's column names.
/// Cells are cut at the header's column offsets (kubectl left-aligns every cell under
/// its header), so empty cells read as "".
pub fn table(out: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return Vec::new() };
    let hdr: Vec<char> = header.chars().collect();
    // Column starts: a non-space preceded by the line start or by two or more spaces.
    let mut starts = Vec::new();
    for i in 0..hdr.len() {
        if hdr[i] != ' ' && (i == 0 || (i >= 2 && hdr[i - 1] == ' ' && hdr[i - 2] == ' ')) {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(k, &st)| {
            let end = starts.get(k + 1).copied().unwrap_or(hdr.len());
            hdr[st..end].iter().collect::<String>().trim().to_string()
        })
        .collect();
    lines
        .map(|l| {
            let row: Vec<char> = l.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let st = starts[k].min(row.len());
                    let end = if k + 1 == starts.len() { row.len() } else { starts[k + 1].min(row.len()) };
                    (name.clone(), row[st..end].iter().collect::<String>().trim().to_string())
                })
                .collect()
        })
        .collect()
}

/// The first column of each table row.
pub fn table_names(out: &str) -> Vec<String> {
    let first = out.split_whitespace().next().unwrap_or("").to_string();
    table(out).into_iter().map(|r| r.get(&first).cloned().unwrap_or_default()).collect::<Vec<_>>()
}

/// The value of a `Key:   value` line in `kubectl describe` output (first match, trimmed).
#[track_caller]
pub fn describe_value(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("describe output has no {key:?} line:\n{out}"))
}

/// Waits up to 10 s for `check` to hold, failing the test naming `what`.
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kubectl's wording for a 401 (1.27 adds "(Unauthorized)", newer ones "(the server
/// has asked for the client to provide credentials)").
pub const KUBECTL_UNAUTHORIZED: &str = "error: You must be logged in to the server (";

impl Server {
    /// A kubeconfig (in the scratch dir) that verifies the server but carries
    /// only `user`, a YAML mapping such as `{token: abc}`; returns its path.
    pub fn user_kubeconfig(&self, name: &str, user: &str) -> String {
        let (ca, _, _) = self.admin_pem_paths();
        let body = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user: {user}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            self.url,
            ca.display()
        );
        self.write_file(name, body).to_str().expect("a utf-8 scratch path").to_string()
    }

    /// A scratch directory for files the test writes (inside the server's temp dir).
    pub fn scratch(&self) -> PathBuf {
        let d = self.data_dir.parent().unwrap_or(&self.data_dir).join("scratch");
        std::fs::create_dir_all(&d).expect("creating the scratch dir");
        d
    }

    /// Writes `content` to a scratch file and returns its path.
    pub fn write_file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.scratch().join(name);
        std::fs::write(&p, content).expect("writing a scratch file");
        p
    }

    /// Runs kubectl and returns exit code, stdout and stderr, whatever they are.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_env(args, stdin, &[])
    }

    pub fn run_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.kubectl_cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            let mut si = child.stdin.take().expect("stdin was piped");
            si.write_all(input.as_bytes()).expect("writing kubectl's stdin");
        }
        let out = child.wait_with_output().expect("waiting for kubectl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl expecting exit code 1 and stderr containing every one of `needles`.
    #[track_caller]
    pub fn kubectl_err(&self, args: &[&str], stdin: Option<&str>, needles: &[&str]) -> String {
        let r = self.run(args, stdin);
        assert_eq!(r.code, 1, "kubectl {args:?} should have failed with exit code 1: {r:?}");
        for n in needles {
            assert!(r.stderr.contains(n), "kubectl {args:?}: stderr lacks {n:?}:\n{}", r.stderr);
        }
        r.stderr
    }

    /// `kubectl apply -f -` with `yaml`; returns stdout.
    #[track_caller]
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml))
    }

    /// Applies a CustomResourceDefinition and waits until it is Established.
    #[track_caller]
    pub fn apply_crd(&self, yaml: &str, name: &str) {
        self.apply(yaml);
        self.kubectl(&["wait", "--for=condition=Established", "--timeout=10s", &format!("crd/{name}")]);
    }

    /// `kubectl create -f -` with `yaml`; returns stdout.
    #[track_caller]
    pub fn create(&self, yaml: &str) -> String {
        self.kubectl_stdin(&["create", "-f", "-"], Some(yaml))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("url has a port")
    }

    /// A raw HTTPS request with curl (full TLS verification against the generated CA).
    /// `headers` are extra request headers such as ("Content-Type", "application/yaml").
    #[track_caller]
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        cred: Cred,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        self.curl_with(&[], method, path, cred, headers, body)
    }

    /// `curl` with extra curl arguments (for example `--http1.1`).
    #[track_caller]
    pub fn curl_with(
        &self,
        curl_args: &[&str],
        method: &str,
        path: &str,
        cred: Cred,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let curl = require_tool("curl");
        let (ca, cert, key) = self.admin_pem_paths();
        let dir = tempfile::tempdir_in(self.scratch()).expect("temp dir for curl");
        let hdr_file = dir.path().join("headers");
        let body_file = dir.path().join("body");
        let mut cmd = Command::new(curl);
        cmd.args(["-sS", "--max-time", "30"]).args(curl_args);
        if method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", method]);
        }
        cmd.arg("--cacert").arg(&ca);
        cmd.arg("-D").arg(&hdr_file).arg("-o").arg(&body_file).args(["-w", "%{http_code}"]);
        match &cred {
            Cred::Admin => {
                cmd.arg("--cert").arg(&cert).arg("--key").arg(&key);
            }
            Cred::None => {}
            Cred::Token(t) => {
                cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
            }
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = body {
            let req_file = dir.path().join("request");
            std::fs::write(&req_file, b).expect("writing the request body");
            cmd.arg("--data-binary").arg(format!("@{}", req_file.display()));
        }
        cmd.arg(format!("{}{}", self.url.trim_end_matches('/'), path));
        let out = cmd.output().expect("running curl");
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "curl {method} {path} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        HttpResponse {
            status: code.parse().unwrap_or_else(|_| panic!("curl printed no status code: {code:?}")),
            headers: std::fs::read_to_string(&hdr_file).unwrap_or_default(),
            body: std::fs::read(&body_file).unwrap_or_default(),
        }
    }

    /// A raw request as admin, with a JSON body when `body` is given.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> HttpResponse {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serializing"));
        let headers: &[(&str, &str)] = if body.is_some() { &[("Content-Type", "application/json")] } else { &[] };
        self.curl(method, path, Cred::Admin, headers, bytes.as_deref())
    }

    /// Asserts the server process is still running and has logged no panic.
    #[track_caller]
    pub fn assert_healthy(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("kube-apiserver exited ({status}); log:\n{}", self.log_tail());
            }
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!log.contains("panicked"), "the server logged a panic:\n{}", self.log_tail());
    }
}

/// A TLS acceptor for a test's own HTTPS server (a webhook), with a fresh
/// self-signed certificate for `names` (DNS names or IPs); returns it with
/// the certificate's PEM, which the server's clients get as caBundle.
pub fn self_signed_acceptor(names: &[&str]) -> (tokio_rustls::TlsAcceptor, String) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    let ca_pem = ck.cert.pem();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca_pem.as_bytes()).collect::<Result<_, _>>().expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).expect("key PEM");
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    (tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)), ca_pem)
}
