//! What the request scenarios run against: our server over HTTP, and the
//! baselines that give every figure a ratio — etcd driven directly with
//! etcd-client (transactions shaped like the server's), the embedded store
//! alone through the `Storage` trait, and a minimal hyper+rustls server that
//! answers a fixed JSON body or streams the bytes it is handed to every
//! watcher (the ceiling of the HTTP stack on this machine).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, KvClient, Txn, TxnOp};
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::{self, Storage};

use crate::client::{Client, Format};

/// How often a raw-store update retries its read + compare-and-swap when
/// another writer changed the object in between (as the server's does).
const UPDATE_ATTEMPTS: usize = 16;

/// How a list reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// resourceVersion unset: a consistent read.
    Consistent,
    /// resourceVersion=0: whatever the server has in memory.
    Cached,
    /// limit=N with continue tokens until the end.
    Paged(u64),
}

/// The name of object `i`, zero-padded so key order is index order.
pub fn object_name(i: u64) -> String {
    format!("cm-{i:07}")
}

/// A ConfigMap of about `bytes` bytes of JSON: `data.pad` fills it up, and
/// `fields` go into `data` before it.
pub fn configmap(ns: &str, i: u64, bytes: usize, fields: &[(&str, String)]) -> Bytes {
    let mut data = serde_json::Map::new();
    for (k, v) in fields {
        data.insert(k.to_string(), serde_json::Value::String(v.clone()));
    }
    data.insert("pad".into(), serde_json::Value::String(String::new()));
    let mut obj = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": object_name(i), "namespace": ns},
        "data": data,
    });
    let overhead = serde_json::to_vec(&obj).map(|v| v.len()).unwrap_or(0);
    // Letters picked by the index, so bodies are not one repeated byte.
    let pad: String =
        (0..bytes.saturating_sub(overhead)).map(|k| (b'a' + ((k as u64 + i) % 26) as u8) as char).collect();
    obj["data"]["pad"] = serde_json::Value::String(pad);
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// One system under test. `scope` is a namespace (a key prefix for the raw
/// stores); every operation returns a count for the measurement's `units`
/// (bytes stored or read).
#[async_trait]
pub trait Target: Send + Sync {
    async fn prepare(&self, scope: &str) -> Result<(), String>;
    async fn create(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String>;
    async fn get(&self, scope: &str, i: u64, cached: bool) -> Result<u64, String>;
    async fn update(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String>;
    /// Reads every object in `scope`; returns (items, bytes) when `count` is
    /// set, else (0, bytes): counting items means decoding the whole list,
    /// which would otherwise weigh on the timed path.
    async fn list(&self, scope: &str, mode: ListMode, count: bool) -> Result<(u64, u64), String>;
    async fn delete(&self, scope: &str, i: u64) -> Result<u64, String>;
    /// The HTTP client, when the target is an API server.
    fn api(&self) -> Option<&Client> {
        None
    }
}

/// Our server (or any server given by kubeconfig), or the fixed-JSON server.
/// Reads ask for `format`; writes send JSON.
pub struct ApiTarget {
    pub client: Client,
    pub format: Format,
}

impl ApiTarget {
    pub fn json(client: Client) -> ApiTarget {
        ApiTarget { client, format: Format::Json }
    }
}

fn cm_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

/// The continue token of a list response: its `metadata` comes before its
/// items, so only that object is decoded.
fn continue_token(body: &[u8]) -> Result<Option<String>, String> {
    let needle = b"\"metadata\":";
    let start = body.windows(needle.len()).position(|w| w == needle).ok_or("list without metadata")? + needle.len();
    let mut it = serde_json::Deserializer::from_slice(&body[start..]).into_iter::<serde_json::Value>();
    let meta = it.next().ok_or("list metadata cut short")?.map_err(|e| format!("list metadata: {e}"))?;
    Ok(meta["continue"].as_str().filter(|s| !s.is_empty()).map(str::to_string))
}

fn count_items(body: &[u8]) -> Result<u64, String> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<serde::de::IgnoredAny>,
    }
    let l: List = serde_json::from_slice(body).map_err(|e| format!("decoding a list: {e}"))?;
    Ok(l.items.len() as u64)
}

