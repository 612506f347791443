//! Our server as a process loadgen owns: started on a data dir (and an etcd),
//! timed from spawn to the first /readyz 200, its RSS read from /proc, stopped
//! with SIGTERM (SIGKILL if it lingers) so the embedded store closes cleanly
//! and a restart measures a normal start, not a recovery.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Client, Creds};

/// The unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// How long a start may take before loadgen gives up on it.
const START_LIMIT: Duration = Duration::from_secs(120);

pub struct ServerProc {
    child: Option<Child>,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub creds: Creds,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
}

/// How long a start took.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// Spawn to the first /readyz answered 200, in milliseconds.
    pub readyz_ms: f64,
    /// What the server itself logged as its start time.
    pub logged_ms: Option<f64>,
}

impl ServerProc {
    /// Starts `binary` on `data_dir` (on etcd when `etcd` is given) and waits
    /// until /readyz answers 200.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        etcd: Option<(&str, &str)>,
        log: &Path,
    ) -> Result<(ServerProc, Started), String> {
        let mut cmd = Command::new(binary);
        cmd.arg("--data-dir").arg(data_dir).args(["--secure-port", "0"]);
        if let Some((url, prefix)) = etcd {
            cmd.args(["--etcd-servers", url, "--etcd-prefix", prefix]);
        }
        cmd.env("RUST_LOG", "warn,kube_apiserver=info");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).stdin(Stdio::null());
        let spawned = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("stderr was not piped")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let log_path = log.to_path_buf();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = out.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(rest) = line.split("kube-apiserver ready: ").nth(1) {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let mut proc = ServerProc {
            child: Some(child),
            pid,
            data_dir: data_dir.to_path_buf(),
            creds: Creds { server: String::new(), ca_pem: vec![], cert_pem: vec![], key_pem: vec![] },
            kubeconfig: PathBuf::new(),
            log: log.to_path_buf(),
        };
        let ready = match tokio::time::timeout(START_LIMIT, rx.recv()).await {
            Ok(Some(line)) => line,
            _ => return Err(format!("the server did not log its ready line; log tail:\n{}", proc.log_tail())),
        };
        let field =
            |name: &str| ready.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).map(str::to_string);
        let logged_ms = ready
            .split("started in ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok());
        proc.kubeconfig =
            PathBuf::from(field("kubeconfig").ok_or_else(|| format!("ready line lacks kubeconfig: {ready}"))?);
        proc.creds = Creds::from_kubeconfig(&proc.kubeconfig)?;
        let deadline = spawned + START_LIMIT;
        loop {
            if let Ok(client) = Client::connect(&proc.creds, 1).await {
                if let Ok(a) = client.request(hyper::Method::GET, "/readyz", None).await {
                    if a.status == 200 {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("/readyz never answered 200; log tail:\n{}", proc.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let readyz_ms = spawned.elapsed().as_secs_f64() * 1000.0;
        Ok((proc, Started { readyz_ms, logged_ms }))
    }

    /// The resident set size from /proc/<pid>/status, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_of(self.pid)
    }

    /// CPU time (user and system) the process has used, from /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // The fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 12th and 13th of them.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SEC))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
