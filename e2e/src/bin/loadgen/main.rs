//! `loadgen`: measures the server under named scenarios with fixed seeds,
//! concurrency, object size and duration, each bounded in time, next to
//! baselines measured in the same run (raw etcd, the embedded store alone,
//! the bare HTTP stack), and writes JSON, a Markdown summary and SVG charts.
//! The baselines a target is judged against run in rounds alternating with
//! the server's own variant (`driver::alternating`): creates with the raw
//! store of the same backend, GET resourceVersion=0 with the bare stack
//! answering the same bytes, so a drift of the machine weighs on both.
//!
//! It starts the release server itself on the embedded store and/or on a
//! private etcd, or targets a running server through `--kubeconfig`.
//!
//! The memory scenario also reports the CPU the restarted server spends
//! while nobody asks it anything: background work of its own controllers
//! that grows with the stored objects shows there (a namespace sweep that
//! read every object every 30 s did).

mod admission;
mod client;
mod driver;
mod figures;
mod rbac;
mod report;
mod server;
mod targets;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::json;

use client::{Client, Creds, Format};
use driver::{drive, pick, Summary};
use report::{Machine, Measurement, Report, Skipped};
use server::ServerProc;
use targets::{configmap, Answer, ApiTarget, EtcdTarget, ListMode, StackServer, StoreTarget, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Embedded,
    Etcd,
    Both,
}

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load scenarios against kube-apiserver, with same-run baselines")]
struct Opts {
    /// Which storage backend(s) to start the server on.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// Target the server of this kubeconfig instead of starting one (startup
    /// and memory, which need a server process of ours, are skipped).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Comma-separated scenarios, or "all": startup, create, get, update,
    /// list, delete, watch-fanout, admission, rbac, memory.
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Shrink every scenario so the whole run takes about two minutes.
    #[arg(long)]
    quick: bool,
    /// Shrink further, for the end-to-end test of loadgen itself.
    #[arg(long)]
    smoke: bool,
    /// Where latest.json, latest.md and the charts go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Seed of every random choice (which objects are read and written).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long each timed scenario runs.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Concurrent clients of the request scenarios.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Objects stored for memory and startup-with-objects.
    #[arg(long)]
    objects: Option<u64>,
    /// Objects in the namespace the list scenario reads.
    #[arg(long)]
    list_objects: Option<u64>,
    /// Watchers of the watch-fanout scenario.
    #[arg(long)]
    watchers: Option<usize>,
    /// Writes per second during watch-fanout.
    #[arg(long)]
    write_rate: Option<u64>,
    /// RoleBindings and ClusterRoleBindings in the cluster during rbac.
    #[arg(long)]
    bindings: Option<u64>,
    /// Bytes of JSON per object.
    #[arg(long)]
    object_bytes: Option<usize>,
    /// The server binary (default: target/release/kube-apiserver).
    #[arg(long)]
    server_binary: Option<PathBuf>,
    /// Run no scenario: serve the bare HTTP stack, answering every request
    /// with DIR/body.json, until killed. Its CA, client certificate and key
    /// go to DIR (ca.crt, client.crt, client.key) and its URL to DIR/url,
    /// for `bench/instructions.sh stack`.
    #[arg(long, value_name = "DIR")]
    serve_stack: Option<PathBuf>,
}

/// The resolved settings of a run.
#[derive(Debug, Clone, serde::Serialize)]
struct Settings {
    scenarios: Vec<String>,
    seed: u64,
    duration_secs: u64,
    concurrency: usize,
    objects: u64,
    list_objects: u64,
    page_size: u64,
    watchers: usize,
    write_rate: u64,
    bindings: u64,
    object_bytes: usize,
    startup_runs: usize,
    /// Longest a bulk load may take before it stops short.
    load_cap_secs: u64,
}

impl Settings {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x == s)
    }
}

