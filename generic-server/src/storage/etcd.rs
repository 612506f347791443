//! The etcd v3 backend, following k8s.io/apiserver's storage/etcd3.
//!
//! - Keys: our keys start with "/registry" (for example
//!   "/registry/configmaps/ns/name"); `--etcd-prefix` replaces that leading
//!   "/registry", so with the default prefix the layout in etcd is exactly
//!   upstream's and `etcdctl get --prefix /registry/configmaps` shows it.
//! - Every write is one transaction comparing the key's revision (create:
//!   absent; update and delete: mod_revision as expected), whose else branch
//!   reads the current value for the Conflict error. resourceVersion is the
//!   revision in the write's response header.
//! - Watches ask for prev_kv and start at `after + 1`; a compacted start (or a
//!   watcher etcd cancels for having fallen behind a compaction) becomes
//!   `StorageError::Compacted`.
//! - Every unary call is bounded by the request timeout: an unreachable etcd gives
//!   `StorageError::Unavailable` instead of a hang, and the client reconnects by
//!   itself when etcd returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions as EtcdGet, KvClient, LeaseClient,
    PutOptions as EtcdPut, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions as EtcdWatch,
    WatchRequestSender, WatchResponseStream,
};
use futures::StreamExt;

use super::{
    op, timed, EventType, GetOptions, KeyValue, ListOptions, ListResult, ProgressRequests, PutOptions, Result, Storage,
    StorageError, WatchEvent, WatchOptions, WatchStream,
};

/// The leading segment of every key the registry hands us; `--etcd-prefix`
/// stands in for it in etcd.
const REGISTRY: &str = "/registry";
/// `--etcd-prefix`'s default.
pub const DEFAULT_PREFIX: &str = "/registry";
/// Bound on every unary etcd call (upstream's storagebackend request timeout is
/// similar in spirit: a dead etcd must not hang requests).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// `--etcd-compaction-interval`'s default.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
/// The key compactors of all API servers sharing an etcd coordinate on (upstream's
/// compactRevKey, deliberately outside the prefix).
const COMPACT_REV_KEY: &str = "compact_rev_key";
/// gRPC keep-alive, as upstream's etcd client (keepaliveTime, keepaliveTimeout):
/// detects a dead connection under an open watch.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses can be large lists; upstream sets MaxCallRecvMsgSize to MaxInt32.
const MAX_RECV_MESSAGE: usize = i32::MAX as usize;
/// Upstream's leaseManager: reuse a lease for objects whose expiry is within
/// this fraction of its TTL, capped at LEASE_REUSE_MAX.
const LEASE_REUSE_FRACTION: f64 = 0.05;
const LEASE_REUSE_MAX_SECS: i64 = 60;

/// Client TLS for etcd: `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Default)]
struct LeaseCache {
    id: i64,
    expires: Option<Instant>,
}

#[derive(Clone)]
pub struct EtcdStorage {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    /// What replaces "/registry": "" (prefix "/") or "/something" without a
    /// trailing slash.
    prefix: String,
    timeout: Duration,
    leases: Arc<std::sync::Mutex<LeaseCache>>,
    revisions: Arc<RevisionReads>,
    /// Whether this etcd reports watch progress only after the events it
    /// covers (upstream's RequestWatchProgress check).
    progress_in_order: bool,
    /// Keys per range request when a whole prefix is read.
    list_chunk: usize,
}