#[async_trait]
impl Target for ApiTarget {
    fn api(&self) -> Option<&Client> {
        Some(&self.client)
    }

    async fn prepare(&self, ns: &str) -> Result<(), String> {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let a =
            self.client.request(hyper::Method::POST, "/api/v1/namespaces", Some(Bytes::from(body.to_string()))).await?;
        match a.status {
            200..=299 | 409 => Ok(()),
            s => Err(format!("creating namespace {ns}: HTTP {s}: {}", String::from_utf8_lossy(&a.body))),
        }
    }

    async fn create(&self, ns: &str, _i: u64, body: Bytes) -> Result<u64, String> {
        Ok(self.client.ok(hyper::Method::POST, &cm_path(ns), Some(body)).await?.len() as u64)
    }

    async fn get(&self, ns: &str, i: u64, cached: bool) -> Result<u64, String> {
        let rv = if cached { "?resourceVersion=0" } else { "" };
        let path = format!("{}/{}{rv}", cm_path(ns), object_name(i));
        Ok(self.client.ok_as(self.format, hyper::Method::GET, &path, None).await?.len() as u64)
    }

    async fn update(&self, ns: &str, i: u64, body: Bytes) -> Result<u64, String> {
        // No resourceVersion in the body: an unconditional update, which the
        // server turns into read + compare-and-swap on the revision it read.
        let path = format!("{}/{}", cm_path(ns), object_name(i));
        Ok(self.client.ok(hyper::Method::PUT, &path, Some(body)).await?.len() as u64)
    }

    async fn list(&self, ns: &str, mode: ListMode, count: bool) -> Result<(u64, u64), String> {
        if self.format != Format::Json && (count || matches!(mode, ListMode::Paged(_))) {
            return Err("counting items and following continue tokens read JSON lists only".into());
        }
        let base = cm_path(ns);
        let (mut items, mut bytes) = (0, 0);
        let mut token: Option<String> = None;
        loop {
            let path = match (mode, &token) {
                (ListMode::Consistent, _) => base.clone(),
                (ListMode::Cached, _) => format!("{base}?resourceVersion=0"),
                (ListMode::Paged(n), None) => format!("{base}?limit={n}"),
                (ListMode::Paged(n), Some(t)) => format!("{base}?limit={n}&continue={t}"),
            };
            let body = self.client.ok_as(self.format, hyper::Method::GET, &path, None).await?;
            bytes += body.len() as u64;
            if count {
                items += count_items(&body)?;
            }
            token = match mode {
                ListMode::Paged(_) => continue_token(&body)?,
                _ => None,
            };
            if token.is_none() {
                return Ok((items, bytes));
            }
        }
    }

    async fn delete(&self, ns: &str, i: u64) -> Result<u64, String> {
        let path = format!("{}/{}", cm_path(ns), object_name(i));
        Ok(self.client.ok(hyper::Method::DELETE, &path, None).await?.len() as u64)
    }
}

fn raw_key(scope: &str, i: u64) -> String {
    format!("/registry/configmaps/{scope}/{}", object_name(i))
}

fn raw_prefix(scope: &str) -> String {
    format!("/registry/configmaps/{scope}/")
}

/// etcd through etcd-client, with the transactions the server's etcd backend
/// sends: create guarded by create_revision == 0, update by mod_revision,
/// delete returning the previous value.
pub struct EtcdTarget {
    pub kv: KvClient,
}

fn etcd_err(e: etcd_client::Error) -> String {
    format!("etcd: {e}")
}

impl EtcdTarget {
    pub async fn connect(url: &str) -> Result<EtcdTarget, String> {
        let client = etcd_client::Client::connect([url], None).await.map_err(etcd_err)?;
        // Lists of thousands of objects exceed gRPC's default 4 MiB; the
        // server's etcd backend raises the limit the same way.
        Ok(EtcdTarget { kv: client.kv_client().max_decoding_message_size(i32::MAX as usize) })
    }

    /// One range read of up to `limit` keys from `start` to the end of `prefix`.
    async fn range(&self, start: &[u8], prefix: &str, limit: i64) -> Result<etcd_client::GetResponse, String> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let opts = GetOptions::new().with_range(end).with_limit(limit);
        self.kv.clone().get(start.to_vec(), Some(opts)).await.map_err(etcd_err)
    }
}

