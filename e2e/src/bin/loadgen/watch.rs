//! watch-fanout: W watches on the ConfigMaps of one namespace while writers
//! create and update objects at a fixed rate, each write carrying its send
//! time. Every watcher checks what it got against what the writers had
//! acknowledged: each write seen exactly once, in resourceVersion order.
//! Watchers read JSON or protobuf streams. The baseline runs the same
//! watchers against the bare HTTP stack, which streams the same event bytes
//! at the same rate with nothing behind them.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;

use crate::client::{Client, Creds, Format};
use crate::driver::{Percentiles, Sample, Summary};
use crate::targets::{configmap, object_name, Answer, ApiTarget, StackServer, Target};

/// Watches per HTTP/2 connection, under the server's concurrent-stream limit.
const WATCHES_PER_CONNECTION: usize = 100;
/// How many objects the writers cycle their updates through.
const OBJECTS: u64 = 50;
/// How long the writes may take past their schedule before loadgen stops waiting.
const WRITE_SLACK: Duration = Duration::from_secs(30);

pub struct Config {
    pub namespace: String,
    pub watchers: usize,
    pub writes_per_sec: u64,
    pub duration: Duration,
    pub object_bytes: usize,
    /// What the watchers ask for (writes are always JSON).
    pub format: Format,
}

/// One write of the scenario: write number `i`, carrying its send time;
/// answers the resourceVersion it was acknowledged at.
type WriteFn = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> + Send + Sync>;

/// Events the baseline's broadcast holds for a watcher that fell behind.
const BASELINE_BUFFER: usize = 1 << 14;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub watchers: usize,
    pub connections: usize,
    /// Writes acknowledged by the server.
    pub writes: u64,
    pub write_errors: u64,
    pub write_error_samples: Vec<String>,
    /// Events received over all watchers.
    pub delivered: u64,
    pub events_per_sec: f64,
    /// Acknowledged writes a watcher skipped: it saw a later event but never
    /// this one (summed over watchers). Events arrive in revision order, so
    /// this is true loss, not lateness.
    pub lost: u64,
    /// Acknowledged writes a watcher had not received when the scenario ended
    /// (its last event was older): late beyond the grace period.
    pub undelivered: u64,
    /// Events that came after one with a higher resourceVersion.
    pub reordered: u64,
    /// Events seen twice by the same watcher.
    pub duplicates: u64,
    /// Watches that ended or failed before the end.
    pub broken_watches: u64,
    pub watch_error_samples: Vec<String>,
    /// Send (writer) to receipt (watcher), in milliseconds.
    pub delivery_ms: Percentiles,
    /// The writers' request latencies.
    pub write: Summary,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[derive(serde::Deserialize)]
struct Event {
    object: EventObject,
}

#[derive(serde::Deserialize)]
struct EventObject {
    metadata: EventMeta,
    #[serde(default)]
    data: Option<EventData>,
}

#[derive(serde::Deserialize)]
struct EventMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

#[derive(serde::Deserialize)]
struct EventData {
    #[serde(default)]
    sent: Option<String>,
}

/// The resourceVersion of a watch event and the send time it carries.
type Seen1 = (u64, Option<u64>);

fn json_event(line: &[u8]) -> Result<Seen1, String> {
    let ev: Event = serde_json::from_slice(line).map_err(|e| format!("undecodable watch event: {e}"))?;
    let rv = &ev.object.metadata.resource_version;
    let rv = rv.parse::<u64>().map_err(|_| format!("event with resourceVersion {rv:?}"))?;
    Ok((rv, ev.object.data.and_then(|d| d.sent).and_then(|s| s.parse::<u64>().ok())))
}

/// A protobuf watch event (`WatchEvent {1: type, 2: RawExtension {1: raw}}`,
/// raw being `k8s\0` + `Unknown {2: ConfigMap}`), read only as far as
/// `metadata.resourceVersion` (ObjectMeta field 6) and `data["sent"]`
/// (ConfigMap field 2, map entries {1: key, 2: value}).
fn proto_event(frame: &[u8]) -> Result<Seen1, String> {
    let bad = |what: &str| format!("protobuf watch event without {what}");
    let raw_ext = proto::field(frame, 2)?.ok_or_else(|| bad("object"))?;
    let raw = proto::field(raw_ext, 1)?.ok_or_else(|| bad("raw object"))?;
    let unknown = raw.strip_prefix(generic_server::protobuf::MAGIC).ok_or_else(|| bad("the k8s magic"))?;
    let object = proto::field(unknown, 2)?.ok_or_else(|| bad("raw bytes"))?;
    let meta = proto::field(object, 1)?.ok_or_else(|| bad("metadata"))?;
    let rv = proto::field(meta, 6)?.ok_or_else(|| bad("resourceVersion"))?;
    let rv = std::str::from_utf8(rv)
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .ok_or_else(|| bad("a numeric resourceVersion"))?;
    let mut sent = None;
    proto::each(object, |tag, entry| {
        if tag == 2 && proto::field(entry, 1)? == Some(b"sent".as_slice()) {
            sent = proto::field(entry, 2)?.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        }
        Ok(())
    })?;
    Ok((rv, sent))
}

