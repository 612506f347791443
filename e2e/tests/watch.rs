//! Watches and lists as kubectl drives them, on both backends: `get -w`,
//! `--watch-only`, `wait` for a condition, for deletion and for a jsonpath,
//! `--chunk-size`, and the raw watch protocol (the streaming list's closing
//! bookmark, selector transitions, timeoutSeconds).

use std::sync::mpsc;
use std::time::Duration;

use e2e::Server;
use serde_json::Value;

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no line for {what}"))
}

#[test]
fn kubectl_get_watch_and_watch_only() {
    let s = Server::start();
    s.kubectl(&["create", "configmap", "first", "--from-literal=k=v"]);
    let (mut all, lines) = s.kubectl_background(&["get", "configmaps", "-w", "--output-watch-events"]);
    let header = next_line(&lines, "the header");
    assert!(header.starts_with("EVENT") && header.contains("NAME"), "{header}");
    let first = next_line(&lines, "the initial object");
    assert!(first.starts_with("ADDED") && first.contains("first"), "{first}");
    let ca = next_line(&lines, "the published root CA");
    assert!(ca.starts_with("ADDED") && ca.contains("kube-root-ca.crt"), "{ca}");
    let (mut only, only_lines) = s.kubectl_background(&["get", "configmaps", "--watch-only", "-o", "name"]);
    // --watch-only starts after the current state: nothing until a change.
    assert!(only_lines.recv_timeout(Duration::from_millis(1500)).is_err(), "--watch-only printed the current state");
    s.kubectl(&["create", "configmap", "second", "--from-literal=k=v"]);
    s.kubectl(&["label", "configmap", "second", "x=y"]);
    s.kubectl(&["delete", "configmap", "second"]);
    for (event, what) in [("ADDED", "create"), ("MODIFIED", "label"), ("DELETED", "delete")] {
        let l = next_line(&lines, what);
        assert!(l.starts_with(event) && l.contains("second"), "{what}: {l}");
    }
    let watched: Vec<String> = (0..3).map(|_| next_line(&only_lines, "--watch-only")).collect();
    assert_eq!(watched, ["configmap/second", "configmap/second", "configmap/second"]);
    let _ = all.kill();
    let _ = only.kill();
    let _ = all.wait();
    let _ = only.wait();
}

#[test]
fn kubectl_wait_for_condition_delete_and_jsonpath() {
    let s = Server::start();
    s.create("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: nginx\n");
    let (mut waiter, _) = s.kubectl_background(&["wait", "--for=condition=Ready", "pod/p", "--timeout=60s"]);
    std::thread::sleep(Duration::from_millis(500));
    let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    s.kubectl(&["patch", "pod", "p", "--subresource=status", "--type=merge", "-p", status]);
    let done = waiter.wait().expect("kubectl wait");
    assert!(done.success(), "wait --for=condition=Ready did not see the condition");

    assert_eq!(
        s.kubectl(&["wait", "--for=jsonpath={.status.phase}=Running", "pod/p", "--timeout=30s"]),
        "pod/p condition met\n"
    );
    let (mut gone, _) = s.kubectl_background(&["wait", "--for=delete", "pod/p", "--timeout=60s"]);
    std::thread::sleep(Duration::from_millis(500));
    s.kubectl(&["delete", "pod", "p", "--wait=false"]);
    assert!(gone.wait().expect("kubectl wait").success(), "wait --for=delete did not see the deletion");
    s.kubectl_fails(&["wait", "--for=condition=Ready", "pod/none", "--timeout=2s"], None);
}

#[test]
fn chunked_lists_and_continue() {
    let s = Server::start();
    for i in 0..7 {
        s.kubectl(&["create", "configmap", &format!("c{i}"), "--from-literal=k=v"]);
    }
    let out = s.run(&["get", "configmaps", "--chunk-size=2", "-v=6"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<&str> = out.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "kube-root-ca.crt"]);
    assert_eq!(out.stderr.matches("continue=").count(), 3, "{}", out.stderr);
    let page = s.raw("/api/v1/namespaces/default/configmaps?limit=3");
    assert_eq!(page["metadata"]["remainingItemCount"], 5);
    let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
    // The snapshot holds: a delete after the first page does not show.
    s.kubectl(&["delete", "configmap", "c4"]);
    let rest = s.raw(&format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"));
    let names: Vec<&str> =
        rest["items"].as_array().expect("items").iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["c3", "c4", "c5", "c6", "kube-root-ca.crt"]);
    assert!(s.run(&["get", "--raw", "/api/v1/namespaces/default/configmaps?continue=bogus"], None).code != 0);
}

fn raw_lines(s: &Server, path: &str) -> Vec<Value> {
    let out = s.kubectl(&["get", "--raw", path]);
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn watch_protocol_details() {
    let s = Server::start();
    s.kubectl(&["create", "configmap", "a", "--from-literal=k=v"]);
    s.kubectl(&["label", "configmap", "a", "team=x"]);
    // The streaming list: every object, then the bookmark that ends the
    // initial events, then nothing until timeoutSeconds.
    let events = raw_lines(
        &s,
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
    );
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
    let last = events.last().expect("events");
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let rv: u64 = last["object"]["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).expect("rv");

    // An object leaving a label selection is DELETED to that watcher.
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=team%3Dx&resourceVersion={rv}&timeoutSeconds=20"
    );
    let (mut w, lines) = s.kubectl_background(&["get", "--raw", &path]);
    std::thread::sleep(Duration::from_millis(500));
    s.kubectl(&["label", "configmap", "a", "team-"]);
    let e: Value = serde_json::from_str(&next_line(&lines, "the selector transition")).expect("json");
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("a")));
    // As upstream: the object as the watcher last saw it (still labelled),
    // at the resourceVersion of the change.
    assert_eq!(e["object"]["metadata"]["labels"]["team"], "x", "{e}");
    let now = s.kubectl_json(&["get", "configmap", "a"]);
    assert_eq!(e["object"]["metadata"]["resourceVersion"], now["metadata"]["resourceVersion"]);
    let _ = w.kill();
    let _ = w.wait();
}

e2e::on_etcd!(
    kubectl_get_watch_and_watch_only,
    kubectl_wait_for_condition_delete_and_jsonpath,
    chunked_lists_and_continue,
    watch_protocol_details
);