/// Whether etcd `version` orders progress notifications after events:
/// 3.4.31 and later 3.4s, 3.5.13 and later, 3.6 on. The tests' etcd must.
pub fn progress_in_order(version: &str) -> bool {
    let mut parts = version.split(['.', '-', '+']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

/// Where a batch's answer goes: None until read, then the revision or
/// what went wrong.
type RevisionBatch = tokio::sync::watch::Sender<Option<std::result::Result<u64, String>>>;

/// Concurrent reads of the current revision share one request to etcd: a
/// caller joins the batch that has not started yet, and a batch starts when
/// the one before it has answered. Every caller gets a revision read after
/// it asked, as a consistent read needs, and a thousand concurrent
/// consistent reads cost a few round trips, not a thousand.
#[derive(Default)]
struct RevisionReads {
    /// The batch not yet started; its first caller leads it.
    waiting: std::sync::Mutex<Option<RevisionBatch>>,
    /// Held by the batch being read.
    running: tokio::sync::Mutex<()>,
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

fn is_compacted_message(msg: &str) -> bool {
    msg.contains("required revision has been compacted")
}

/// gRPC status codes (google.golang.org/grpc/codes) that mean "try again later".
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_ABORTED: i32 = 10;
const GRPC_UNAVAILABLE: i32 = 14;

/// Maps a client error: transport failures, timeouts and etcd's own
/// unavailability (no leader, too many requests, shutting down) are
/// Unavailable; a read at a compacted revision is Compacted (with 0 as the
/// oldest revision: callers that know better use `EtcdStorage::compacted`).
fn map_err(e: etcd_client::Error) -> StorageError {
    use etcd_client::Error as E;
    match &e {
        E::GRpcStatus(s) => {
            if is_compacted_message(s.message()) {
                return StorageError::Compacted(0);
            }
            match s.code() as i32 {
                GRPC_CANCELLED
                | GRPC_UNKNOWN
                | GRPC_DEADLINE_EXCEEDED
                | GRPC_RESOURCE_EXHAUSTED
                | GRPC_ABORTED
                | GRPC_UNAVAILABLE => StorageError::Unavailable(format!("etcd: {e}")),
                _ => StorageError::Internal(format!("etcd: {e}")),
            }
        }
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => {
            StorageError::Unavailable(format!("etcd: {e}"))
        }
        _ => StorageError::Internal(format!("etcd: {e}")),
    }
}

/// etcd's GetPrefixRangeEnd: the smallest key greater than every key starting
/// with `prefix` ("\0" = no end, when `prefix` is all 0xff bytes or empty).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn revision(r: i64) -> Result<u64> {
    u64::try_from(r).map_err(|_| StorageError::Internal(format!("etcd returned a negative revision {r}")))
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<u64> {
    revision(h.ok_or_else(|| internal("etcd response without a header"))?.revision())
}

/// A revision we send: one that does not fit etcd's int64 can never match, so
/// it becomes -1 (no key has that mod_revision).
fn to_i64(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(-1)
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| StorageError::Internal(format!("reading {what} {}: {e}", path.display())))
}

fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions> {
    let mut options = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read_file("--etcd-cafile", ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let identity =
                etcd_client::Identity::from_pem(read_file("--etcd-certfile", cert)?, read_file("--etcd-keyfile", key)?);
            options = options.identity(identity);
        }
        (None, None) => {}
        _ => return Err(internal("--etcd-certfile and --etcd-keyfile must be given together")),
    }
    Ok(options)
}

/// Normalises `--etcd-prefix` as upstream's path.Join("/", prefix): a leading
/// slash, no trailing one; "/" (or "") puts the resources at the root.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// How many keys one range request reads when a whole prefix is asked for.
const RANGE_CHUNK: usize = 5_000;

impl EtcdStorage {
    /// This client reading whole prefixes `keys` at a time (tests make it
    /// small to read across chunks).
    pub fn with_list_chunk(&self, keys: usize) -> Self {
        EtcdStorage { list_chunk: keys.max(1), ..self.clone() }
    }

    /// Connects to `endpoints` (`--etcd-servers`: URLs such as
    /// "http://127.0.0.1:2379", or host:port) with the default request timeout.
    /// The connection is made lazily: an unreachable etcd is reported by the
    /// first request (and by `health`), not here.
    pub async fn connect(endpoints: &[String], prefix: &str, tls: Option<EtcdTls>) -> Result<Self> {
        Self::connect_with_timeout(endpoints, prefix, tls, DEFAULT_REQUEST_TIMEOUT).await
    }

    pub async fn connect_with_timeout(
        endpoints: &[String],
        prefix: &str,
        tls: Option<EtcdTls>,
        timeout: Duration,
    ) -> Result<Self> {
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Err(internal("no etcd endpoints given (--etcd-servers)"));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_tcp_keepalive(KEEPALIVE_INTERVAL)
            // As upstream's watches: a member cut off from its leader fails
            // requests and cancels watches rather than serving stale data.
            .with_require_leader(true);
        // TLS applies to https:// endpoints (and bare host:port ones); upstream
        // likewise ignores the TLS files for http:// endpoints.
        if let Some(tls) = tls.filter(|_| endpoints.iter().any(|e| !e.starts_with("http://"))) {
            options = options.with_tls(tls_options(&tls)?);
        }
        let client = match tokio::time::timeout(timeout, Client::connect(&endpoints, Some(options))).await {
            Ok(c) => c.map_err(map_err)?,
            Err(_) => return Err(StorageError::Unavailable(format!("connecting to etcd timed out after {timeout:?}"))),
        };
        let version = tokio::time::timeout(timeout, client.maintenance_client().status()).await;
        let progress_in_order = matches!(&version, Ok(Ok(status)) if progress_in_order(status.version()));
        Ok(EtcdStorage {
            progress_in_order,
            list_chunk: RANGE_CHUNK,
            kv: client.kv_client().max_decoding_message_size(MAX_RECV_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_RECV_MESSAGE),
            lease: client.lease_client(),
            prefix: normalize_prefix(prefix),
            timeout,
            leases: Arc::default(),
            revisions: Arc::default(),
        })
    }

    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The etcd key for one of our keys: "/registry" replaced by the prefix.
    pub fn etcd_key(&self, key: &str) -> Result<Vec<u8>> {
        match key.strip_prefix(REGISTRY) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(format!("{}{rest}", self.prefix).into_bytes()),
            _ => Err(StorageError::Internal(format!("key {key:?} is not under {REGISTRY}"))),
        }
    }

    fn our_key(&self, etcd_key: &[u8]) -> Result<String> {
        let key = std::str::from_utf8(etcd_key).map_err(|_| internal("etcd key is not UTF-8"))?;
        match key.strip_prefix(self.prefix.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(format!("{REGISTRY}{rest}")),
            _ => Err(StorageError::Internal(format!("etcd key {key:?} is outside the prefix {:?}", self.prefix))),
        }
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.our_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            mod_revision: revision(kv.mod_revision())?,
            create_revision: revision(kv.create_revision())?,
        })
    }

    /// Runs one etcd call within the request timeout.
    async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(StorageError::Unavailable(format!("etcd {what} timed out after {:?}", self.timeout))),
        }
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        let mut kv = self.kv.clone();
        self.call(what, kv.txn(txn)).await
    }

    /// The value the else branch (a get) of a failed transaction read.
    fn else_value(&self, resp: &TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.key_value(kv)).transpose();
            }
        }
        Err(internal("etcd transaction response without its read"))
    }

    /// Why a guarded write failed: the key is gone (NotFound) or has another
    /// revision (Conflict with what is there now).
    fn write_failure(&self, key: &str, resp: &TxnResponse) -> StorageError {
        match self.else_value(resp) {
            Ok(Some(current)) => StorageError::Conflict { key: key.to_string(), current: Some(current) },
            Ok(None) => StorageError::NotFound(key.to_string()),
            Err(e) => e,
        }
    }

    async fn put_if(
        &self,
        what: &str,
        key: &str,
        value: Bytes,
        guard: Vec<Compare>,
        lease: i64,
    ) -> Result<(bool, TxnResponse)> {
        let k = self.etcd_key(key)?;
        let options = (lease != 0).then(|| EtcdPut::new().with_lease(lease));
        let txn = Txn::new()
            .when(guard)
            .and_then(vec![TxnOp::put(k.clone(), value.to_vec(), options)])
            .or_else(vec![TxnOp::get(k, None)]);
        let resp = self.txn(what, txn).await?;
        Ok((resp.succeeded(), resp))
    }

    async fn create_leased(&self, key: &str, value: Bytes, lease: i64) -> Result<u64> {
        let k = self.etcd_key(key)?;
        let (ok, resp) =
            self.put_if("create", key, value, vec![Compare::create_revision(k, CompareOp::Equal, 0)], lease).await?;
        if ok {
            header_revision(resp.header())
        } else {
            Err(StorageError::AlreadyExists(key.to_string()))
        }
    }

    async fn update_leased(&self, key: &str, value: Bytes, expected: u64, lease: i64) -> Result<u64> {
        let k = self.etcd_key(key)?;
        let guard = vec![
            Compare::version(k.clone(), CompareOp::Greater, 0),
            Compare::mod_revision(k, CompareOp::Equal, to_i64(expected)),
        ];
        let (ok, resp) = self.put_if("update", key, value, guard, lease).await?;
        if ok {
            header_revision(resp.header())
        } else {
            Err(self.write_failure(key, &resp))
        }
    }

    /// A lease expiring about `ttl_secs` from now, shared with other objects
    /// written shortly before (upstream's leaseManager: one lease per
    /// LEASE_REUSE_FRACTION of the TTL, at most a minute, instead of one per
    /// Event).
    async fn lease_for(&self, ttl_secs: u64) -> Result<i64> {
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2).max(1);
        let reuse = ((ttl as f64 * LEASE_REUSE_FRACTION) as i64).min(LEASE_REUSE_MAX_SECS);
        let now = Instant::now();
        let wanted = now + Duration::from_secs(ttl as u64);
        let slack = Duration::from_secs(reuse as u64);
        {
            let cache = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(expires) = cache.expires {
                // Valid: the lease outlives the object's TTL minus the slack;
                // sufficient: it does not outlive it by more than the slack.
                if wanted.checked_sub(slack).is_some_and(|w| w < expires) && wanted + slack > expires {
                    return Ok(cache.id);
                }
            }
        }
        let granted_ttl = ttl + reuse;
        let mut lease = self.lease.clone();
        let resp = self.call("lease grant", lease.grant(granted_ttl, None)).await?;
        if !resp.error().is_empty() {
            return Err(StorageError::Internal(format!("etcd lease grant: {}", resp.error())));
        }
        let mut cache = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        cache.id = resp.id();
        cache.expires = Some(now + Duration::from_secs(granted_ttl as u64));
        Ok(resp.id())
    }

    /// Deletes `key` if it exists (and has mod_revision `expected`, if given).
    async fn delete_guarded(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        let k = self.etcd_key(key)?;
        let mut guard = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            guard.push(Compare::mod_revision(k.clone(), CompareOp::Equal, to_i64(expected)));
        }
        let txn = Txn::new()
            .when(guard)
            .and_then(vec![TxnOp::delete(k.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else(vec![TxnOp::get(k, None)]);
        let resp = self.txn("delete", txn).await?;
        if !resp.succeeded() {
            return Err(self.write_failure(key, &resp));
        }
        let rev = header_revision(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op {
                if let Some(prev) = del.prev_kvs().first() {
                    return Ok((self.key_value(prev)?, rev));
                }
            }
        }
        Err(StorageError::NotFound(key.to_string()))
    }

    /// The lease a write with `ttl` attaches (0: none), so that etcd deletes
    /// the object about that long later (Events, `--event-ttl`); an update
    /// (re)attaches one as upstream's GuaranteedUpdate does.
    async fn lease_of(&self, ttl: Option<Duration>) -> Result<i64> {
        match ttl {
            Some(ttl) => self.lease_for(ttl.as_secs().max(1)).await,
            None => Ok(0),
        }
    }

    /// `list` as of `opts.revision` (None = now). A compacted revision is
    /// `StorageError::Compacted`.
    async fn range(&self, prefix: &str, opts: ListOptions<'_>) -> Result<ListResult> {
        // etcd counts the rest of the range whatever is asked: the exact
        // count is always given.
        let ListOptions { start_after, limit, mut revision, remaining: _ } = opts;
        let p = self.etcd_key(prefix)?;
        let end = prefix_end(&p);
        let mut start = match start_after {
            Some(after) => {
                let mut k = self.etcd_key(after)?;
                k.push(0);
                k.max(p)
            }
            None => p,
        };
        let mut items = Vec::new();
        loop {
            // A whole resource (the watch cache filling) is read in chunks
            // at one revision: one response of every value would be held,
            // decoded, beside their copies.
            let chunk = if limit == 0 { self.list_chunk } else { limit };
            let mut options = EtcdGet::new().with_range(end.clone()).with_limit(i64::try_from(chunk).unwrap_or(0));
            if let Some(revision) = revision {
                options = options.with_revision(to_i64(revision));
            }
            let mut kv = self.kv.clone();
            let resp = match self.call("list", kv.get(start.clone(), Some(options))).await {
                Err(StorageError::Compacted(_)) => return Err(self.compacted().await),
                r => r?,
            };
            let read = resp.kvs().len();
            for kv in resp.kvs() {
                items.push(self.key_value(kv)?);
            }
            if revision.is_none() {
                revision = Some(header_revision(resp.header())?);
            }
            let count = u64::try_from(resp.count()).unwrap_or(0);
            let remaining = count.saturating_sub(read as u64);
            match resp.kvs().last() {
                Some(last) if limit == 0 && remaining > 0 => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => {
                    let revision = revision.unwrap_or(0);
                    let remaining = if limit == 0 { 0 } else { remaining };
                    return Ok(ListResult { items, revision, remaining });
                }
            }
        }
    }

    /// The Compacted error with etcd's oldest retained revision. etcd reports
    /// that revision only to watchers, so a watch on a key nobody uses is
    /// opened at revision 1, which any compaction has removed.
    async fn compacted(&self) -> StorageError {
        let probe = format!("{}/compaction-probe", self.prefix).into_bytes();
        match self.open_watch(probe, 1).await {
            Ok((mut stream, _)) => {
                let deadline = tokio::time::sleep(self.timeout);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => return StorageError::Compacted(0),
                        m = stream.message() => match m {
                            Ok(Some(resp)) if resp.compact_revision() > 0 => {
                                return StorageError::Compacted(revision(resp.compact_revision()).unwrap_or(0));
                            }
                            Ok(Some(_)) => continue,
                            _ => return StorageError::Compacted(0),
                        }
                    }
                }
            }
            Err(_) => StorageError::Compacted(0),
        }
    }

    /// Opens an etcd watch on [key, prefix_end(key)) from `start` with prev_kv
    /// and waits for etcd to confirm it; returns the stream and the store
    /// revision at creation.
    async fn open_watch(&self, key: Vec<u8>, start: i64) -> Result<(etcd_client::WatchStream, u64)> {
        let end = prefix_end(&key);
        let options = EtcdWatch::new().with_range(end).with_start_revision(start).with_prev_key();
        let mut client = self.watch.clone();
        let open = async {
            let mut stream = client.watch(key, Some(options)).await?;
            let created = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, created))
        };
        let (stream, created) = self.call("watch", open).await?;
        let created = created.ok_or_else(|| StorageError::Unavailable("etcd closed the watch stream".into()))?;
        if created.compact_revision() > 0 {
            return Err(StorageError::Compacted(revision(created.compact_revision())?));
        }
        if created.canceled() {
            return Err(StorageError::Internal(format!("etcd refused the watch: {}", created.cancel_reason())));
        }
        Ok((stream, header_revision(created.header())?))
    }

    /// Compacts etcd's history up to `revision`: older revisions can no longer be
    /// read or watched from. Compacting to a revision already compacted is fine.
    pub async fn compact(&self, revision: u64) -> Result<()> {
        let mut kv = self.kv.clone();
        match self.call("compact", kv.compact(to_i64(revision), None)).await {
            Ok(_) | Err(StorageError::Compacted(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One step of upstream's compactor (storage/etcd3 compact.go): atomically
    /// bump compact_rev_key's version from `t` (so that of several API servers
    /// only one compacts per interval) recording the current revision, and
    /// compact to `rev`, the revision recorded one interval earlier. Returns the
    /// new (t, rev).
    async fn compact_step(&self, t: i64, rev: i64) -> Result<(i64, i64)> {
        let key = COMPACT_REV_KEY.as_bytes().to_vec();
        let txn = Txn::new()
            .when(vec![Compare::version(key.clone(), CompareOp::Equal, t)])
            .and_then(vec![TxnOp::put(key.clone(), rev.to_string(), None)])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self.txn("compaction txn", txn).await?;
        let cur_rev = to_i64(header_revision(resp.header())?);
        if !resp.succeeded() {
            // Another server compacted in this interval: adopt its version.
            let version = resp
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                    _ => None,
                })
                .unwrap_or(0);
            return Ok((version, cur_rev));
        }
        let t = t + 1;
        if rev > 0 {
            // Never compact on the first round (bootstrap).
            self.compact(u64::try_from(rev).unwrap_or(0)).await?;
        }
        Ok((t, cur_rev))
    }

    /// Starts the periodic compactor (`--etcd-compaction-interval`): every
    /// interval it compacts to the revision seen one interval earlier, so
    /// watchers and paged lists get a full interval of history. Abort the
    /// handle to stop it. A zero interval disables compaction (as upstream).
    pub fn start_compactor(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if interval.is_zero() {
                return;
            }
            let (mut t, mut rev) = (0i64, 0i64);
            loop {
                tokio::time::sleep(interval).await;
                match this.compact_step(t, rev).await {
                    Ok((nt, nrev)) => {
                        t = nt;
                        rev = nrev;
                    }
                    Err(e) => tracing::warn!(error = %e, "etcd compaction failed"),
                }
            }
        })
    }

    /// For /readyz/etcd and /livez/etcd: a read through the cluster (a linearizable
    /// get, which needs a leader and a quorum) within the request timeout.
    pub async fn health(&self) -> Result<()> {
        let mut kv = self.kv.clone();
        let key = format!("{}/health", self.prefix);
        self.call("health check", kv.get(key, Some(EtcdGet::new().with_count_only()))).await.map(|_| ())
    }

    fn watch_event(&self, ev: &etcd_client::Event) -> Result<WatchEvent> {
        let kv = ev.kv().ok_or_else(|| internal("etcd watch event without a key-value"))?;
        let prev = ev.prev_kv().map(|p| self.key_value(p)).transpose()?;
        // The raw type, not Event::event_type(), which panics on values it does
        // not know.
        match ev.0.r#type {
            0 => Ok(WatchEvent { event_type: EventType::Put, kv: self.key_value(kv)?, prev }),
            1 => {
                // etcd's delete event has the deletion revision and no value;
                // ours carries the deleted value (as upstream's watcher, which
                // needs prev_kv for deletes).
                let Some(prev) = prev else {
                    return Err(StorageError::Internal(format!(
                        "etcd delete event without prev_kv (key {:?}, revision {})",
                        String::from_utf8_lossy(kv.key()),
                        kv.mod_revision()
                    )));
                };
                let deleted = KeyValue { mod_revision: revision(kv.mod_revision())?, ..prev.clone() };
                Ok(WatchEvent { event_type: EventType::Delete, kv: deleted, prev: Some(prev) })
            }
            t => Err(StorageError::Internal(format!("etcd watch event of unknown type {t}"))),
        }
    }
}