/// The next whole event at the front of `buf`, taken out of it: a line of
/// JSON, or a protobuf frame (4-byte big-endian length, then the event).
fn next_event(format: Format, buf: &mut Vec<u8>) -> Option<Result<Seen1, String>> {
    match format {
        Format::Json => loop {
            let nl = buf.iter().position(|b| *b == b'\n')?;
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if !line.iter().all(|b| b.is_ascii_whitespace()) {
                return Some(json_event(&line));
            }
        },
        Format::Protobuf => {
            let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
            if buf.len() < 4 + len {
                return None;
            }
            let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            Some(proto_event(&frame))
        }
    }
}

/// Just enough of the protobuf wire format to find fields in a message.
mod proto {
    fn varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at).ok_or("truncated varint")?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    /// Calls `f` with each length-delimited field's tag and bytes; skips the rest.
    pub fn each<'a>(b: &'a [u8], mut f: impl FnMut(u32, &'a [u8]) -> Result<(), String>) -> Result<(), String> {
        let mut at = 0;
        while at < b.len() {
            let key = varint(b, &mut at)?;
            match key & 7 {
                0 => {
                    varint(b, &mut at)?;
                }
                1 => at += 8,
                5 => at += 4,
                2 => {
                    let len = varint(b, &mut at)? as usize;
                    let v = b.get(at..at + len).ok_or("truncated field")?;
                    at += len;
                    f((key >> 3) as u32, v)?;
                }
                w => return Err(format!("unexpected wire type {w}")),
            }
        }
        Ok(())
    }

    /// The bytes of the first length-delimited field `tag`.
    pub fn field(b: &[u8], tag: u32) -> Result<Option<&[u8]>, String> {
        let mut found = None;
        each(b, |t, v| {
            if t == tag && found.is_none() {
                found = Some(v);
            }
            Ok(())
        })?;
        Ok(found)
    }
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    revisions: Vec<u64>,
    latencies: Vec<u64>,
    reordered: u64,
    duplicates: u64,
    error: Option<String>,
}

/// Progress the watchers share while running: events each has taken in, and
/// when the last one arrived (unix ns).
struct Progress {
    counts: Vec<AtomicU64>,
    last_receipt: AtomicU64,
}

async fn watch_one(
    client: Client,
    format: Format,
    path: String,
    stop: tokio::sync::watch::Receiver<bool>,
    progress: Arc<Progress>,
    me: usize,
) -> Seen {
    let mut seen = Seen::default();
    let mut stop = stop;
    let resp = match client.send_as(format, hyper::Method::GET, &path, None).await {
        Ok(r) => r,
        Err(e) => {
            seen.error = Some(e);
            return seen;
        }
    };
    if resp.status() != 200 {
        seen.error = Some(format!("watch answered HTTP {}", resp.status()));
        return seen;
    }
    let content_type = resp.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if format == Format::Protobuf && !content_type.starts_with(generic_server::protobuf::CONTENT_TYPE) {
        seen.error = Some(format!("asked for a protobuf watch, got {content_type:?}"));
        return seen;
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut set: HashSet<u64> = HashSet::new();
    let mut last = 0u64;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => break,
        };
        let data = match frame {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => {
                seen.error = Some(format!("watch stream failed: {e}"));
                break;
            }
            None => {
                seen.error = Some("the server ended the watch".into());
                break;
            }
        };
        let received = now_ns();
        buf.extend_from_slice(&data);
        while let Some(event) = next_event(format, &mut buf) {
            let (rv, sent) = match event {
                Ok(e) => e,
                Err(e) => {
                    seen.error = Some(e);
                    return seen;
                }
            };
            if !set.insert(rv) {
                seen.duplicates += 1;
                continue;
            }
            if rv < last {
                seen.reordered += 1;
            }
            last = last.max(rv);
            seen.revisions.push(rv);
            progress.counts[me].fetch_add(1, Ordering::Relaxed);
            progress.last_receipt.fetch_max(received, Ordering::Relaxed);
            if let Some(sent) = sent {
                seen.latencies.push(received.saturating_sub(sent));
            }
        }
    }
    seen
}