fn settings(o: &Opts) -> Result<Settings, String> {
    // (duration, concurrency, objects, list objects, watchers, write rate, bindings, startup runs, load cap)
    let (d, c, n, l, w, r, b, runs, cap) = if o.smoke {
        (1, 8, 200, 200, 10, 20, 40, 1, 30)
    } else if o.quick {
        (3, 64, 2_000, 1_000, 100, 100, 1_000, 2, 60)
    } else {
        (10, 64, 100_000, 10_000, 1_000, 100, 1_000, 3, 240)
    };
    let scenarios: Vec<String> = if o.scenarios == "all" {
        report::SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        o.scenarios.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    for s in &scenarios {
        if !report::SCENARIOS.contains(&s.as_str()) {
            return Err(format!("unknown scenario {s:?}; known: {}", report::SCENARIOS.join(", ")));
        }
    }
    Ok(Settings {
        scenarios,
        seed: o.seed,
        duration_secs: o.duration_secs.unwrap_or(d),
        concurrency: o.concurrency.unwrap_or(c).max(1),
        objects: o.objects.unwrap_or(n),
        list_objects: o.list_objects.unwrap_or(l),
        page_size: 500,
        watchers: o.watchers.unwrap_or(w),
        write_rate: o.write_rate.unwrap_or(r).max(1),
        bindings: o.bindings.unwrap_or(b).max(1),
        object_bytes: o.object_bytes.unwrap_or(1024),
        startup_runs: runs,
        load_cap_secs: cap,
    })
}

/// What a run collects.
struct Run {
    s: Settings,
    measurements: Vec<Measurement>,
    skipped: Vec<Skipped>,
    /// A GET answer of our server, which the HTTP-stack baseline serves verbatim.
    get_body: Option<bytes::Bytes>,
}

impl Run {
    fn push(&mut self, scenario: &str, variant: &str, backend: Option<&str>, summary: Summary) {
        let line = format!(
            "{scenario:>12} | {variant:<40} | {:>8} | {:>10.1} ops/s | p50 {:>8.3} p99 {:>8.3} max {:>8.3} ms | {} errors",
            backend.unwrap_or("baseline"),
            summary.throughput,
            summary.latency_ms.p50,
            summary.latency_ms.p99,
            summary.latency_ms.max,
            summary.errors
        );
        eprintln!("{line}");
        if let Some(e) = summary.error_samples.first() {
            eprintln!("{:>12}   first error: {e}", "");
        }
        self.measurements.push(Measurement {
            scenario: scenario.into(),
            variant: variant.into(),
            backend: backend.map(str::to_string),
            summary: Some(summary),
            extra: serde_json::Value::Null,
        });
    }

    fn push_extra(&mut self, scenario: &str, variant: &str, backend: Option<&str>, extra: serde_json::Value) {
        eprintln!("{scenario:>12} | {variant:<40} | {:>8} | {extra}", backend.unwrap_or("baseline"));
        self.measurements.push(Measurement {
            scenario: scenario.into(),
            variant: variant.into(),
            backend: backend.map(str::to_string),
            summary: None,
            extra,
        });
    }

    fn skip(&mut self, scenario: &str, why: String) {
        eprintln!("{scenario:>12} | skipped: {why}");
        self.skipped.push(Skipped { scenario: scenario.into(), why });
    }
}

/// Stores `count` objects (indexes `from..from+count`) in `scope` with the
/// run's concurrency, unmeasured except for what it returns: the summary
/// (whose `units` are the bytes the target reports stored).
async fn load(run: &Run, target: &Arc<dyn Target>, scope: &str, from: u64, count: u64) -> Summary {
    let (t, scope_s, bytes) = (target.clone(), scope.to_string(), run.s.object_bytes);
    let cap = Duration::from_secs(run.s.load_cap_secs);
    drive(run.s.concurrency, cap, Some(count), move |i| {
        let (t, scope) = (t.clone(), scope_s.clone());
        async move { t.create(&scope, from + i, configmap(&scope, from + i, bytes, &[])).await }
    })
    .await
    .summary()
}

/// Said of a baseline measured in rounds alternating with the server's.
pub const ALTERNATING: &str = " (alternating with the server)";
/// The bare hyper+rustls stack's variants start so.
pub const HTTP_STACK: &str = "HTTP stack";

/// create, get, update, list, delete against one target. `server` says it is
/// ours (or a kubeconfig's): then get and list also run at resourceVersion=0.
/// `paired` is the raw store (and its name) the server's creates are
/// compared with, run in the same rounds.
async fn request_scenarios(
    run: &mut Run,
    target: Arc<dyn Target>,
    name: &str,
    backend: Option<&str>,
    prefix: &str,
    paired: Option<(Arc<dyn Target>, &str)>,
) {
    let server = backend.is_some();
    // The same server read as client-go configured for protobuf reads it.
    let protobuf: Option<Arc<dyn Target>> =
        target.api().map(|c| Arc::new(ApiTarget { client: c.clone(), format: Format::Protobuf }) as Arc<dyn Target>);
    let dur = run.s.duration();
    let (seed, bytes, conc) = (run.s.seed, run.s.object_bytes, run.s.concurrency);
    let scope = format!("{prefix}-objects");
    if let Err(e) = target.prepare(&scope).await {
        run.skip("create", format!("{name}: {e}"));
        return;
    }
    let mut population = 0u64;
    if run.s.wants("create") {
        // The server's creates against its raw store's, in alternating
        // rounds, so a drift of the machine weighs on both alike.
        let mut variants = vec![(target.clone(), name.to_string())];
        if let Some((raw, raw_name)) = &paired {
            match raw.prepare(&scope).await {
                Ok(()) => variants.push((raw.clone(), format!("{raw_name}{ALTERNATING}"))),
                Err(e) => run.skip("create", format!("{raw_name}: {e}")),
            }
        }
        let samples = driver::alternate(conc, dur, &variants, |(t, _), next| {
            let (t, sc) = (t.clone(), scope.clone());
            move |_| {
                let (t, sc) = (t.clone(), sc.clone());
                // One name sequence per target across its rounds.
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { t.create(&sc, i, configmap(&sc, i, bytes, &[])).await }
            }
        })
        .await;
        for ((_, variant), sample) in variants.iter().zip(samples) {
            if variant == name {
                population = sample.latencies.len() as u64 + sample.errors;
            }
            run.push("create", variant, backend, sample.summary());
        }
    }
    let needs_objects = ["get", "update", "delete"].iter().any(|s| run.s.wants(s));
    if needs_objects && population == 0 {
        population = run.s.list_objects.max(1);
        let loaded = load(run, &target, &scope, 0, population).await;
        if loaded.errors > 0 {
            eprintln!("loading {population} objects for {name}: {} errors", loaded.errors);
        }
    }
    if run.s.wants("get") {
        if server && run.get_body.is_none() {
            if let Some(api) = target.api() {
                let path = format!("/api/v1/namespaces/{scope}/configmaps/{}", targets::object_name(0));
                run.get_body = api.ok(hyper::Method::GET, &path, None).await.ok();
            }
        }
        let mut variants = vec![(target.clone(), false, "")];
        if server {
            variants = vec![(target.clone(), false, ", consistent"), (target.clone(), true, ", resourceVersion=0")];
            if let Some(pb) = &protobuf {
                variants.push((pb.clone(), false, ", protobuf, consistent"));
                variants.push((pb.clone(), true, ", protobuf, resourceVersion=0"));
            }
        }
        for (t, cached, suffix) in variants {
            let get = |(t, _): &(Arc<dyn Target>, String), _: Arc<AtomicU64>| {
                let (t, sc) = (t.clone(), scope.clone());
                move |i| {
                    let (t, sc) = (t.clone(), sc.clone());
                    async move { t.get(&sc, pick(seed, i, population), cached).await }
                }
            };
            // GET resourceVersion=0 against the bare stack answering the
            // same bytes, in alternating rounds.
            let stack = match (&run.get_body, server && suffix == ", resourceVersion=0") {
                (Some(body), true) => {
                    let started = async {
                        let stack = StackServer::start(Answer::Fixed(body.clone()))?;
                        let client = Client::connect(&stack.creds, 1).await?;
                        Ok::<_, String>((stack, body.len(), Arc::new(ApiTarget::json(client)) as Arc<dyn Target>))
                    };
                    started.await.map_err(|e| run.skip("get", format!("HTTP stack: {e}"))).ok()
                }
                _ => None,
            };
            let mut compared = vec![(t.clone(), format!("{name}{suffix}"))];
            if let Some((_, len, st)) = &stack {
                compared.push((st.clone(), format!("{HTTP_STACK}, fixed {len}-byte JSON{ALTERNATING}")));
            }
            let samples = driver::alternate(conc, dur, &compared, get).await;
            for ((_, variant), sample) in compared.iter().zip(samples) {
                run.push("get", variant, backend, sample.summary());
            }
        }
    }
    if run.s.wants("update") {
        let (t, sc) = (target.clone(), scope.clone());
        let sample = drive(conc, dur, None, move |i| {
            let (t, sc) = (t.clone(), sc.clone());
            async move {
                let n = pick(seed ^ 0x5555, i, population);
                t.update(&sc, n, configmap(&sc, n, bytes, &[("generation", i.to_string())])).await
            }
        })
        .await;
        run.push("update", name, backend, sample.summary());
    }
    if run.s.wants("list") {
        let list_scope = format!("{prefix}-list");
        let wanted = run.s.list_objects;
        let prepared = target.prepare(&list_scope).await;
        let loaded = load(run, &target, &list_scope, 0, wanted).await;
        let stored = match prepared {
            Ok(()) => target.list(&list_scope, ListMode::Consistent, true).await.map(|(n, _)| n),
            Err(e) => Err(e),
        };
        if loaded.errors > 0 {
            eprintln!("loading {wanted} objects to list: {} errors", loaded.errors);
        }
        match stored {
            Err(e) => run.skip("list", format!("{name}: preparing {wanted} objects: {e}")),
            Ok(n) => {
                let mut variants = vec![(target.clone(), ListMode::Consistent, "".to_string())];
                if server {
                    variants[0].2 = ", consistent".into();
                    variants.push((target.clone(), ListMode::Cached, ", resourceVersion=0".into()));
                }
                let paged = format!(", paginated (limit {})", run.s.page_size);
                variants.push((target.clone(), ListMode::Paged(run.s.page_size), paged));
                if let (true, Some(pb)) = (server, &protobuf) {
                    variants.push((pb.clone(), ListMode::Consistent, ", protobuf, consistent".into()));
                    variants.push((pb.clone(), ListMode::Cached, ", protobuf, resourceVersion=0".into()));
                }
                for (t, mode, suffix) in variants {
                    let sc = list_scope.clone();
                    // One client: the figure is how long one list of n objects takes.
                    let sample = drive(1, dur, None, move |_| {
                        let (t, sc) = (t.clone(), sc.clone());
                        async move { t.list(&sc, mode, false).await.map(|(_, b)| b) }
                    })
                    .await;
                    let mut summary = sample.summary();
                    summary.units = n;
                    run.push("list", &format!("{name}{suffix} ({n} objects)"), backend, summary);
                }
            }
        }
    }
    if run.s.wants("delete") {
        let (t, sc) = (target.clone(), scope.clone());
        let sample = drive(conc, dur, Some(population), move |i| {
            let (t, sc) = (t.clone(), sc.clone());
            async move { t.delete(&sc, i).await }
        })
        .await;
        run.push("delete", name, backend, sample.summary());
    }
}

/// The server's allocator, so that the baselines measured in this process
/// (the embedded store alone, the bare HTTP stack) pay what the server pays
/// for memory and ratios compare the server's own work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let opts = Opts::parse();
    if let Some(dir) = &opts.serve_stack {
        if let Err(e) = serve_stack(dir) {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run_all(opts)) {
        Ok(violations) if violations > 0 => {
            eprintln!("loadgen: WATCH EVENTS LOST, REORDERED OR DUPLICATED: {violations}");
            std::process::exit(1);
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
    // Watch streams and spawned servers may still hold tasks; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// `--serve-stack`: the GET baseline alone, for counting its instructions.
fn serve_stack(dir: &Path) -> Result<(), String> {
    let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("reading {f}: {e}"));
    let stack = StackServer::start(Answer::Fixed(read("body.json")?.into()))?;
    let c = &stack.creds;
    for (f, bytes) in [("ca.crt", &c.ca_pem), ("client.crt", &c.cert_pem), ("client.key", &c.key_pem)] {
        std::fs::write(dir.join(f), bytes).map_err(|e| format!("writing {f}: {e}"))?;
    }
    // Written last: its presence says the stack is serving.
    std::fs::write(dir.join("url"), &c.server).map_err(|e| format!("writing url: {e}"))?;
    loop {
        std::thread::park();
    }
}

fn workspace_root() -> PathBuf {
    e2e::workspace_root()
}

async fn run_all(opts: Opts) -> Result<u64, String> {
    let s = settings(&opts)?;
    let root = workspace_root();
    let mut run = Run { s: s.clone(), measurements: Vec::new(), skipped: Vec::new(), get_body: None };
    let backends: Vec<&str> = match opts.backend {
        BackendChoice::Embedded => vec!["embedded"],
        BackendChoice::Etcd => vec!["etcd"],
        BackendChoice::Both => vec!["embedded", "etcd"],
    };
    let started = Instant::now();
    let work = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;

    if let Some(kc) = &opts.kubeconfig {
        let creds = Creds::from_kubeconfig(kc)?;
        for sc in ["startup", "memory"] {
            if s.wants(sc) {
                run.skip(sc, "needs a server process started by loadgen (a --kubeconfig target was given)".into());
            }
        }
        let tag = format!("lg{}", std::process::id());
        server_scenarios(&mut run, &creds, None, "external", &tag, None).await?;
    } else {
        let binary = opts.server_binary.clone().unwrap_or_else(|| root.join("target/release/kube-apiserver"));
        if !binary.exists() {
            return Err(format!(
                "no server binary at {}: build it with `cargo build --release --bin kube-apiserver` or pass --server-binary",
                binary.display()
            ));
        }
        for b in &backends {
            backend_run(&mut run, &binary, b, work.path()).await?;
        }
    }
    baselines(&mut run, &backends, work.path()).await;

    let violations = run
        .measurements
        .iter()
        .filter(|m| m.scenario == "watch-fanout")
        .map(|m| ["lost", "reordered", "duplicates"].iter().map(|k| m.extra[*k].as_u64().unwrap_or(0)).sum::<u64>())
        .sum();
    let mut settings_json = serde_json::to_value(&s).unwrap_or_default();
    settings_json["backends"] = json!(backends);
    settings_json["quick"] = json!(opts.quick);
    settings_json["smoke"] = json!(opts.smoke);
    settings_json["target"] = json!(if opts.kubeconfig.is_some() { "kubeconfig" } else { "started by loadgen" });
    settings_json["wall_seconds"] = json!(driver::round3(started.elapsed().as_secs_f64()));
    let figures = figures::figures(&run.measurements);
    let report = Report {
        machine: Machine::detect(&root),
        settings: settings_json,
        measurements: run.measurements,
        figures,
        skipped: run.skipped,
        watch_violations: violations,
    };
    report::write_all(&report, &opts.out)?;
    eprintln!("loadgen: wrote {} in {:.0} s", opts.out.display(), started.elapsed().as_secs_f64());
    Ok(violations)
}

/// Every scenario on one backend, with servers loadgen starts.
async fn backend_run(run: &mut Run, binary: &Path, backend: &str, work: &Path) -> Result<(), String> {
    let etcd = if backend == "etcd" { Some(tokio::task::block_in_place(e2e::etcd::EtcdServer::start)) } else { None };
    let etcd_url = etcd.as_ref().map(|e| e.client_url());
    let dir = work.join(backend);
    let at = |name: &str| (dir.join(name), etcd_url.as_deref().map(|u| (u.to_string(), format!("/{name}"))));
    let start = |name: &str| {
        let (d, e) = at(name);
        let log = dir.join(format!("{name}.log"));
        async move { ServerProc::start(binary, &d, e.as_ref().map(|(u, p)| (u.as_str(), p.as_str())), &log).await }
    };
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    if run.s.wants("startup") {
        let mut times = Vec::new();
        for k in 0..run.s.startup_runs {
            let (mut p, st) = start(&format!("startup-{k}")).await?;
            times.push(st);
            p.stop();
        }
        let mut ms: Vec<f64> = times.iter().map(|t| t.readyz_ms).collect();
        ms.sort_by(f64::total_cmp);
        let extra = json!({
            "readyz_ms": driver::round3(ms[ms.len() / 2]),
            "runs_ms": ms.iter().map(|m| driver::round3(*m)).collect::<Vec<_>>(),
            "logged_ms": times.iter().map(|t| t.logged_ms).collect::<Vec<_>>(),
            "objects": 0,
        });
        run.push_extra("startup", "empty store", Some(backend), extra);
    }

    let wants_requests = ["create", "get", "update", "list", "delete", "watch-fanout", "admission", "rbac"]
        .iter()
        .any(|s| run.s.wants(s));
    if wants_requests {
        let (mut p, _) = start("main").await?;
        let pki = p.data_dir.join("pki");
        // The raw store of the same backend, for the creates compared in
        // alternating rounds (its etcd a private one, as the baseline's).
        let (raw, _raw_etcd): (Option<Arc<dyn Target>>, _) = match backend {
            "etcd" if run.s.wants("create") => {
                let etcd = tokio::task::block_in_place(e2e::etcd::EtcdServer::start);
                let raw = EtcdTarget::connect(&etcd.client_url()).await.map(|t| Arc::new(t) as Arc<dyn Target>);
                (raw.map_err(|e| eprintln!("raw etcd for create: {e}")).ok(), Some(etcd))
            }
            _ if run.s.wants("create") => {
                let raw = StoreTarget::open(&dir.join("paired.redb")).map(|t| Arc::new(t) as Arc<dyn Target>);
                (raw.map_err(|e| eprintln!("embedded store for create: {e}")).ok(), None)
            }
            _ => (None, None),
        };
        let paired = raw.map(|t| (t, figures::raw_store(Some(backend)).unwrap_or("raw store")));
        let result = server_scenarios(run, &p.creds, Some(&pki), backend, "lg", paired).await;
        p.stop();
        result?;
    }

    if run.s.wants("memory") || run.s.wants("startup") {
        let (mut p, _) = start("loaded").await?;
        let rss_empty = p.rss_bytes().unwrap_or(0);
        let client = Client::connect(&p.creds, 1).await?;
        let target: Arc<dyn Target> = Arc::new(ApiTarget::json(client));
        target.prepare("lg-loaded").await?;
        let n = run.s.objects;
        let loaded = load(run, &target, "lg-loaded", 0, n).await;
        if loaded.errors > 0 {
            eprintln!("loading {n} objects: {} errors, e.g. {:?}", loaded.errors, loaded.error_samples.first());
        }
        // Let allocations from the burst settle before reading RSS.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = p.rss_bytes().unwrap_or(0);
        p.stop();
        let (mut p2, st) = start("loaded").await?;
        // The watch cache fills as resources are first listed or watched; read RSS once it has.
        if let Ok(c) = Client::connect(&p2.creds, 1).await {
            let _ = c
                .request(hyper::Method::GET, "/api/v1/namespaces/lg-loaded/configmaps?resourceVersion=0&limit=1", None)
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = p2.rss_bytes().unwrap_or(0);
        // What the server spends with nobody asking anything: its own
        // controllers' background work over the stored objects. The window
        // spans the namespace controller's 30 s resync in a full run.
        let idle = run.s.duration() * 3 + Duration::from_secs(1);
        let cpu_before = p2.cpu_time();
        tokio::time::sleep(idle).await;
        let idle_cpu = cpu_before.zip(p2.cpu_time()).map(|(a, b)| b.saturating_sub(a));
        p2.stop();
        if run.s.wants("memory") {
            let json_bytes = loaded.units;
            let extra = json!({
                "objects": loaded.ops,
                "object_bytes": run.s.object_bytes,
                "json_bytes": json_bytes,
                "rss_bytes": rss,
                "rss_empty_bytes": rss_empty,
                "rss_after_restart_bytes": rss_after,
                "idle_seconds": idle.as_secs_f64(),
                "idle_cpu_percent": idle_cpu.map(|c| driver::round3(100.0 * c.as_secs_f64() / idle.as_secs_f64())),
                "ratio": driver::round3(rss as f64 / json_bytes.max(1) as f64),
                "growth_ratio": driver::round3(rss.saturating_sub(rss_empty) as f64 / json_bytes.max(1) as f64),
                "load_seconds": loaded.seconds,
                "load_errors": loaded.errors,
            });
            run.push_extra("memory", &format!("{} objects", loaded.ops), Some(backend), extra);
        }
        if run.s.wants("startup") {
            let extra = json!({
                "readyz_ms": driver::round3(st.readyz_ms),
                "logged_ms": st.logged_ms,
                "objects": loaded.ops,
            });
            run.push_extra("startup", &format!("{} objects stored", loaded.ops), Some(backend), extra);
        }
    }
    drop(etcd);
    Ok(())
}

fn format_suffix(format: Format) -> &'static str {
    match format {
        Format::Json => "",
        Format::Protobuf => "-protobuf",
    }
}

fn watch_config(s: &Settings, namespace: &str, format: Format) -> watch::Config {
    watch::Config {
        namespace: namespace.to_string(),
        watchers: s.watchers,
        writes_per_sec: s.write_rate,
        duration: s.duration(),
        object_bytes: s.object_bytes,
        format,
    }
}

fn watch_variant(cfg: &watch::Config) -> String {
    let format = if cfg.format == Format::Protobuf { ", protobuf" } else { "" };
    format!("{} watchers, {} writes/s{format}", cfg.watchers, cfg.writes_per_sec)
}

fn json_of(o: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(o).unwrap_or_default()
}

/// The request scenarios, watch-fanout, admission and rbac against a running
/// server; `pki` is its DATA_DIR/pki when loadgen started it (rbac issues a
/// non-admin client certificate with its CA).
async fn server_scenarios(
    run: &mut Run,
    creds: &Creds,
    pki: Option<&Path>,
    backend: &str,
    prefix: &str,
    paired: Option<(Arc<dyn Target>, &str)>,
) -> Result<(), String> {
    let client = Client::connect(creds, 1).await?;
    let target: Arc<dyn Target> = Arc::new(ApiTarget::json(client));
    request_scenarios(run, target, "server", Some(backend), prefix, paired).await;
    if run.s.wants("watch-fanout") {
        for format in [Format::Json, Format::Protobuf] {
            let cfg = watch_config(&run.s, &format!("{prefix}-watch{}", format_suffix(format)), format);
            match watch::run(creds, &cfg).await {
                Ok(o) => run.push_extra("watch-fanout", &watch_variant(&cfg), Some(backend), json_of(&o)),
                Err(e) => run.skip("watch-fanout", format!("{backend}: {e}")),
            }
        }
    }
    if run.s.wants("admission") {
        admission::run(run, creds, backend, prefix).await;
    }
    if run.s.wants("rbac") {
        rbac::run(run, creds, pki, backend, prefix).await;
    }
    if backend == "external" {
        // Not our server: leave it as it was (the namespaces' deletion
        // removes everything loadgen stored).
        let client = Client::connect(creds, 1).await?;
        for ns in [
            "objects",
            "list",
            "watch",
            "watch-protobuf",
            "rbac",
            "admission-none",
            "admission-none-2",
            "admission-nomatch",
            "admission-nomatch-2",
            "admission-match",
            "admission-probe",
        ] {
            let _ = client.request(hyper::Method::DELETE, &format!("/api/v1/namespaces/{prefix}-{ns}"), None).await;
        }
    }
    Ok(())
}

async fn baselines(run: &mut Run, backends: &[&str], work: &Path) {
    let any_request = ["create", "get", "update", "list", "delete"].iter().any(|s| run.s.wants(s));
    if any_request && backends.contains(&"embedded") {
        match StoreTarget::open(&work.join("baseline.redb")) {
            Ok(t) => request_scenarios(run, Arc::new(t), "embedded store alone", None, "base", None).await,
            Err(e) => run.skip("create", format!("embedded store baseline: {e}")),
        }
    }
    if any_request && backends.contains(&"etcd") {
        let etcd = tokio::task::block_in_place(e2e::etcd::EtcdServer::start);
        match EtcdTarget::connect(&etcd.client_url()).await {
            Ok(t) => request_scenarios(run, Arc::new(t), "raw etcd", None, "base", None).await,
            Err(e) => run.skip("create", format!("raw etcd baseline: {e}")),
        }
    }
    if run.s.wants("watch-fanout") {
        watch_baseline(run).await;
    }
}

/// The watch-fanout baseline: the bare HTTP stack streaming the same event
/// bytes to as many watchers at the same rate.
async fn watch_baseline(run: &mut Run) {
    let cfg = watch_config(&run.s, "base-watch", Format::Json);
    match watch::baseline(&cfg).await {
        Ok(o) => run.push_extra("watch-fanout", &format!("HTTP stack, {}", watch_variant(&cfg)), None, json_of(&o)),
        Err(e) => run.skip("watch-fanout", format!("HTTP stack baseline: {e}")),
    }
}
