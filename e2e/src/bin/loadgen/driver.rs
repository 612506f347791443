//! The closed-loop driver every request scenario runs on (N workers, each
//! issuing its next operation when the last one answers, until a deadline or
//! an operation budget), and the latency summary it produces.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How many error messages a measurement keeps verbatim.
const ERROR_SAMPLES: usize = 5;

/// What a run of operations produced.
#[derive(Default)]
pub struct Sample {
    /// Latencies of the successful operations, in nanoseconds.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    /// A total the operations reported (bytes stored, items listed).
    pub units: u64,
}

impl Sample {
    pub fn record_error(&mut self, e: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(e);
        }
    }

    pub fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(e);
            }
        }
        self.units += other.units;
    }

    /// Another slice of the same variant, measured at another time: one
    /// sample over both (the throughput is over their summed time).
    pub fn merge_slice(&mut self, other: Sample) {
        self.elapsed += other.elapsed;
        self.merge(other);
    }

    pub fn summary(mut self) -> Summary {
        self.latencies.sort_unstable();
        let secs = self.elapsed.as_secs_f64();
        let ops = self.latencies.len() as u64;
        Summary {
            ops,
            errors: self.errors,
            error_samples: self.error_samples,
            seconds: round3(secs),
            throughput: if secs > 0.0 { round3(ops as f64 / secs) } else { 0.0 },
            latency_ms: Percentiles::of_sorted(&self.latencies),
            units: self.units,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of ascending nanosecond values.
    pub fn of_sorted(v: &[u64]) -> Percentiles {
        let at = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            round3(v[rank - 1] as f64 / 1e6)
        };
        Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Successful operations.
    pub ops: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub seconds: f64,
    /// Successful operations per second.
    pub throughput: f64,
    pub latency_ms: Percentiles,
    pub units: u64,
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `op(i)` from `workers` concurrent workers for operation indexes
/// 0, 1, 2, ... until `duration` has passed or `budget` operations were
/// started. `op` returns a count (bytes, items) summed into `units`.
pub async fn drive<F, Fut>(workers: usize, duration: Duration, budget: Option<u64>, op: F) -> Sample
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let total = Arc::new(Mutex::new(Sample::default()));
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (op, next, total) = (op.clone(), next.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Sample::default();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if budget.is_some_and(|b| i >= b) {
                    break;
                }
                let t = Instant::now();
                // An operation that hangs past the deadline by a wide margin
                // counts as an error, so every scenario ends in bounded time.
                let limit = deadline.saturating_duration_since(t) + Duration::from_secs(30);
                match tokio::time::timeout(limit, op(i)).await {
                    Ok(Ok(units)) => {
                        mine.latencies.push(t.elapsed().as_nanos() as u64);
                        mine.units += units;
                    }
                    Ok(Err(e)) => mine.record_error(e),
                    Err(_) => mine.record_error(format!("operation {i} timed out after {limit:?}")),
                }
            }
            total.lock().unwrap_or_else(|e| e.into_inner()).merge(mine);
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            total.lock().unwrap_or_else(|e| e.into_inner()).record_error(format!("worker failed: {e}"));
        }
    }
    let mut sample = std::mem::take(&mut *total.lock().unwrap_or_else(|e| e.into_inner()));
    sample.elapsed = start.elapsed();
    sample
}

/// Rounds in which the variants of a comparison run, each round in the
/// reverse order of the one before.
pub const ROUNDS: usize = 4;

/// The order in which `variants` compared variants run (variant indexes):
/// [`ROUNDS`] rounds, each the reverse of the one before (A B B A A B B A
/// for two), so a drift or a stall of the machine weighs on each alike.
pub fn alternating(variants: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..ROUNDS)
        .flat_map(move |round| (0..variants).map(move |i| (round, if round % 2 == 0 { i } else { variants - 1 - i })))
}

/// Runs each of `variants` for its share of `dur` in [`alternating`]
/// rounds, `op` making each one's operation (given a counter that goes on
/// across that variant's rounds); their samples in `variants`' order.
pub async fn alternate<V, F, O, Fut>(conc: usize, dur: Duration, variants: &[V], op: F) -> Vec<Sample>
where
    F: Fn(&V, Arc<AtomicU64>) -> O,
    O: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let slice = dur / ROUNDS as u32;
    let counters: Vec<Arc<AtomicU64>> = variants.iter().map(|_| Arc::default()).collect();
    let mut samples: Vec<Sample> = variants.iter().map(|_| Sample::default()).collect();
    for (_, v) in alternating(variants.len()) {
        samples[v].merge_slice(drive(conc, slice, None, op(&variants[v], counters[v].clone())).await);
    }
    samples
}

/// A small seeded generator (splitmix64) for picking objects: the same seed
/// gives the same sequence of picks on every run and every target.
pub fn pick(seed: u64, i: u64, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_their_order() {
        let order: Vec<usize> = alternating(2).map(|(_, v)| v).collect();
        assert_eq!(order, [0, 1, 1, 0, 0, 1, 1, 0]);
        let rounds: Vec<(usize, usize)> = alternating(3).take(6).collect();
        assert_eq!(rounds, [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]);
    }
}