/// The scenario against a server: watchers of the namespace's ConfigMaps
/// from its current state, writers updating them.
pub async fn run(creds: &Creds, cfg: &Config) -> Result<Outcome, String> {
    let writer = Client::connect(creds, 1).await?;
    let api = ApiTarget::json(writer.clone());
    api.prepare(&cfg.namespace).await?;
    // The objects exist before the watches start: every measured write is an
    // update, so none can overtake the create of its object.
    for n in 0..OBJECTS {
        let body = configmap(&cfg.namespace, n, cfg.object_bytes, &[("seq", "setup".into())]);
        let path = format!("/api/v1/namespaces/{}/configmaps", cfg.namespace);
        writer.ok(hyper::Method::POST, &path, Some(body)).await?;
    }
    // Start every watch from the namespace's current state.
    let list = writer
        .ok(hyper::Method::GET, &format!("/api/v1/namespaces/{}/configmaps?limit=1", cfg.namespace), None)
        .await?;
    let list: serde_json::Value = serde_json::from_slice(&list).map_err(|e| format!("decoding a list: {e}"))?;
    let from = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let path = format!("/api/v1/namespaces/{}/configmaps?watch=true&resourceVersion={from}", cfg.namespace);
    let (ns, bytes) = (cfg.namespace.clone(), cfg.object_bytes);
    let write: WriteFn = Arc::new(move |i| {
        let (writer, ns) = (writer.clone(), ns.clone());
        Box::pin(async move {
            let n = i % OBJECTS;
            let body = configmap(&ns, n, bytes, &[("sent", now_ns().to_string()), ("seq", i.to_string())]);
            let path = format!("/api/v1/namespaces/{ns}/configmaps/{}", object_name(n));
            let b = writer.ok(hyper::Method::PUT, &path, Some(body)).await?;
            let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| format!("decoding: {e}"))?;
            v["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| "write answer without resourceVersion".to_string())
        })
    });
    fan_out(creds, &path, cfg, || true, write).await
}

/// The same watchers against the bare HTTP stack, which streams to each of
/// them the event lines a write would cause (the ConfigMap the writer would
/// send, with a resourceVersion), at the same rate: the delivery the HTTP
/// stack alone allows on this machine.
pub async fn baseline(cfg: &Config) -> Result<Outcome, String> {
    let (events, _) = tokio::sync::broadcast::channel::<Bytes>(BASELINE_BUFFER);
    let stack = StackServer::start(Answer::Stream(events.clone()))?;
    let (ns, bytes, watchers) = (cfg.namespace.clone(), cfg.object_bytes, cfg.watchers);
    // Numbering and sending under one lock keeps the stream in revision order.
    let revision = Arc::new(Mutex::new(1_000u64));
    let sender = events.clone();
    let write: WriteFn = Arc::new(move |i| {
        let (events, ns, revision) = (sender.clone(), ns.clone(), revision.clone());
        Box::pin(async move {
            let n = i % OBJECTS;
            let body = configmap(&ns, n, bytes, &[("sent", now_ns().to_string()), ("seq", i.to_string())]);
            let mut object: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let mut rv = revision.lock().unwrap_or_else(|e| e.into_inner());
            *rv += 1;
            object["metadata"]["resourceVersion"] = serde_json::Value::String(rv.to_string());
            let mut line = serde_json::to_vec(&serde_json::json!({"type": "MODIFIED", "object": object}))
                .map_err(|e| e.to_string())?;
            line.push(b'\n');
            events.send(Bytes::from(line)).map_err(|_| "no watcher is subscribed".to_string())?;
            Ok(*rv)
        })
    });
    let outcome = fan_out(&stack.creds, "/watch", cfg, move || events.receiver_count() >= watchers, write).await;
    drop(stack);
    outcome
}