/// What the watch stream is doing: reading etcd responses, or finished (after
/// yielding an error).
struct WatchState {
    storage: EtcdStorage,
    requests: WatchRequestSender,
    stream: WatchResponseStream,
    /// Progress requests to pass on to etcd, when the watcher wants them.
    progress: Option<ProgressRequests>,
    pending: std::collections::VecDeque<Result<WatchEvent>>,
    done: bool,
}

impl WatchState {
    fn new(storage: &EtcdStorage, stream: etcd_client::WatchStream, progress: Option<ProgressRequests>) -> Self {
        let (requests, stream) = stream.split();
        WatchState { storage: storage.clone(), requests, stream, progress, pending: Default::default(), done: false }
    }
}

async fn next_event(mut st: WatchState) -> Option<(Result<WatchEvent>, WatchState)> {
    loop {
        if let Some(item) = st.pending.pop_front() {
            if item.is_err() {
                st.pending.clear();
                st.done = true;
            }
            return Some((item, st));
        }
        if st.done {
            return None;
        }
        let message = match st.progress.clone() {
            None => st.stream.next().await,
            Some(progress) => tokio::select! {
                m = st.stream.next() => m,
                _ = progress.requested() => {
                    // etcd answers on this stream, after every event up to
                    // the revision it reports.
                    if let Err(e) = st.requests.request_progress().await {
                        st.pending.push_back(Err(map_err(e)));
                    }
                    continue;
                }
            },
        };
        match message.transpose() {
            Ok(Some(resp)) => {
                for ev in resp.events() {
                    st.pending.push_back(st.storage.watch_event(ev));
                }
                let progress_notify =
                    resp.events().is_empty() && !resp.created() && !resp.canceled() && resp.compact_revision() == 0;
                if progress_notify && st.progress.is_some() {
                    st.pending.push_back(header_revision(resp.header()).map(WatchEvent::progress));
                }
                if resp.compact_revision() > 0 {
                    // The watcher fell behind a compaction: etcd cancelled it.
                    let oldest = revision(resp.compact_revision()).unwrap_or(0);
                    st.pending.push_back(Err(StorageError::Compacted(oldest)));
                } else if resp.canceled() {
                    let reason = resp.cancel_reason().to_string();
                    st.pending.push_back(Err(StorageError::Unavailable(format!("etcd cancelled the watch: {reason}"))));
                }
            }
            Ok(None) => st.pending.push_back(Err(StorageError::Unavailable("etcd closed the watch stream".into()))),
            Err(e) => st.pending.push_back(Err(map_err(e))),
        }
    }
}

