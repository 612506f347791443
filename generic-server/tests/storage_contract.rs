//! The storage contract: one suite of async fns taking `Arc<dyn Storage>`, run
//! against the embedded (redb) backend and against etcd (a private etcd per test,
//! see support/etcd.rs). Below them, etcd-only tests: key layout under
//! --etcd-prefix, compaction (the embedded window is 100k events, too many to
//! write in a unit test), leases, and etcd stopping and returning under a watch.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use generic_server::registry::store::{ListOptions as StoreListOptions, WatchStart, WriteOptions};
use generic_server::registry::{AdmissionChain, DefaultStrategy, Registration, Store};
use generic_server::storage::cacher::Cacher;
use generic_server::storage::{
    EventType, Freshness, GetOptions, KeyValue, ListOptions, ListResult, ProgressRequests, PutOptions, Remaining,
    Storage, StorageError, WatchEvent, WatchOptions, WatchStream,
};
use k8s_openapi::api::core::v1::ConfigMap;

const WAIT: Duration = Duration::from_secs(10);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch error: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// Asserts nothing arrives on the watch for a moment.
async fn quiet(w: &mut WatchStream) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(500), w.next()).await {
        panic!("unexpected watch item: {got:?}");
    }
}

// ---------------------------------------------------------------- the contract

