//! --max-requests-inflight, --max-mutating-requests-inflight and
//! --request-timeout: past its limit the server answers 429 with Retry-After
//! and loses no admitted write, watches do not take a slot, health stays
//! answered, and a request that runs out of time gets 504 while its write
//! still happens whole.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{Backend, Cred, HttpResponse, Server};
use serde_json::json;

const TOKEN: &str = "loader-token";

/// A token for a user outside system:masters, whom upstream never limits
/// (the admin certificate is in that group).
fn token_file(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("tokens.csv");
    std::fs::write(&p, format!("{TOKEN},loader,2001,\"loaders\"\n")).expect("writing the token file");
    p
}

/// The sum of the samples of `name` whose labels include every `want`, from
/// a /metrics scrape (the full text format is checked in tests/metrics.rs).
fn metric(s: &Server, name: &str, want: &[(&str, &str)]) -> f64 {
    let text = s.kubectl(&["get", "--raw", "/metrics"]);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, "}"));
            let matches = n == name && want.iter().all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A watch held open by curl as `loader` until the guard is dropped.
struct HeldWatch(Child);

impl HeldWatch {
    fn open(s: &Server, path: &str) -> HeldWatch {
        let (ca, _, _) = s.admin_pem_paths();
        let child = Command::new(e2e::require_tool("curl"))
            .args(["-sSN", "--max-time", "120", "--cacert"])
            .arg(ca)
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .arg(format!("{}{path}", s.url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting curl");
        HeldWatch(child)
    }
}

impl Drop for HeldWatch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn assert_too_many_requests(r: &HttpResponse) {
    let status = r.assert_status(429, "TooManyRequests");
    assert_eq!(status["message"], "Too many requests, please try again later.", "{status}");
    assert_eq!(status["details"]["retryAfterSeconds"], 1, "{status}");
    assert_eq!(r.header("Retry-After"), ["1"], "headers: {}", r.headers);
}

#[test]
fn past_the_in_flight_limit_requests_get_429_and_no_admitted_write_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = token_file(dir.path());
    let mut s = Server::start_with(&[
        "--token-auth-file",
        tokens.to_str().expect("utf-8 path"),
        "--max-requests-inflight",
        "1",
        "--max-mutating-requests-inflight",
        "1",
        // What is limited here is how many requests run, not who may make them.
        "--authorization-mode=AlwaysAllow",
    ]);
    let user = || Cred::Token(TOKEN.into());

    // A watch held open takes no slot: with one read-only slot, reads still
    // go through one at a time while it lasts.
    let _watch = HeldWatch::open(&s, "/api/v1/namespaces/default/configmaps?watch=true");
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&s, "apiserver_longrunning_requests", &[("verb", "WATCH"), ("resource", "configmaps")]) < 1.0 {
        assert!(Instant::now() < deadline, "the watch never became a long-running request");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..3 {
        let r = s.curl("GET", "/api/v1/namespaces/default/configmaps", user(), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = s.curl("GET", "/api/v1/namespaces/default/configmaps/none", user(), &[], None);
        r.assert_status(404, "NotFound");
    }

    // Many concurrent creates against one mutating slot, with /readyz asked
    // throughout; rounds until the limit has shown itself.
    let mut created = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut readyz = Vec::new();
    for round in 0..6 {
        let (answers, ready) = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..12)
                .map(|t| {
                    let s = &s;
                    scope.spawn(move || {
                        (0..6)
                            .map(|i| {
                                let name = format!("load-{round}-{t}-{i}");
                                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": name}, "data": {"n": name}});
                                let bytes = serde_json::to_vec(&body).expect("serializing");
                                let r = s.curl(
                                    "POST",
                                    "/api/v1/namespaces/default/configmaps",
                                    user(),
                                    &[("Content-Type", "application/json")],
                                    Some(&bytes),
                                );
                                (name, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let probe = scope.spawn(|| {
                (0..5)
                    .map(|_| {
                        let r = s.curl("GET", "/readyz", user(), &[], None);
                        std::thread::sleep(Duration::from_millis(50));
                        (r.status, r.text())
                    })
                    .collect::<Vec<_>>()
            });
            let answers: Vec<(String, HttpResponse)> =
                writers.into_iter().flat_map(|w| w.join().expect("a writer thread")).collect();
            (answers, probe.join().expect("the readyz thread"))
        });
        readyz.extend(ready);
        for (name, r) in answers {
            match r.status {
                201 => {
                    assert_eq!(r.json()["metadata"]["name"], name.as_str());
                    created.insert(name);
                }
                429 => {
                    assert_too_many_requests(&r);
                    refused.insert(name);
                }
                other => panic!("create {name}: unexpected {other}: {}", r.text()),
            }
        }
        if !refused.is_empty() && !created.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "no request was refused past the limit ({} created)", created.len());
    assert!(!created.is_empty(), "every request was refused");
    for (code, body) in &readyz {
        assert_eq!((*code, body.as_str()), (200, "ok"), "/readyz during the load");
    }

    // Every admitted create is stored, whole; no refused one is.
    let list = s.kubectl_json(&["get", "configmaps", "-n", "default"]);
    let items = list["items"].as_array().expect("a list");
    let stored: BTreeSet<String> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("load-"))
        .map(str::to_string)
        .collect();
    assert_eq!(stored, created, "stored configmaps differ from the ones answered 201");
    for i in items.iter().filter(|i| i["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("load-"))) {
        assert_eq!(i["data"]["n"], i["metadata"]["name"], "{i}");
    }
    assert!(refused.is_disjoint(&stored));

    // The refusals are counted as upstream counts them.
    let cm = [("verb", "POST"), ("resource", "configmaps")];
    let counted = metric(&s, "apiserver_request_total", &[cm[0], cm[1], ("code", "429")]);
    assert_eq!(counted, refused.len() as f64);
    let terminated = metric(&s, "apiserver_request_terminations_total", &[cm[0], cm[1], ("code", "429")]);
    assert_eq!(terminated, refused.len() as f64);

    // Afterwards: healthy, and one request at a time is served again.
    let r = s.curl("GET", "/readyz", user(), &[], None);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        user(),
        &[("Content-Type", "application/json")],
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"after"}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    s.assert_healthy();
}

#[test]
fn system_masters_are_never_limited() {
    // Upstream lets system:masters through a full pool; the admin
    // certificate is in that group, and kubectl works through a burst.
    let mut s = Server::start_with(&["--max-requests-inflight", "1", "--max-mutating-requests-inflight", "1"]);
    std::thread::scope(|scope| {
        let s = &s;
        let workers: Vec<_> = (0..6)
            .map(|t| {
                scope.spawn(move || {
                    for i in 0..4 {
                        let r = s.request(
                            "POST",
                            "/api/v1/namespaces/default/configmaps",
                            Some(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": format!("admin-{t}-{i}")}})),
                        );
                        assert_eq!(r.status, 201, "{}", r.text());
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker");
        }
    });
    s.assert_healthy();
}

#[test]
fn timeout_query_answers_504_and_the_write_still_happens_whole() {
    let mut s = Server::start_with(&["--request-timeout", "1s"]);
    // A deadline already past when the request is served: the client gets
    // 504 at once, and the handler still runs to the end.
    let r = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps?timeout=1ns",
        Cred::Admin,
        &[("Content-Type", "application/json")],
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"},"data":{"a":"1","b":"2"}}"#),
    );
    let status = r.assert_status(504, "Timeout");
    assert_eq!(status["message"], "Timeout: request did not complete within the allotted timeout");
    assert_eq!(status["details"], json!({}));
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let r = s.request("GET", "/api/v1/namespaces/default/configmaps/late", None);
        if r.status == 200 {
            break r.json();
        }
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(Instant::now() < deadline, "the timed-out create never finished");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stored["data"], json!({"a": "1", "b": "2"}));
    assert!(stored["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{stored}");

    // Reads are served in place rather than on a task of their own: past
    // its deadline a read is the same 504, counted as a termination, and
    // the create above counted as one too.
    for (path, verb) in [("configmaps?timeout=1ns", "LIST"), ("configmaps/late?timeout=1ns", "GET")] {
        let r = s.request("GET", &format!("/api/v1/namespaces/default/{path}"), None);
        let status = r.assert_status(504, "Timeout");
        assert_eq!(status["message"], "Timeout: request did not complete within the allotted timeout");
        assert_eq!(status["details"], json!({}));
        let labels = [("verb", verb), ("resource", "configmaps"), ("code", "504")];
        assert_eq!(metric(&s, "apiserver_request_terminations_total", &labels), 1.0, "{verb}");
    }
    let labels = [("verb", "POST"), ("resource", "configmaps"), ("code", "504")];
    assert_eq!(metric(&s, "apiserver_request_terminations_total", &labels), 1.0);

    // A timeout the server cannot read is a 400, as upstream.
    let r = s.request("GET", "/api/v1/namespaces/default/configmaps?timeout=soon", None);
    let status = r.assert_status(400, "BadRequest");
    assert_eq!(
        status["message"], "invalid timeout specified in the request URL - time: invalid duration \"soon\"",
        "{status}"
    );
    // A longer timeout than the server's is allowed (and capped).
    let r = s.request("GET", "/api/v1/namespaces/default/configmaps?timeout=5m", None);
    assert_eq!(r.status, 200, "{}", r.text());

    // A watch is long-running: it outlives --request-timeout and ends with
    // its own timeoutSeconds.
    let started = Instant::now();
    let r = s.request("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=3", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(2500), "the watch ended after {:?}", started.elapsed());
    s.assert_healthy();
}

/// SIGSTOP to a process this test started, resumed when dropped.
struct Stopped(u32);

impl Stopped {
    fn signal(pid: u32, sig: &str) {
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill {sig} {pid} failed");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Stopped::signal(self.0, "-CONT");
    }
}

/// The pid of the etcd whose data dir is `dir` (the test's private etcd).
fn etcd_pid(dir: &std::path::Path) -> u32 {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_etcd = args.first().is_some_and(|a| a.ends_with("etcd"));
        if is_etcd && args.iter().any(|a| a.contains(&needle)) {
            found.push(pid);
        }
    }
    assert_eq!(found.len(), 1, "expected one etcd on {needle}, found {found:?}");
    found[0]
}

/// The honest slow path: storage that stops answering. A create waits on the
/// stalled etcd past --request-timeout and gets 504; once etcd resumes the
/// write completes whole, and the server serves as before.
fn stalled_storage_gives_504() {
    let mut s = Server::start_with(&["--request-timeout", "1s"]);
    let pid = etcd_pid(s.etcd.as_ref().expect("running on etcd").data_dir());
    let r = {
        Stopped::signal(pid, "-STOP");
        let _resume = Stopped(pid);
        let started = Instant::now();
        let r = s.curl(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Cred::Admin,
            &[("Content-Type", "application/json")],
            Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"stalled"},"data":{"a":"1"}}"#),
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "answered after {took:?}");
        r
    };
    let status = r.assert_status(504, "Timeout");
    assert_eq!(status["message"], "Timeout: request did not complete within the allotted timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let r = s.request("GET", "/api/v1/namespaces/default/configmaps/stalled", None);
        if r.status == 200 {
            break r.json();
        }
        assert!(Instant::now() < deadline, "the stalled create never finished: {} {}", r.status, r.text());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(stored["data"], json!({"a": "1"}));
    s.kubectl(&["create", "configmap", "after-stall"]);
    s.assert_healthy();
}

#[test]
fn stalled_etcd_times_out_and_the_write_completes() {
    // Only etcd can be stalled from outside; the embedded store's slow path
    // is covered by the ?timeout= test above.
    e2e::with_backend(Backend::Etcd, stalled_storage_gives_504);
}

e2e::on_etcd!(
    past_the_in_flight_limit_requests_get_429_and_no_admitted_write_is_lost,
    system_masters_are_never_limited,
    timeout_query_answers_504_and_the_write_still_happens_whole,
);
