//! The memory ceiling (issue 13): a server holding 100,000 ConfigMaps of
//! about 1 KiB, after every one has been read through it (paged LIST at
//! resourceVersion=0, which fills the watch cache, a consistent paged LIST
//! and a watch replaying all of them as ADDED), stays under twice their
//! stored JSON in resident memory. On etcd, etcd's own process is not
//! counted. The objects are written straight into the store before the
//! server starts, so the test spends its time reading, not creating.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::etcd::EtcdStorage;
use generic_server::storage::{PutOptions, Storage};
use serde_json::{json, Value};

const OBJECTS: usize = 100_000;
/// Each object's stored JSON, metadata included.
const OBJECT_BYTES: usize = 1024;
const NAMESPACE: &str = "mem";
/// The ceiling: resident memory over the stored JSON.
const CEILING: f64 = 2.0;
/// Items per LIST page, as a client paging through a large resource reads.
const PAGE: usize = 1000;

/// The stored form of one ConfigMap as the server writes it (no
/// resourceVersion; uid, creationTimestamp and managedFields set), padded
/// to `OBJECT_BYTES`.
fn configmap(i: usize) -> Bytes {
    let name = format!("cm-{i:06}");
    let mut obj = json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": format!("7c1d2b0e-0000-4000-8000-{i:012}"),
            "creationTimestamp": "2026-12-02T16:00:00Z",
            "labels": {"app": "memory", "shard": (i % 10).to_string()},
            "managedFields": [{"manager": "memory-test", "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-02T16:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:pad": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:shard": {}}}}}],
        },
        "data": {"pad": ""},
    });
    let overhead = serde_json::to_vec(&obj).map(|v| v.len()).unwrap_or(0);
    // Letters that vary with the index, so no two bodies are alike.
    let pad: String =
        (0..OBJECT_BYTES.saturating_sub(overhead)).map(|k| (b'a' + ((k + i) % 26) as u8) as char).collect();
    obj["data"]["pad"] = Value::String(pad);
    Bytes::from(serde_json::to_vec(&obj).expect("serializing a ConfigMap"))
}

/// Writes the namespace and the objects through the storage API (many
/// writes in flight, so the embedded store commits them in large batches);
/// returns the bytes of JSON stored.
async fn fill(storage: Arc<dyn Storage>) -> usize {
    let ns = json!({"kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": NAMESPACE, "uid": "7c1d2b0e-0000-4000-8000-ffffffffffff",
            "creationTimestamp": "2026-12-02T16:00:00Z", "labels": {"kubernetes.io/metadata.name": NAMESPACE}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    let ns = Bytes::from(serde_json::to_vec(&ns).expect("serializing the namespace"));
    storage.create(&format!("/registry/namespaces/{NAMESPACE}"), ns, PutOptions::default()).await.expect("namespace");
    let mut stored = 0;
    for chunk in (0..OBJECTS).collect::<Vec<_>>().chunks(512) {
        let writes: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let (s, value) = (storage.clone(), configmap(i));
                stored += value.len();
                let key = format!("/registry/configmaps/{NAMESPACE}/cm-{i:06}");
                tokio::spawn(async move { s.create(&key, value, PutOptions::default()).await })
            })
            .collect();
        for w in writes {
            w.await.expect("a write task").expect("storing a ConfigMap");
        }
    }
    stored
}

/// A field of /proc/PID/status in bytes (VmRSS, RssAnon, RssFile).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading the server's status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|l| l.strip_prefix(':')))
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a size in kB") * 1024
}

fn rss_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS")
}

/// Pages through the namespace's ConfigMaps; returns how many it read.
fn list_all(s: &e2e::Server, resource_version: &str) -> usize {
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let mut path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?limit={PAGE}{resource_version}");
        if !token.is_empty() {
            path.push_str(&format!("&continue={token}"));
        }
        let page = s.request("GET", &path, None);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        let page = page.json();
        // The publishers add kube-root-ca.crt to the namespace meanwhile.
        let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        seen += items.iter().filter(|o| o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("cm-"))).count();
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return seen,
        }
    }
}

/// One server at a time: two filling and reading at once slow each other
/// and disturb what each measures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rss_under_twice_the_json() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let started = Instant::now();
    let mut stored = 0;
    let s = e2e::Server::start_prepared(&[], |data_dir, etcd| {
        let storage: Arc<dyn Storage> = match etcd {
            None => Arc::new(EmbeddedStorage::open(&data_dir.join("state.redb")).expect("opening the store")),
            Some(etcd) => {
                Arc::new(runtime.block_on(EtcdStorage::connect(&[etcd.client_url()], "/registry", None)).expect("etcd"))
            }
        };
        stored = runtime.block_on(fill(storage));
    });
    let filled = started.elapsed();
    let pid = s.pid();
    let rss_started = rss_bytes(pid);

    let mib = |b: u64| b as f64 / 1048576.0;
    assert_eq!(list_all(&s, "&resourceVersion=0"), OBJECTS, "the cached list holds every object");
    eprintln!("RSS after the cached list: {:.1} MiB", mib(rss_bytes(pid)));
    assert_eq!(list_all(&s, ""), OBJECTS, "and so does the consistent one");
    eprintln!("RSS after the consistent list: {:.1} MiB", mib(rss_bytes(pid)));
    // A watch from resourceVersion 0 replays every object as ADDED.
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps?watch=1&resourceVersion=0");
    let (mut watch, lines) = s.kubectl_background(&["get", "--raw", &path]);
    let mut added = 0;
    while added < OBJECTS {
        match lines.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line)
                if line.starts_with(
                    r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm-"#,
                ) =>
            {
                added += 1
            }
            Ok(_) => {}
            Err(e) => panic!("the watch stopped after {added} of {OBJECTS} objects: {e}"),
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    std::thread::sleep(std::time::Duration::from_secs(2));
    let rss = rss_bytes(pid);
    let ratio = rss as f64 / stored as f64;
    eprintln!(
        "{OBJECTS} objects, {:.1} MiB of JSON: RSS {:.1} MiB after start, {:.1} MiB after reading them all \
         ({:.1} anonymous, {:.1} file-backed): {ratio:.2}x (filled in {:.0?}, read in {:.0?})",
        mib(stored as u64),
        mib(rss_started),
        mib(rss),
        mib(status_bytes(pid, "RssAnon")),
        mib(status_bytes(pid, "RssFile")),
        filled,
        started.elapsed() - filled,
    );
    assert!(ratio < CEILING, "RSS {rss} bytes is {ratio:.2}x the {stored} bytes of stored JSON (ceiling {CEILING}x)");
}

#[test]
fn memory_ceiling() {
    rss_under_twice_the_json();
}

e2e::on_etcd!(memory_ceiling);