#[async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str, opts: GetOptions) -> Result<Option<KeyValue>> {
        let k = self.etcd_key(key)?;
        let mut kv = self.kv.clone();
        let options = opts.revision.map(|r| EtcdGet::new().with_revision(to_i64(r)));
        let read = async {
            match self.call("get", kv.get(k, options)).await {
                Err(StorageError::Compacted(_)) => Err(self.compacted().await),
                r => r,
            }
        };
        let resp = timed(op::GET, key, read).await?;
        resp.kvs().first().map(|kv| self.key_value(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> Result<ListResult> {
        timed(op::LIST, prefix, self.range(prefix, opts)).await
    }

    async fn create(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<u64> {
        let create = async { self.create_leased(key, value, self.lease_of(opts.ttl).await?).await };
        timed(op::CREATE, key, create).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64, opts: PutOptions) -> Result<u64> {
        let update = async { self.update_leased(key, value, expected, self.lease_of(opts.ttl).await?).await };
        timed(op::UPDATE, key, update).await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        timed(op::DELETE, key, self.delete_guarded(key, expected)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let p = self.etcd_key(prefix)?;
        let end = prefix_end(&p);
        let mut kv = self.kv.clone();
        let read = self.call("count", kv.get(p, Some(EtcdGet::new().with_range(end).with_count_only())));
        let resp = timed(op::COUNT, prefix, read).await?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    async fn current_revision(&self) -> Result<u64> {
        let (answer, leads) = {
            let mut waiting = self.revisions.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match &*waiting {
                Some(batch) => (batch.subscribe(), false),
                None => {
                    let (batch, answer) = tokio::sync::watch::channel(None);
                    *waiting = Some(batch);
                    (answer, true)
                }
            }
        };
        if leads {
            // A task of its own, so the batch is read even if its leader's
            // request goes away.
            let this = self.clone();
            tokio::spawn(async move {
                let _running = this.revisions.running.lock().await;
                // Later callers start the next batch: this read may have
                // begun before they asked.
                let batch = this.revisions.waiting.lock().unwrap_or_else(|e| e.into_inner()).take();
                let mut kv = this.kv.clone();
                let key = format!("{}/", this.prefix);
                let read = this.call("get revision", kv.get(key, Some(EtcdGet::new().with_count_only()))).await;
                let revision = read.and_then(|resp| header_revision(resp.header()));
                if let Some(batch) = batch {
                    let _ = batch.send(Some(revision.map_err(|e| e.to_string())));
                }
            });
        }
        let mut answer = answer;
        let read = answer.wait_for(Option::is_some).await;
        match read.as_deref() {
            Ok(Some(Ok(revision))) => Ok(*revision),
            Ok(Some(Err(e))) => Err(StorageError::Unavailable(e.clone())),
            _ => Err(StorageError::Unavailable("reading etcd's revision was abandoned".into())),
        }
    }

    async fn watch(&self, prefix: &str, opts: WatchOptions) -> Result<WatchStream> {
        let after = opts.after;
        let key = self.etcd_key(prefix)?;
        let start = to_i64(after.saturating_add(1));
        if start < 0 {
            return Err(StorageError::Internal(format!("watch revision {after} out of range")));
        }
        let (stream, current) = self.open_watch(key, start).await?;
        // etcd reports a compacted start revision asynchronously, after
        // confirming the watch. Replaying from history (start <= current) at a
        // compacted revision is known now by a read at that revision; then the
        // stream's first message carries the oldest revision.
        if (start as u64) <= current {
            let mut kv = self.kv.clone();
            let probe = format!("{}/", self.prefix);
            let read = kv.get(probe, Some(EtcdGet::new().with_count_only().with_revision(start)));
            if let Err(StorageError::Compacted(_)) = self.call("watch", read).await {
                let st = WatchState::new(self, stream, None);
                return match tokio::time::timeout(self.timeout, next_event(st)).await {
                    Ok(Some((Err(e), _))) => Err(e),
                    _ => Err(self.compacted().await),
                };
            }
        }
        let progress = match opts.progress {
            Some(p) if !self.progress_in_order => {
                p.refuse();
                None
            }
            p => p,
        };
        let st = WatchState::new(self, stream, progress);
        Ok(futures::stream::unfold(st, next_event).boxed())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_in_order_from_the_version() {
        for (version, in_order) in [
            ("3.4.23", false),
            ("3.4.31", true),
            ("3.5.0", false),
            ("3.5.12", false),
            ("3.5.13", true),
            ("3.6.0", true),
            ("3.6.0-rc.1", true),
            ("", false),
        ] {
            assert_eq!(super::progress_in_order(version), in_order, "{version}");
        }
    }
}