#[async_trait]
impl Target for EtcdTarget {
    async fn prepare(&self, _scope: &str) -> Result<(), String> {
        Ok(())
    }

    async fn create(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String> {
        let key = raw_key(scope, i);
        let n = body.len() as u64;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), body.to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(etcd_err)?;
        if resp.succeeded() {
            Ok(n)
        } else {
            Err(format!("{key} exists"))
        }
    }

    async fn get(&self, scope: &str, i: u64, _cached: bool) -> Result<u64, String> {
        let key = raw_key(scope, i);
        let resp = self.kv.clone().get(key.clone(), None).await.map_err(etcd_err)?;
        resp.kvs().first().map(|kv| kv.value().len() as u64).ok_or(format!("{key} not found"))
    }

    async fn update(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String> {
        // Read, then write guarded by the revision read, again while another
        // writer got there first: the server's guaranteed update.
        let key = raw_key(scope, i);
        let n = body.len() as u64;
        for _ in 0..UPDATE_ATTEMPTS {
            let resp = self.kv.clone().get(key.clone(), None).await.map_err(etcd_err)?;
            let rev = resp.kvs().first().map(|kv| kv.mod_revision()).ok_or(format!("{key} not found"))?;
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key.clone(), body.to_vec(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            if self.kv.clone().txn(txn).await.map_err(etcd_err)?.succeeded() {
                return Ok(n);
            }
        }
        Err(format!("{key}: still conflicting after {UPDATE_ATTEMPTS} attempts"))
    }

    async fn list(&self, scope: &str, mode: ListMode, _count: bool) -> Result<(u64, u64), String> {
        let prefix = raw_prefix(scope);
        let limit = match mode {
            ListMode::Paged(n) => n as i64,
            _ => 0,
        };
        let (mut items, mut bytes) = (0u64, 0u64);
        let mut start = prefix.as_bytes().to_vec();
        loop {
            let resp = self.range(&start, &prefix, limit).await?;
            items += resp.kvs().len() as u64;
            bytes += resp.kvs().iter().map(|kv| kv.value().len() as u64).sum::<u64>();
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((items, bytes)),
            }
        }
    }

    async fn delete(&self, scope: &str, i: u64) -> Result<u64, String> {
        let key = raw_key(scope, i);
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::delete(key.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(etcd_err)?;
        if resp.succeeded() {
            Ok(0)
        } else {
            Err(format!("{key} not found"))
        }
    }
}

/// The embedded store alone, in this process, through the `Storage` trait.
pub struct StoreTarget {
    pub store: EmbeddedStorage,
}

impl StoreTarget {
    pub fn open(path: &std::path::Path) -> Result<StoreTarget, String> {
        Ok(StoreTarget { store: EmbeddedStorage::open(path).map_err(store_err)? })
    }
}

fn store_err(e: generic_server::storage::StorageError) -> String {
    format!("embedded store: {e}")
}

#[async_trait]
impl Target for StoreTarget {
    async fn prepare(&self, _scope: &str) -> Result<(), String> {
        Ok(())
    }

    async fn create(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String> {
        let n = body.len() as u64;
        self.store.create(&raw_key(scope, i), body, storage::PutOptions::default()).await.map_err(store_err)?;
        Ok(n)
    }

    async fn get(&self, scope: &str, i: u64, _cached: bool) -> Result<u64, String> {
        let key = raw_key(scope, i);
        let kv = self.store.get(&key, storage::GetOptions::default()).await.map_err(store_err)?;
        kv.map(|kv| kv.value.len() as u64).ok_or(format!("{key} not found"))
    }

    async fn update(&self, scope: &str, i: u64, body: Bytes) -> Result<u64, String> {
        let key = raw_key(scope, i);
        let n = body.len() as u64;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self
                .store
                .get(&key, storage::GetOptions::default())
                .await
                .map_err(store_err)?
                .ok_or(format!("{key} not found"))?;
            match self.store.update(&key, body.clone(), current.mod_revision, storage::PutOptions::default()).await {
                Ok(_) => return Ok(n),
                Err(generic_server::storage::StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(format!("{key}: still conflicting after {UPDATE_ATTEMPTS} attempts"))
    }

    async fn list(&self, scope: &str, mode: ListMode, _count: bool) -> Result<(u64, u64), String> {
        let prefix = raw_prefix(scope);
        let limit = match mode {
            ListMode::Paged(n) => n as usize,
            _ => 0,
        };
        let (mut items, mut bytes) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&prefix, storage::ListOptions { start_after: after.as_deref(), limit, ..Default::default() })
                .await
                .map_err(store_err)?;
            items += page.items.len() as u64;
            bytes += page.items.iter().map(|kv| kv.value.len() as u64).sum::<u64>();
            match page.items.last() {
                Some(last) if page.remaining > 0 => after = Some(last.key.clone()),
                _ => return Ok((items, bytes)),
            }
        }
    }

    async fn delete(&self, scope: &str, i: u64) -> Result<u64, String> {
        self.store.delete(&raw_key(scope, i), None).await.map_err(store_err)?;
        Ok(0)
    }
}

/// What the bare HTTP stack answers every request with.
#[derive(Clone)]
pub enum Answer {
    /// One fixed JSON body.
    Fixed(Bytes),
    /// A response that streams, to each request, every chunk sent on this
    /// channel after the request arrived: a watch with nothing behind it.
    Stream(tokio::sync::broadcast::Sender<Bytes>),
}

/// A response body fed by a channel, as a watch response is.
struct Streamed(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

type StackBody = http_body_util::Either<http_body_util::Full<Bytes>, Streamed>;

fn stack_response(answer: &Answer) -> hyper::Response<StackBody> {
    let body = match answer {
        Answer::Fixed(b) => http_body_util::Either::Left(http_body_util::Full::new(b.clone())),
        Answer::Stream(events) => {
            // A watcher too slow for the broadcast buffer loses its stream,
            // which the watcher reports as a broken watch.
            let mut rx = events.subscribe();
            let (tx, body) = tokio::sync::mpsc::channel(64);
            tokio::spawn(async move {
                while let Ok(chunk) = rx.recv().await {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            });
            http_body_util::Either::Right(Streamed(body))
        }
    };
    let mut resp = hyper::Response::new(body);
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

/// The HTTP-stack ceiling: hyper and rustls as the server configures them
/// (HTTP/2 by ALPN, client certificates verified), answering every request
/// with an [`Answer`]. Serves on its own runtime so it does not share worker
/// threads with the load it answers.
pub struct StackServer {
    pub creds: crate::client::Creds,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StackServer {
    pub fn start(answer: Answer) -> Result<StackServer, String> {
        let pki = test_pki()?;
        let tls = generic_server::serve::tls_config(
            pki.server_cert.as_bytes(),
            pki.server_key.as_bytes(),
            Some(pki.ca.as_bytes()),
        )?;
        let tls = Arc::new(tls);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding: {e}"))?;
        std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = std_listener.local_addr().map_err(|e| e.to_string())?.port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stack-server".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else { return };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
                    let accept = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else { continue };
                            let _ = tcp.set_nodelay(true);
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                            let answer = answer.clone();
                            tokio::spawn(async move {
                                let Ok(stream) = acceptor.accept(tcp).await else { return };
                                let service = hyper::service::service_fn(move |_req| {
                                    let resp = stack_response(&answer);
                                    async move { Ok::<_, std::convert::Infallible>(resp) }
                                });
                                let builder =
                                    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let creds = crate::client::Creds {
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca.into_bytes(),
            cert_pem: pki.client_cert.into_bytes(),
            key_pem: pki.client_key.into_bytes(),
        };
        Ok(StackServer { creds, stop: Some(stop_tx), thread: Some(thread) })
    }
}

impl Drop for StackServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct TestPki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

/// A throwaway CA with a serving certificate for 127.0.0.1 and a client certificate.
fn test_pki() -> Result<TestPki, String> {
    use generic_server::pki::{client_cert, new_ca, serving_cert};
    let ca = new_ca("loadgen-ca")?;
    let server = serving_cert(&ca, "loadgen-baseline", &["127.0.0.1".to_string()])?;
    let client = client_cert(&ca, "loadgen", &[])?;
    Ok(TestPki {
        ca: ca.cert,
        server_cert: server.cert,
        server_key: server.key,
        client_cert: client.cert,
        client_key: client.key,
    })
}