/// Starts the watchers on `path`, waits for them (and for `ready`), writes
/// at the configured rate, gives the watchers a bounded time to catch up,
/// and sets what each saw against what was acknowledged.
async fn fan_out(
    creds: &Creds,
    path: &str,
    cfg: &Config,
    ready: impl Fn() -> bool,
    write: WriteFn,
) -> Result<Outcome, String> {
    let connections = cfg.watchers.div_ceil(WATCHES_PER_CONNECTION).max(1);
    let watch_client = Client::connect(creds, connections).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let progress = Arc::new(Progress {
        counts: (0..cfg.watchers).map(|_| AtomicU64::new(0)).collect(),
        last_receipt: AtomicU64::new(0),
    });
    let mut watchers = Vec::new();
    for me in 0..cfg.watchers {
        let w = watch_one(watch_client.clone(), cfg.format, path.to_string(), stop_rx.clone(), progress.clone(), me);
        watchers.push(tokio::spawn(w));
    }
    let registered = Instant::now() + Duration::from_secs(10);
    while !ready() && Instant::now() < registered {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the watches register before the first write; a watch from a
    // resourceVersion would replay anything written earlier anyway.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let write_sample: Arc<Mutex<Sample>> = Arc::new(Mutex::new(Sample::default()));
    let total = (cfg.writes_per_sec as f64 * cfg.duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / cfg.writes_per_sec.max(1) as f64);
    let start = Instant::now();
    let start_ns = now_ns();
    let mut writes = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let (write, acked, write_sample) = (write.clone(), acked.clone(), write_sample.clone());
        writes.push(tokio::spawn(async move {
            let t = Instant::now();
            let rv = write(i).await;
            let elapsed = t.elapsed().as_nanos() as u64;
            let mut s = write_sample.lock().unwrap_or_else(|e| e.into_inner());
            match rv {
                Ok(rv) => {
                    s.latencies.push(elapsed);
                    acked.lock().unwrap_or_else(|e| e.into_inner()).push(rv);
                }
                Err(e) => s.record_error(e),
            }
        }));
    }
    let wait_until = start + cfg.duration + WRITE_SLACK;
    for w in writes {
        if tokio::time::timeout_at(wait_until.into(), w).await.is_err() {
            let mut s = write_sample.lock().unwrap_or_else(|e| e.into_inner());
            s.record_error(format!("a write was still unanswered {WRITE_SLACK:?} after the last was due"));
        }
    }
    let writing = start.elapsed();
    let acked: HashSet<u64> = acked.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    // Give the watches a bounded time to catch up (every live watcher has
    // as many events as there were acknowledged writes), then end them.
    let expected = acked.len() as u64;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let behind = watchers
                .iter()
                .zip(&progress.counts)
                .any(|(w, c)| !w.is_finished() && c.load(Ordering::Relaxed) < expected);
            if !behind {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let mut outcome_lat: Vec<u64> = Vec::new();
    let (mut delivered, mut lost, mut undelivered, mut reordered, mut duplicates, mut broken) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut errors = Vec::new();
    for w in watchers {
        let seen = match w.await {
            Ok(s) => s,
            Err(e) => Seen { error: Some(format!("watcher task failed: {e}")), ..Seen::default() },
        };
        let got: HashSet<u64> = seen.revisions.iter().copied().collect();
        delivered += seen.revisions.len() as u64;
        let newest = seen.revisions.iter().copied().max().unwrap_or(0);
        for missing in acked.difference(&got) {
            if *missing < newest {
                lost += 1;
            } else {
                undelivered += 1;
            }
        }
        reordered += seen.reordered;
        duplicates += seen.duplicates;
        if let Some(e) = seen.error {
            broken += 1;
            if errors.len() < 5 {
                errors.push(e);
            }
        }
        outcome_lat.extend(seen.latencies);
    }
    outcome_lat.sort_unstable();
    let mut write = std::mem::take(&mut *write_sample.lock().unwrap_or_else(|e| e.into_inner()));
    write.elapsed = writing;
    let write = write.summary();
    // Events per second over the span from the first write to the last receipt.
    let last = progress.last_receipt.load(Ordering::Relaxed);
    let secs = (last.saturating_sub(start_ns) as f64 / 1e9).max(writing.as_secs_f64()).max(1e-6);
    Ok(Outcome {
        watchers: cfg.watchers,
        connections,
        writes: acked.len() as u64,
        write_errors: write.errors,
        write_error_samples: write.error_samples.clone(),
        delivered,
        events_per_sec: crate::driver::round3(delivered as f64 / secs),
        lost,
        undelivered,
        reordered,
        duplicates,
        broken_watches: broken,
        watch_error_samples: errors,
        delivery_ms: Percentiles::of_sorted(&outcome_lat),
        write,
    })
}
