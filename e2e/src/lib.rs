//! End-to-end harness: starts the real `kube-apiserver` binary on a free port with
//! a temporary data dir and drives it with the real `kubectl` on PATH.
//!
//! Nothing here fakes a part a user would have: a test that needs a missing tool
//! fails with a message that says which.

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

/// Builds the server binary once per test process and returns its path.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "kube-apiserver-bin", "--bin", "kube-apiserver"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the server binary");
        assert!(status.success(), "building kube-apiserver failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
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

pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
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
        let tmp = tempfile::tempdir().expect("creating a temp dir");
        let data_dir = tmp.path().join("data");
        let mut s = Server {
            child: None,
            log: tmp.path().join("server.log"),
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
        cmd.arg("--data-dir").arg(&self.data_dir).args(["--secure-port", "0"]).args(&self.extra_args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("starting kube-apiserver");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, rx) = mpsc::channel();
        let log_path = self.log.clone();
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(rest) = line.split("kube-apiserver ready: ").nth(1) {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                panic!("kube-apiserver did not become ready; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
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

    /// Stops the process (SIGKILL) and starts it again on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(kubectl_path(self.kubectl_minor));
        cmd.env("KUBECONFIG", &self.kubeconfig).env("HOME", self.data_dir.parent().unwrap_or(&self.data_dir));
        cmd.env_remove("KUBECTL_EXTERNAL_DIFF");
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
