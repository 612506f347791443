//! Storage under stress, on both backends: a SIGKILL in the middle of a write
//! load loses no acknowledged write; and on etcd, an outage makes requests fail
//! fast with a 5xx Status, /readyz/etcd report it, and the server recover by
//! itself, with a watcher that resumes from its last resourceVersion seeing
//! every event once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{with_backend, Backend, Server};

/// A kubectl invocation that can be built on any thread.
#[derive(Clone)]
struct Kubectl {
    binary: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Kubectl {
    fn of(server: &Server) -> Self {
        let home = server.data_dir.parent().unwrap_or(&server.data_dir).join("writers-home");
        std::fs::create_dir_all(&home).expect("home for the writers");
        Kubectl { binary: e2e::kubectl_path(None), kubeconfig: server.kubeconfig.clone(), home }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(args).env("KUBECONFIG", &self.kubeconfig).env("HOME", &self.home);
        c.stdin(Stdio::null());
        c
    }
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let mut server = Server::start();
    let kubectl = Kubectl::of(&server);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (kubectl, acknowledged, stop) = (kubectl.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-{i}");
                    i += 1;
                    let out = kubectl
                        .command(&["create", "configmap", &name, "--from-literal=k=v", "--request-timeout=5s"])
                        .output()
                        .expect("running kubectl");
                    if out.status.success() {
                        acknowledged.lock().expect("lock").push(name);
                    }
                }
            })
        })
        .collect();
    // Let the load build up, then kill the server mid-write.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().expect("lock").len() < 60 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 60, "the load never got going: {} writes acknowledged", acknowledged.len());

    server.restart();
    let names = server.kubectl(&["get", "configmaps", "-o", "name"]);
    let stored: std::collections::HashSet<&str> = names.lines().filter_map(|l| l.strip_prefix("configmap/")).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !stored.contains(n.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes were lost: {lost:?}", lost.len(), acknowledged.len());
    server.assert_healthy();
}

e2e::on_etcd!(sigkill_during_writes_loses_no_acknowledged_write);

/// Follows a watch in a child process, sending each event line.
fn follow_watch(kubectl: &Kubectl, path: &str) -> (std::process::Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = kubectl
        .command(&["get", "--raw", path])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the watch");
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

fn event_name(e: &serde_json::Value) -> String {
    e["object"]["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn event_rv(e: &serde_json::Value) -> String {
    e["object"]["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string()
}

fn outage() {
    let mut server = Server::start();
    let kubectl = Kubectl::of(&server);
    server.kubectl(&["create", "configmap", "before", "--from-literal=k=v"]);
    let rv = server.kubectl(&["get", "configmap", "before", "-o", "jsonpath={.metadata.resourceVersion}"]);
    let watch = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}");
    let (mut first, events) = follow_watch(&kubectl, &watch);
    server.kubectl(&["create", "configmap", "seen-live", "--from-literal=k=v"]);
    let mut seen = Vec::new();
    let live = events.recv_timeout(Duration::from_secs(20)).expect("the watch delivers a live event");
    assert_eq!((live["type"].as_str(), event_name(&live).as_str()), (Some("ADDED"), "seen-live"));
    seen.push(live);

    server.etcd.as_mut().expect("running on etcd").stop();
    let started = Instant::now();
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "during"}});
    let resp = server.request("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let elapsed = started.elapsed();
    resp.assert_status(503, "ServiceUnavailable");
    assert!(elapsed < Duration::from_secs(30), "the write hung for {elapsed:?} instead of failing within its timeout");
    let out = server.kubectl_output(&["get", "configmap", "before"], None);
    assert!(!out.status.success(), "a consistent read with etcd down succeeded");
    // Readiness is re-checked every second; it must turn within a few.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.kubectl_output(&["get", "--raw", "/readyz/etcd"], None).status.success() {
        assert!(Instant::now() < deadline, "/readyz/etcd kept saying ok with etcd down");
        std::thread::sleep(Duration::from_millis(250));
    }

    server.etcd.as_mut().expect("running on etcd").restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.kubectl_output(&["create", "configmap", "after", "--from-literal=k=v"], None);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the server never recovered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.kubectl(&["get", "--raw", "/readyz/etcd"]), "ok");

    // The first watch either carries on or ends; a client that resumes from
    // the last version it saw must get the rest exactly once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut resumed = None;
    while !seen.iter().any(|e| event_name(e) == "after") {
        assert!(Instant::now() < deadline, "the watch never delivered `after`: {seen:?}");
        let source = resumed
            .as_ref()
            .map(|(_, rx): &(std::process::Child, mpsc::Receiver<serde_json::Value>)| rx)
            .unwrap_or(&events);
        match source.recv_timeout(Duration::from_millis(500)) {
            Ok(e) if e["type"] == "BOOKMARK" => {}
            Ok(e) => seen.push(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let last = seen.last().map(event_rv).unwrap_or_else(|| rv.trim().to_string());
                let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={last}");
                if let Some((mut old, _)) = resumed.take() {
                    let _ = old.kill();
                    let _ = old.wait();
                }
                resumed = Some(follow_watch(&kubectl, &path));
            }
        }
    }
    let names: Vec<String> = seen.iter().filter(|e| e["type"] != "ERROR").map(event_name).collect();
    assert_eq!(names, ["seen-live", "after"], "events lost or duplicated across the outage: {seen:?}");
    let _ = first.kill();
    let _ = first.wait();
    if let Some((mut c, _)) = resumed {
        let _ = c.kill();
        let _ = c.wait();
    }
    server.assert_healthy();
}

#[test]
fn etcd_outage_fails_fast_then_recovers_and_watches_resume() {
    with_backend(Backend::Etcd, outage);
}