async fn crud(s: Arc<dyn Storage>) {
    assert!(s.get("/registry/configmaps/ns/a", GetOptions::default()).await.unwrap().is_none());
    let r1 = s.create("/registry/configmaps/ns/a", b("1"), PutOptions::default()).await.unwrap();
    assert!(matches!(
        s.create("/registry/configmaps/ns/a", b("x"), PutOptions::default()).await,
        Err(StorageError::AlreadyExists(_))
    ));
    let got = s.get("/registry/configmaps/ns/a", GetOptions::default()).await.unwrap().unwrap();
    assert_eq!(got.key, "/registry/configmaps/ns/a");
    assert_eq!((got.value, got.mod_revision, got.create_revision), (b("1"), r1, r1));
    assert_eq!(s.current_revision().await.unwrap(), r1);

    let r2 = s.create("/registry/configmaps/ns/b", b("2"), PutOptions::default()).await.unwrap();
    assert!(r2 > r1);
    let r3 = s.update("/registry/configmaps/ns/a", b("3"), r1, PutOptions::default()).await.unwrap();
    assert!(r3 > r2);
    let got = s.get("/registry/configmaps/ns/a", GetOptions::default()).await.unwrap().unwrap();
    assert_eq!((got.value, got.mod_revision, got.create_revision), (b("3"), r3, r1));
    assert_eq!(s.current_revision().await.unwrap(), r3);

    let (old, r4) = s.delete("/registry/configmaps/ns/a", None).await.unwrap();
    assert!(r4 > r3);
    assert_eq!(
        (old.key.as_str(), old.value, old.mod_revision, old.create_revision),
        ("/registry/configmaps/ns/a", b("3"), r3, r1)
    );
    assert!(s.get("/registry/configmaps/ns/a", GetOptions::default()).await.unwrap().is_none());
    assert!(matches!(s.delete("/registry/configmaps/ns/a", None).await, Err(StorageError::NotFound(_))));
    assert!(matches!(
        s.update("/registry/configmaps/ns/a", b("4"), r3, PutOptions::default()).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(s.current_revision().await.unwrap(), r4);

    // Re-creating gives a new create_revision.
    let r5 = s.create("/registry/configmaps/ns/a", b("5"), PutOptions::default()).await.unwrap();
    let got = s.get("/registry/configmaps/ns/a", GetOptions::default()).await.unwrap().unwrap();
    assert_eq!((got.mod_revision, got.create_revision), (r5, r5));
}

async fn cas_conflicts(s: Arc<dyn Storage>) {
    let r1 = s.create("/registry/pods/ns/p", b("v1"), PutOptions::default()).await.unwrap();
    let r2 = s.update("/registry/pods/ns/p", b("v2"), r1, PutOptions::default()).await.unwrap();
    // A stale update: Conflict carrying what is there now.
    match s.update("/registry/pods/ns/p", b("stale"), r1, PutOptions::default()).await {
        Err(StorageError::Conflict { key, current: Some(current) }) => {
            assert_eq!(key, "/registry/pods/ns/p");
            assert_eq!((current.value, current.mod_revision, current.create_revision), (b("v2"), r2, r1));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // 0 is never a key's revision.
    assert!(matches!(
        s.update("/registry/pods/ns/p", b("x"), 0, PutOptions::default()).await,
        Err(StorageError::Conflict { .. })
    ));
    // A stale guarded delete: Conflict, and the key stays.
    match s.delete("/registry/pods/ns/p", Some(r1)).await {
        Err(StorageError::Conflict { current: Some(current), .. }) => assert_eq!(current.mod_revision, r2),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("/registry/pods/ns/p", GetOptions::default()).await.unwrap().unwrap().value, b("v2"));
    let (old, _) = s.delete("/registry/pods/ns/p", Some(r2)).await.unwrap();
    assert_eq!(old.value, b("v2"));
    assert!(matches!(s.delete("/registry/pods/ns/p", Some(r2)).await, Err(StorageError::NotFound(_))));

    // Concurrent read-modify-write loops lose no increment.
    s.create("/registry/counters/ns/c", b("0"), PutOptions::default()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                loop {
                    let cur = s.get("/registry/counters/ns/c", GetOptions::default()).await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    match s
                        .update(
                            "/registry/counters/ns/c",
                            b(&(n + 1).to_string()),
                            cur.mod_revision,
                            PutOptions::default(),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StorageError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get("/registry/counters/ns/c", GetOptions::default()).await.unwrap().unwrap().value, b("40"));
}

async fn list_paging_and_count(s: Arc<dyn Storage>) {
    for name in ["e", "a", "c", "b", "d"] {
        s.create(&format!("/registry/secrets/ns/{name}"), b(name), PutOptions::default()).await.unwrap();
    }
    // Neighbours that a sloppy prefix would pick up.
    s.create("/registry/secrets/ns2/z", b("other"), PutOptions::default()).await.unwrap();
    s.create("/registry/secretsx/ns/a", b("other"), PutOptions::default()).await.unwrap();
    let rev = s.create("/registry/secret", b("other"), PutOptions::default()).await.unwrap();

    let all = s.list("/registry/secrets/ns/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/secrets/ns/a",
            "/registry/secrets/ns/b",
            "/registry/secrets/ns/c",
            "/registry/secrets/ns/d",
            "/registry/secrets/ns/e"
        ]
    );
    assert_eq!((all.remaining, all.revision), (0, rev));
    assert_eq!(all.items[2].value, b("c"));

    let p1 = s.list("/registry/secrets/ns/", ListOptions { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/registry/secrets/ns/a", "/registry/secrets/ns/b"]
    );
    assert_eq!((p1.remaining, p1.revision), (3, rev));
    let p2 = s
        .list(
            "/registry/secrets/ns/",
            ListOptions { start_after: Some(&p1.items[1].key), limit: 2, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/registry/secrets/ns/c", "/registry/secrets/ns/d"]
    );
    assert_eq!(p2.remaining, 1);
    let p3 = s
        .list(
            "/registry/secrets/ns/",
            ListOptions { start_after: Some(&p2.items[1].key), limit: 2, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p3.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/registry/secrets/ns/e"]);
    assert_eq!(p3.remaining, 0);
    // Asked only whether more follow: a walk page by page ends exactly
    // where the counted pages do, now and at a past revision.
    for revision in [None, Some(rev)] {
        let mut walked = Vec::new();
        let mut start_after: Option<String> = None;
        loop {
            let opts =
                ListOptions { start_after: start_after.as_deref(), limit: 2, revision, remaining: Remaining::Any };
            let page = s.list("/registry/secrets/ns/", opts).await.unwrap();
            walked.extend(page.items.iter().map(|kv| kv.key.clone()));
            match page.items.last() {
                Some(last) if page.remaining > 0 => start_after = Some(last.key.clone()),
                _ => break,
            }
        }
        assert_eq!(walked, keys, "at {revision:?}");
    }
    // start_after a key that no longer exists still continues after it.
    let p = s
        .list(
            "/registry/secrets/ns/",
            ListOptions { start_after: Some("/registry/secrets/ns/bb"), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(p.items.first().map(|kv| kv.key.as_str()), Some("/registry/secrets/ns/c"));

    let across = s.list("/registry/secrets/", ListOptions::default()).await.unwrap();
    assert_eq!(across.items.len(), 6);
    assert!(s.list("/registry/nothing/", ListOptions::default()).await.unwrap().items.is_empty());

    assert_eq!(s.count("/registry/secrets/ns/").await.unwrap(), 5);
    assert_eq!(s.count("/registry/secrets/").await.unwrap(), 6);
    assert_eq!(s.count("/registry/nothing/").await.unwrap(), 0);

    // The list revision moves with writes.
    let r = s.delete("/registry/secrets/ns/a", None).await.unwrap().1;
    let after = s.list("/registry/secrets/ns/", ListOptions { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!((after.revision, after.remaining, after.items[0].key.as_str()), (r, 3, "/registry/secrets/ns/b"));
}

/// Reads at a revision see the state as it was then (a continue token's
/// snapshot): values, revisions and absences, paged.
async fn reads_at_a_revision(s: Arc<dyn Storage>) {
    let r1 = s.create("/registry/r/ns/a", b("a1"), PutOptions::default()).await.unwrap();
    let rb = s.create("/registry/r/ns/b", b("b1"), PutOptions::default()).await.unwrap();
    let snapshot = s.current_revision().await.unwrap();
    let r2 = s.update("/registry/r/ns/a", b("a2"), r1, PutOptions::default()).await.unwrap();
    s.delete("/registry/r/ns/b", None).await.unwrap();
    s.create("/registry/r/ns/c", b("c1"), PutOptions::default()).await.unwrap();
    // Changed more than once since: the snapshot has the state before the first change.
    s.create("/registry/r/ns/d", b("d1"), PutOptions::default()).await.unwrap();
    s.delete("/registry/r/ns/d", None).await.unwrap();
    let r3 = s.update("/registry/r/ns/a", b("a3"), r2, PutOptions::default()).await.unwrap();

    let at = GetOptions { revision: Some(snapshot) };
    let a = s.get("/registry/r/ns/a", at).await.unwrap().unwrap();
    assert_eq!((a.value, a.mod_revision, a.create_revision), (b("a1"), r1, r1));
    let gone = s.get("/registry/r/ns/b", at).await.unwrap().unwrap();
    assert_eq!((gone.value, gone.mod_revision), (b("b1"), rb));
    assert!(s.get("/registry/r/ns/c", at).await.unwrap().is_none(), "created after the snapshot");
    assert!(s.get("/registry/r/ns/d", at).await.unwrap().is_none(), "created and deleted after the snapshot");
    assert_eq!(s.get("/registry/r/ns/a", GetOptions { revision: Some(r2) }).await.unwrap().unwrap().value, b("a2"));
    assert_eq!(s.get("/registry/r/ns/a", GetOptions::default()).await.unwrap().unwrap().value, b("a3"));
    assert_eq!(s.get("/registry/r/ns/a", GetOptions { revision: Some(r3) }).await.unwrap().unwrap().value, b("a3"));

    let page = s.list("/registry/r/ns/", ListOptions { limit: 1, revision: Some(snapshot), ..Default::default() });
    let page = page.await.unwrap();
    assert_eq!(
        (page.items.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), page.remaining, page.revision),
        (vec![b("a1")], 1, snapshot)
    );
    let rest = s
        .list(
            "/registry/r/ns/",
            ListOptions {
                start_after: Some("/registry/r/ns/a"),
                limit: 0,
                revision: Some(snapshot),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect::<Vec<_>>(),
        [("/registry/r/ns/b", b("b1"))]
    );
    let now = s.list("/registry/r/ns/", ListOptions::default()).await.unwrap();
    assert_eq!(
        now.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/registry/r/ns/a", "/registry/r/ns/c"]
    );
}

async fn watch_replay_then_live(s: Arc<dyn Storage>) {
    let r1 = s.create("/registry/a/ns/x", b("1"), PutOptions::default()).await.unwrap();
    let r2 = s.update("/registry/a/ns/x", b("2"), r1, PutOptions::default()).await.unwrap();
    let r3 = s.create("/registry/a/ns/y", b("y"), PutOptions::default()).await.unwrap();

    // From r1: replays r2 and r3, then follows live writes.
    let mut w = s.watch("/registry/a/", WatchOptions::after(r1)).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (e.event_type, e.revision(), e.kv.key.as_str(), e.kv.value.clone()),
        (EventType::Put, r2, "/registry/a/ns/x", b("2"))
    );
    assert_eq!(e.kv.create_revision, r1);
    let prev = e.prev.expect("update has prev");
    assert_eq!((prev.value, prev.mod_revision), (b("1"), r1));
    let e = next(&mut w).await;
    assert_eq!((e.event_type, e.revision(), e.kv.create_revision), (EventType::Put, r3, r3));
    assert!(e.prev.is_none(), "create has no prev");

    let (_, r4) = s.delete("/registry/a/ns/x", None).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (e.event_type, e.revision(), e.kv.key.as_str(), e.kv.value.clone()),
        (EventType::Delete, r4, "/registry/a/ns/x", b("2"))
    );
    assert_eq!(e.prev.map(|p| (p.value, p.mod_revision)), Some((b("2"), r2)));

    let r5 = s.create("/registry/a/ns/z", b("z"), PutOptions::default()).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.event_type, e.revision(), e.kv.key.as_str()), (EventType::Put, r5, "/registry/a/ns/z"));

    // From the current revision: nothing old, only what comes next.
    let mut w2 = s.watch("/registry/a/", WatchOptions::after(r5)).await.unwrap();
    quiet(&mut w2).await;
    let r6 = s.update("/registry/a/ns/z", b("zz"), r5, PutOptions::default()).await.unwrap();
    assert_eq!(next(&mut w2).await.revision(), r6);
    assert_eq!(next(&mut w).await.revision(), r6);

    // From 0: the whole retained history, in order.
    let mut w3 = s.watch("/registry/a/", WatchOptions::after(0)).await.unwrap();
    let mut revs = Vec::new();
    for _ in 0..6 {
        revs.push(next(&mut w3).await.revision());
    }
    assert_eq!(revs, [r1, r2, r3, r4, r5, r6]);
}

async fn watch_prefix_isolation(s: Arc<dyn Storage>) {
    let start = s.current_revision().await.unwrap();
    let mut wa = s.watch("/registry/a/", WatchOptions::after(start)).await.unwrap();
    let mut wns = s.watch("/registry/a/ns1/", WatchOptions::after(start)).await.unwrap();
    s.create("/registry/ab/ns1/x", b("-"), PutOptions::default()).await.unwrap();
    s.create("/registry/b/ns1/x", b("-"), PutOptions::default()).await.unwrap();
    s.create("/registry/a", b("-"), PutOptions::default()).await.unwrap();
    let r_ns2 = s.create("/registry/a/ns2/x", b("-"), PutOptions::default()).await.unwrap();
    let r_ns1 = s.create("/registry/a/ns1/x", b("-"), PutOptions::default()).await.unwrap();
    s.create("/registry/a/ns10/x", b("-"), PutOptions::default()).await.unwrap();

    let e = next(&mut wa).await;
    assert_eq!((e.revision(), e.kv.key.as_str()), (r_ns2, "/registry/a/ns2/x"));
    let e = next(&mut wa).await;
    assert_eq!((e.revision(), e.kv.key.as_str()), (r_ns1, "/registry/a/ns1/x"));
    let e = next(&mut wa).await;
    assert_eq!(e.kv.key, "/registry/a/ns10/x");
    let e = next(&mut wns).await;
    assert_eq!((e.revision(), e.kv.key.as_str()), (r_ns1, "/registry/a/ns1/x"));
    quiet(&mut wns).await;
    quiet(&mut wa).await;
}

/// The watch cache over this backend: a watcher that stops reading is cut
/// off once it is a buffer behind (its stream errs and ends, as upstream's
/// cacher terminates it), while a watcher that keeps up gets every event;
/// nothing the slow one does holds up the writes or the other watcher.
async fn slow_watcher_cut_off(s: Arc<dyn Storage>) {
    const BUFFER: usize = 8;
    let cache = Cacher::with_watcher_buffer(s.clone(), "/registry/slow/", BUFFER);
    let start = s.create("/registry/slow/ns/x", b("0"), PutOptions::default()).await.unwrap();
    let mut fast = cache.watch("/registry/slow/", start).await.expect("the cache serves the watch");
    let mut slow = cache.watch("/registry/slow/", start).await.expect("the cache serves the watch");
    let mut rev = start;
    let writes = 3 * BUFFER;
    for i in 1..=writes {
        rev = s.update("/registry/slow/ns/x", b(&i.to_string()), rev, PutOptions::default()).await.unwrap();
        let e = tokio::time::timeout(WAIT, fast.next()).await.expect("the fast watcher waits on nobody");
        let e = e.expect("the fast watcher is not cut off").expect("no error for the fast watcher");
        assert_eq!((e.revision(), e.value.kv.value.as_ref()), (rev, i.to_string().as_bytes()));
    }
    let (mut delivered, mut last_seen) = (0, start);
    loop {
        match tokio::time::timeout(WAIT, slow.next()).await.expect("the slow watch ends rather than hangs") {
            Some(Ok(e)) => (delivered, last_seen) = (delivered + 1, e.revision()),
            Some(Err(StorageError::Unavailable(_))) => break,
            other => panic!("expected the slow watcher to be cut off, got {other:?}"),
        }
    }
    assert!(delivered < writes, "the slow watcher was cut off, not fed everything");
    assert!(slow.next().await.is_none(), "a cut-off watch ends");
    // The cache goes on serving: a watch resuming from the last revision
    // the slow watcher saw gets the rest from the window.
    let mut resumed = cache.watch("/registry/slow/", last_seen).await.expect("inside the window");
    assert!(tokio::time::timeout(WAIT, resumed.next()).await.unwrap().unwrap().is_ok());
}

/// A watch asked for progress reports a revision at least the store's
/// current one when asked, after every change under its prefix up to it,
/// even when the writes since were all elsewhere in the store.
async fn watch_progress(s: Arc<dyn Storage>) {
    let start = s.create("/registry/p/ns/a", b("1"), PutOptions::default()).await.unwrap();
    let progress = ProgressRequests::default();
    let opts = WatchOptions { after: start, progress: Some(progress.clone()) };
    let mut w = s.watch("/registry/p/", opts).await.unwrap();
    let mine = s.update("/registry/p/ns/a", b("2"), start, PutOptions::default()).await.unwrap();
    for i in 0..5 {
        s.create(&format!("/registry/q/ns/{i}"), b("-"), PutOptions::default()).await.unwrap();
    }
    let now = s.current_revision().await.unwrap();
    assert!(now > mine + 4);
    let e = next(&mut w).await;
    assert_eq!((e.event_type, e.revision()), (EventType::Put, mine));
    // The tests' etcd orders progress after events (e2e::etcd installs one
    // that does), so both backends answer progress requests.
    assert!(progress.answered(), "the watch refused progress requests");
    // etcd may ignore a request while the watch is still catching up: ask again.
    let reported = loop {
        progress.request();
        match tokio::time::timeout(Duration::from_millis(500), w.next()).await {
            Ok(Some(Ok(e))) => {
                assert_eq!(e.event_type, EventType::Progress, "only progress, nothing from elsewhere: {e:?}");
                break e.revision();
            }
            Ok(other) => panic!("watch ended or failed: {other:?}"),
            Err(_) => continue,
        }
    };
    assert!(reported >= now, "progress at {reported}, the store was at {now} when asked");
    // Without a request, nothing.
    quiet(&mut w).await;
}

/// A Store of ConfigMaps over `s` with a watch cache, counting the reads
/// that reach storage; the cache is filled before it is returned.
async fn cached_store(s: Arc<dyn Storage>) -> (Arc<Store>, Arc<CountingReads>, bool) {
    let counting = Arc::new(CountingReads { inner: s, reads: AtomicUsize::new(0) });
    let storage: Arc<dyn Storage> = counting.clone();
    let cache = Cacher::new(storage.clone(), "/registry/configmaps/");
    let reg = Registration::of::<ConfigMap>(DefaultStrategy);
    let store = Arc::new(Store::new(reg, storage, AdmissionChain::empty()).with_cache(cache.clone()));
    // A watch starts the cache and waits for it to fill.
    drop(store.watch("ns", &StoreListOptions::default(), WatchStart::Now).await.unwrap());
    let consistent_from_cache = cache.serves_consistent_reads();
    (store, counting, consistent_from_cache)
}

/// Storage with its reads counted: the test's view of which reads the
/// cache answered.
struct CountingReads {
    inner: Arc<dyn Storage>,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl Storage for CountingReads {
    async fn get(&self, key: &str, opts: GetOptions) -> generic_server::storage::Result<Option<KeyValue>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key, opts).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> generic_server::storage::Result<ListResult> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes, opts: PutOptions) -> generic_server::storage::Result<u64> {
        self.inner.create(key, value, opts).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
        opts: PutOptions,
    ) -> generic_server::storage::Result<u64> {
        self.inner.update(key, value, expected, opts).await
    }
    async fn delete(&self, key: &str, expected: Option<u64>) -> generic_server::storage::Result<(KeyValue, u64)> {
        self.inner.delete(key, expected).await
    }
    async fn count(&self, prefix: &str) -> generic_server::storage::Result<u64> {
        self.inner.count(prefix).await
    }
    async fn current_revision(&self) -> generic_server::storage::Result<u64> {
        self.inner.current_revision().await
    }
    async fn watch(&self, prefix: &str, opts: WatchOptions) -> generic_server::storage::Result<WatchStream> {
        self.inner.watch(prefix, opts).await
    }
}

fn configmap(name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": value}})
}

fn data_of(o: &generic_server::registry::CachedObject) -> (String, String) {
    let o = o.value();
    let field = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    (field(&o["metadata"]["name"]), field(&o["data"]["v"]))
}

/// Consistent GETs and LISTs (no resourceVersion) are answered from the
/// watch cache, and a write acknowledged before one is always in it, also
/// when the last writes were to other resources.
async fn consistent_reads_from_cache(s: Arc<dyn Storage>, backend: &str) {
    let (store, counting, from_cache) = cached_store(s.clone()).await;
    assert!(from_cache, "{backend}: consistent reads are the cache's");
    let consistent = StoreListOptions::default();
    assert_eq!(consistent.freshness, Freshness::Consistent);
    for i in 0..20 {
        let written = store.create("ns", configmap(&format!("c{i}"), "1"), &WriteOptions::default()).await.unwrap();
        let mut changed = written.object.clone();
        changed["data"]["v"] = serde_json::json!("2");
        let updated = store.update("ns", &format!("c{i}"), changed, None, &WriteOptions::default()).await.unwrap();
        // A write elsewhere moves the store's revision past the cache's
        // last event: only progress tells the cache it has missed nothing.
        s.create(&format!("/registry/other/ns/{i}"), b("-"), PutOptions::default()).await.unwrap();
        let before = counting.reads.load(Ordering::SeqCst);
        let got = store.get_object("ns", &format!("c{i}"), Freshness::Consistent).await.unwrap();
        assert_eq!(data_of(&got), (format!("c{i}"), "2".into()), "a consistent GET sees the acknowledged update");
        assert_eq!(got.value()["metadata"]["resourceVersion"], updated.object["metadata"]["resourceVersion"]);
        let list = store.list_objects("ns", &consistent).await.unwrap();
        assert_eq!(list.items.len(), i + 1, "a consistent LIST sees every acknowledged create");
        assert!(list.items.iter().all(|o| data_of(o).1 == "2"), "and every acknowledged update");
        let reads = counting.reads.load(Ordering::SeqCst) - before;
        if from_cache {
            assert_eq!(reads, 0, "both answered from the cache");
        } else {
            assert_eq!(reads, 2, "both answered by storage");
        }
    }
    store.delete("ns", "c0", &Default::default()).await.unwrap();
    assert!(store.get_object("ns", "c0", Freshness::Consistent).await.is_err(), "a delete is seen at once");
    assert_eq!(store.list_objects("ns", &consistent).await.unwrap().items.len(), 19);
}

/// A paginated LIST reads one snapshot: pages after a concurrent create,
/// update and delete still show the state of the first page's revision,
/// and they come from the cache while its window holds the changes since.
async fn pagination_across_a_concurrent_write(s: Arc<dyn Storage>) {
    let (store, counting, from_cache) = cached_store(s.clone()).await;
    for name in ["a", "b", "c", "d", "e"] {
        store.create("ns", configmap(name, "old"), &WriteOptions::default()).await.unwrap();
    }
    let first = StoreListOptions { limit: 2, ..Default::default() };
    let before = counting.reads.load(Ordering::SeqCst);
    let page = store.list_objects("ns", &first).await.unwrap();
    let names: Vec<_> = page.items.iter().map(|o| data_of(o).0).collect();
    assert_eq!(names, ["a", "b"]);
    let rv = page.metadata["resourceVersion"].clone();
    let mut token = page.metadata.get("continue").and_then(|t| t.as_str()).map(str::to_string);
    // Concurrent writes: one updated, one deleted, one created, one after
    // the first page's keys.
    let mut d = store.get("ns", "d").await.unwrap();
    d["data"]["v"] = serde_json::json!("new");
    store.update("ns", "d", d, None, &WriteOptions::default()).await.unwrap();
    store.delete("ns", "c", &Default::default()).await.unwrap();
    store.create("ns", configmap("cc", "new"), &WriteOptions::default()).await.unwrap();
    let mut seen = Vec::new();
    while let Some(t) = token {
        let next = StoreListOptions { limit: 2, continue_token: Some(t), ..Default::default() };
        let page = store.list_objects("ns", &next).await.unwrap();
        assert_eq!(page.metadata["resourceVersion"], rv, "every page at the first page's revision");
        seen.extend(page.items.iter().map(|o| data_of(o)));
        token = page.metadata.get("continue").and_then(|t| t.as_str()).map(str::to_string);
    }
    let expect: Vec<(String, String)> = ["c", "d", "e"].iter().map(|n| (n.to_string(), "old".to_string())).collect();
    assert_eq!(seen, expect, "the snapshot: c still there, d unchanged, cc not yet created");
    // The writes above read storage (a write reads the latest state), and
    // so does the first page when the cache cannot serve consistent reads;
    // the pages at the snapshot did not.
    let writes_reads = if from_cache { 2 } else { 3 };
    assert!(
        counting.reads.load(Ordering::SeqCst) - before <= writes_reads,
        "pages served from the cache ({} storage reads)",
        counting.reads.load(Ordering::SeqCst) - before
    );
    let now = store.list_objects("ns", &StoreListOptions::default()).await.unwrap();
    let names: Vec<_> = now.items.iter().map(|o| data_of(o).0).collect();
    assert_eq!(names, ["a", "b", "cc", "d", "e"]);
}

/// A change a watcher has seen is in the current revision: a controller that
/// hears of an object and then reads consistently (through the watch cache,
/// which waits for that revision) finds it.
async fn seen_changes_are_current(s: Arc<dyn Storage>) {
    let mut w =
        s.watch("/registry/configmaps/", WatchOptions::after(s.current_revision().await.unwrap())).await.unwrap();
    let writes = 1000;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                s.create(&format!("/registry/configmaps/ns/w{i}"), b("x"), PutOptions::default()).await.unwrap();
            }
        })
    };
    for _ in 0..writes {
        let seen = next(&mut w).await.revision();
        let current = s.current_revision().await.unwrap();
        assert!(current >= seen, "a watcher saw revision {seen} while the current revision was {current}");
    }
    writer.await.unwrap();
}

/// Runs every contract fn against one backend kind.
macro_rules! contract_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn crud() {
                let bk = $make;
                super::crud(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cas_conflicts() {
                let bk = $make;
                super::cas_conflicts(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn list_paging_and_count() {
                let bk = $make;
                super::list_paging_and_count(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn reads_at_a_revision() {
                let bk = $make;
                super::reads_at_a_revision(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_replay_then_live() {
                let bk = $make;
                super::watch_replay_then_live(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_prefix_isolation() {
                let bk = $make;
                super::watch_prefix_isolation(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn slow_watcher_cut_off() {
                let bk = $make;
                super::slow_watcher_cut_off(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_progress() {
                let bk = $make;
                super::watch_progress(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn consistent_reads_from_cache() {
                let bk = $make;
                super::consistent_reads_from_cache(bk.storage.clone(), stringify!($backend)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn seen_changes_are_current() {
                let bk = $make;
                super::seen_changes_are_current(bk.storage.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn pagination_across_a_concurrent_write() {
                let bk = $make;
                super::pagination_across_a_concurrent_write(bk.storage.clone()).await;
            }
        }
    };
}

contract_tests!(embedded, support::embedded());
contract_tests!(etcd, support::etcd().await);

// ---------------------------------------------------------------- etcd only

mod etcd_only {
    use super::*;
    use generic_server::storage::etcd::EtcdStorage;

    async fn raw_client(url: &str) -> etcd_client::Client {
        etcd_client::Client::connect([url], None).await.unwrap()
    }

    /// --etcd-prefix replaces the leading /registry; the default keeps upstream's layout.
    #[tokio::test]
    async fn key_layout_under_the_prefix() {
        let bk = support::etcd_with_prefix("/custom/").await;
        let url = bk.server.as_ref().unwrap().client_url();
        bk.storage.create("/registry/configmaps/ns/cm", b("v"), PutOptions::default()).await.unwrap();
        let mut raw = raw_client(&url).await;
        let resp = raw.get("/custom/configmaps/ns/cm", None).await.unwrap();
        assert_eq!(resp.kvs().first().map(|kv| kv.value().to_vec()), Some(b"v".to_vec()));
        assert_eq!(raw.get("/registry/configmaps/ns/cm", None).await.unwrap().kvs().len(), 0);
        // Keys written by someone else under the prefix are ours, mapped back.
        raw.put("/custom/configmaps/ns/other", "o", None).await.unwrap();
        let l = bk.storage.list("/registry/configmaps/", ListOptions::default()).await.unwrap();
        assert_eq!(
            l.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
            ["/registry/configmaps/ns/cm", "/registry/configmaps/ns/other"]
        );

        let d = support::etcd().await;
        d.storage.create("/registry/configmaps/ns/cm", b("v"), PutOptions::default()).await.unwrap();
        let mut raw = raw_client(&d.server.as_ref().unwrap().client_url()).await;
        assert_eq!(raw.get("/registry/configmaps/ns/cm", None).await.unwrap().kvs().len(), 1);
    }

    /// An etcd that was never there: connecting is lazy, every call is
    /// Unavailable within the request timeout.
    #[tokio::test]
    async fn unreachable_etcd_is_unavailable_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let s = EtcdStorage::connect_with_timeout(&[url], "/registry", None, support::ETCD_TEST_TIMEOUT).await.unwrap();
        let bound = support::ETCD_TEST_TIMEOUT + Duration::from_secs(2);
        let t = Instant::now();
        assert!(matches!(s.get("/registry/a/b", GetOptions::default()).await, Err(StorageError::Unavailable(_))));
        assert!(matches!(s.watch("/registry/a/", WatchOptions::after(0)).await, Err(StorageError::Unavailable(_))));
        assert!(matches!(s.health().await, Err(StorageError::Unavailable(_))));
        assert!(t.elapsed() < bound * 3, "took {:?}", t.elapsed());
        assert!(EtcdStorage::connect(&[], "/registry", None).await.is_err());
    }

    #[tokio::test]
    async fn compaction_is_reported_as_compacted() {
        let bk = support::etcd().await;
        let s = bk.storage.clone();
        let etcd = bk.etcd.clone().unwrap();
        let r1 = s.create("/registry/pods/ns/a", b("1"), PutOptions::default()).await.unwrap();
        let r2 = s.update("/registry/pods/ns/a", b("2"), r1, PutOptions::default()).await.unwrap();
        let r3 = s.update("/registry/pods/ns/a", b("3"), r2, PutOptions::default()).await.unwrap();
        let r4 = s.update("/registry/pods/ns/a", b("4"), r3, PutOptions::default()).await.unwrap();
        etcd.compact(r3).await.unwrap();
        etcd.compact(r2).await.unwrap(); // already compacted further: fine

        // Watching from before the oldest retained revision is Compacted(oldest).
        match s.watch("/registry/pods/", WatchOptions::after(r1)).await {
            Err(StorageError::Compacted(oldest)) => assert_eq!(oldest, r3),
            Err(e) => panic!("expected Compacted, got {e}"),
            Ok(_) => panic!("expected Compacted, got a watch"),
        }
        // From r2 (events after r2, i.e. from r3) still works.
        let mut w = s.watch("/registry/pods/", WatchOptions::after(r2)).await.unwrap();
        assert_eq!(next(&mut w).await.revision(), r3);
        assert_eq!(next(&mut w).await.revision(), r4);
        // A paged list at a compacted revision.
        assert!(
            matches!(etcd.list("/registry/pods/", ListOptions { revision: Some(r2), ..Default::default() }).await, Err(StorageError::Compacted(r)) if r == r3)
        );
        let l = etcd.list("/registry/pods/", ListOptions { revision: Some(r3), ..Default::default() }).await.unwrap();
        assert_eq!((l.revision, l.items[0].value.clone()), (r3, b("3")));
    }

    /// A whole prefix is read in chunks at one revision: every key once, in
    /// order, none written after the first chunk.
    #[tokio::test]
    async fn whole_prefix_read_in_chunks() {
        let bk = support::etcd().await;
        let etcd = bk.etcd.clone().unwrap().with_list_chunk(2);
        for name in ["a", "b", "c", "d", "e"] {
            etcd.create(&format!("/registry/cm/ns/{name}"), b(name), PutOptions::default()).await.unwrap();
        }
        etcd.create("/registry/cmx/ns/a", b("other"), PutOptions::default()).await.unwrap();
        let at = etcd.current_revision().await.unwrap();
        etcd.create("/registry/cm/ns/f", b("f"), PutOptions::default()).await.unwrap();
        etcd.delete("/registry/cm/ns/b", None).await.unwrap();
        let then =
            etcd.list("/registry/cm/ns/", ListOptions { revision: Some(at), ..Default::default() }).await.unwrap();
        let values: Vec<_> = then.items.iter().map(|kv| kv.value.clone()).collect();
        assert_eq!((values, then.revision, then.remaining), (vec![b("a"), b("b"), b("c"), b("d"), b("e")], at, 0));
        let now = etcd.list("/registry/cm/ns/", ListOptions::default()).await.unwrap();
        let keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            ["/registry/cm/ns/a", "/registry/cm/ns/c", "/registry/cm/ns/d", "/registry/cm/ns/e", "/registry/cm/ns/f"]
        );
        assert_eq!(now.revision, etcd.current_revision().await.unwrap());
        let page = etcd.list("/registry/cm/ns/", ListOptions { limit: 3, ..Default::default() }).await.unwrap();
        assert_eq!((page.items.len(), page.remaining), (3, 2), "a limit is one request, as asked");
    }

    /// The compactor compacts to the revision it saw one interval earlier.
    #[tokio::test]
    async fn periodic_compactor() {
        let bk = support::etcd().await;
        let s = bk.storage.clone();
        let etcd = bk.etcd.clone().unwrap();
        let r1 = s.create("/registry/pods/ns/a", b("1"), PutOptions::default()).await.unwrap();
        let compactor = etcd.start_compactor(Duration::from_secs(1));
        let r2 = s.update("/registry/pods/ns/a", b("2"), r1, PutOptions::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match s.watch("/registry/pods/", WatchOptions::after(r1.saturating_sub(1))).await {
                Err(StorageError::Compacted(oldest)) => {
                    assert!(oldest > r1, "{oldest}");
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < deadline, "the compactor did not compact within 15s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        compactor.abort();
        // Current data is untouched.
        assert_eq!(s.get("/registry/pods/ns/a", GetOptions::default()).await.unwrap().unwrap().mod_revision, r2);
    }

    /// Objects written with a TTL are deleted by etcd when their lease expires,
    /// and watchers see the deletion with the object's last value.
    #[tokio::test]
    async fn ttl_through_leases() {
        let bk = support::etcd().await;
        let s = bk.storage.clone();
        let etcd: EtcdStorage = bk.etcd.clone().unwrap();
        let start = s.current_revision().await.unwrap();
        let mut w = s.watch("/registry/events/", WatchOptions::after(start)).await.unwrap();
        let r1 = etcd
            .create("/registry/events/ns/e1", b("e1"), PutOptions { ttl: Some(Duration::from_secs(2)) })
            .await
            .unwrap();
        let r2 = etcd
            .create("/registry/events/ns/e2", b("e2"), PutOptions { ttl: Some(Duration::from_secs(2)) })
            .await
            .unwrap();
        let r3 = etcd
            .update("/registry/events/ns/e2", b("e2'"), r2, PutOptions { ttl: Some(Duration::from_secs(2)) })
            .await
            .unwrap();
        assert!(matches!(
            etcd.create("/registry/events/ns/e1", b("x"), PutOptions { ttl: Some(Duration::from_secs(2)) }).await,
            Err(StorageError::AlreadyExists(_))
        ));
        s.create("/registry/events/ns/forever", b("f"), PutOptions::default()).await.unwrap();
        for _ in 0..4 {
            assert_eq!(next(&mut w).await.event_type, EventType::Put);
        }
        let mut deleted = Vec::new();
        for _ in 0..2 {
            let e = next(&mut w).await;
            assert_eq!(e.event_type, EventType::Delete);
            deleted.push((e.kv.key.clone(), e.kv.value.clone()));
        }
        deleted.sort();
        assert_eq!(
            deleted,
            [("/registry/events/ns/e1".to_string(), b("e1")), ("/registry/events/ns/e2".to_string(), b("e2'"))]
        );
        assert!(s.get("/registry/events/ns/e1", GetOptions::default()).await.unwrap().is_none());
        assert!(s.get("/registry/events/ns/forever", GetOptions::default()).await.unwrap().is_some());
        assert!(r1 < r3);
    }

    /// With etcd stopped, calls fail with Unavailable within the request timeout
    /// and the watch ends with an error; when etcd returns, calls succeed again
    /// and a watch resumed from the last revision seen loses and duplicates
    /// nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn etcd_stop_and_start_under_a_watch() {
        let mut bk = support::etcd().await;
        let s = bk.storage.clone();
        let etcd = bk.etcd.clone().unwrap();
        etcd.health().await.unwrap();

        let start = s.current_revision().await.unwrap();
        let mut w = s.watch("/registry/cm/", WatchOptions::after(start)).await.unwrap();
        let r1 = s.create("/registry/cm/ns/a", b("1"), PutOptions::default()).await.unwrap();
        let r2 = s.create("/registry/cm/ns/b", b("2"), PutOptions::default()).await.unwrap();
        // The client has seen r1 only when etcd goes away.
        let seen = next(&mut w).await.revision();
        assert_eq!(seen, r1);

        let mut server = bk.server.take().unwrap();
        tokio::task::spawn_blocking(move || {
            server.stop();
            server
        })
        .await
        .map(|server| bk.server = Some(server))
        .unwrap();

        // The watch reports the loss (after possibly delivering r2, already sent).
        let mut last = seen;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
                Ok(Some(Ok(e))) => {
                    assert_eq!(e.revision(), r2);
                    last = e.revision();
                }
                Ok(Some(Err(StorageError::Unavailable(_)))) | Ok(None) => break,
                Ok(Some(Err(e))) => panic!("unexpected watch error {e}"),
                Err(_) => panic!("the watch did not notice etcd stopping"),
            }
            assert!(Instant::now() < deadline);
        }

        // Every call fails with Unavailable within the timeout.
        let bound = support::ETCD_TEST_TIMEOUT + Duration::from_secs(2);
        for _ in 0..2 {
            let t = Instant::now();
            let results = [
                s.get("/registry/cm/ns/a", GetOptions::default()).await.err(),
                s.create("/registry/cm/ns/c", b("3"), PutOptions::default()).await.err(),
                s.list("/registry/cm/", ListOptions::default()).await.err(),
                s.current_revision().await.err(),
                s.watch("/registry/cm/", WatchOptions::after(r2)).await.err(),
                etcd.health().await.err(),
            ];
            for r in results {
                assert!(matches!(r, Some(StorageError::Unavailable(_))), "{r:?}");
            }
            assert!(t.elapsed() < bound * 6, "calls took {:?}", t.elapsed());
        }
        let t = Instant::now();
        assert!(matches!(s.get("/registry/cm/ns/a", GetOptions::default()).await, Err(StorageError::Unavailable(_))));
        assert!(t.elapsed() < bound, "a call took {:?}", t.elapsed());

        // etcd returns: the same client recovers by itself.
        let mut server = bk.server.take().unwrap();
        let server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .unwrap();
        bk.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while etcd.health().await.is_err() {
            assert!(Instant::now() < deadline, "storage did not recover within 30s of etcd returning");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(s.get("/registry/cm/ns/b", GetOptions::default()).await.unwrap().unwrap().mod_revision, r2);
        let r3 = s.create("/registry/cm/ns/c", b("3"), PutOptions::default()).await.unwrap();
        assert!(r3 > r2);

        // Resuming from the last revision seen: exactly the missed events, once.
        let mut w = s.watch("/registry/cm/", WatchOptions::after(last)).await.unwrap();
        let mut got = Vec::new();
        if last < r2 {
            got.push(next(&mut w).await.revision());
        }
        got.push(next(&mut w).await.revision());
        assert_eq!(got, if last < r2 { vec![r2, r3] } else { vec![r3] });
        quiet(&mut w).await;
        let r4 = s.update("/registry/cm/ns/c", b("4"), r3, PutOptions::default()).await.unwrap();
        assert_eq!(next(&mut w).await.revision(), r4);
    }
}
