//! watch-fanout: W watches on the ConfigMaps of one namespace while writers
//! create and update objects at a fixed rate, each write carrying its send
//! time. Every watcher checks what it got against what the writers had
//! acknowledged: each write seen exactly once, in resourceVersion order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;

use crate::client::{Client, Creds};
use crate::driver::{Percentiles, Sample, Summary};
use crate::targets::{configmap, object_name, ApiTarget, Target};

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
}

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
    path: String,
    stop: tokio::sync::watch::Receiver<bool>,
    progress: Arc<Progress>,
    me: usize,
) -> Seen {
    let mut seen = Seen::default();
    let mut stop = stop;
    let resp = match client.send(hyper::Method::GET, &path, None).await {
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
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let ev: Event = match serde_json::from_slice(&line) {
                Ok(e) => e,
                Err(e) => {
                    seen.error = Some(format!("undecodable watch event: {e}"));
                    return seen;
                }
            };
            let Ok(rv) = ev.object.metadata.resource_version.parse::<u64>() else {
                seen.error = Some(format!("event with resourceVersion {:?}", ev.object.metadata.resource_version));
                return seen;
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
            if let Some(sent) = ev.object.data.and_then(|d| d.sent).and_then(|s| s.parse::<u64>().ok()) {
                seen.latencies.push(received.saturating_sub(sent));
            }
        }
    }
    seen
}

pub async fn run(creds: &Creds, cfg: &Config) -> Result<Outcome, String> {
    let writer = Client::connect(creds, 1).await?;
    let api = ApiTarget { client: writer.clone() };
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
    let connections = cfg.watchers.div_ceil(WATCHES_PER_CONNECTION).max(1);
    let watch_client = Client::connect(creds, connections).await?;
    let path = format!("/api/v1/namespaces/{}/configmaps?watch=true&resourceVersion={from}", cfg.namespace);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let progress = Arc::new(Progress {
        counts: (0..cfg.watchers).map(|_| AtomicU64::new(0)).collect(),
        last_receipt: AtomicU64::new(0),
    });
    let mut watchers = Vec::new();
    for me in 0..cfg.watchers {
        let w = watch_one(watch_client.clone(), path.clone(), stop_rx.clone(), progress.clone(), me);
        watchers.push(tokio::spawn(w));
    }
    // Let the watches register before the first write; a watch from `from`
    // would replay anything written earlier anyway.
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
        let (api_client, acked, write_sample, ns) =
            (writer.clone(), acked.clone(), write_sample.clone(), cfg.namespace.clone());
        let bytes = cfg.object_bytes;
        writes.push(tokio::spawn(async move {
            let n = i % OBJECTS;
            let t = Instant::now();
            let body = configmap(&ns, n, bytes, &[("sent", now_ns().to_string()), ("seq", i.to_string())]);
            let path = format!("/api/v1/namespaces/{ns}/configmaps/{}", object_name(n));
            let r = api_client.ok(hyper::Method::PUT, &path, Some(body)).await;
            let elapsed = t.elapsed().as_nanos() as u64;
            let rv = r.and_then(|b: Bytes| {
                let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| format!("decoding: {e}"))?;
                v["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| "write answer without resourceVersion".to_string())
            });
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
