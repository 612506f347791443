//! The process-wide metrics registry and upstream's metric families, served at
//! /metrics in Prometheus' text format (upstream's legacyregistry).
//!
//! Names, labels, help texts and buckets are kube-apiserver 1.33's (the level
//! /version reports), so that existing dashboards and alerts read them:
//! apiserver_request_total, apiserver_request_duration_seconds,
//! apiserver_request_terminations_total, apiserver_current_inflight_requests,
//! apiserver_longrunning_requests, apiserver_watch_events_total,
//! apiserver_storage_objects, etcd_request_duration_seconds (for either storage
//! backend) and the process_* families.
//!
//! Storage and the filters speak in keys and RequestInfos; this module also
//! owns turning those into upstream's label values, from the resources the
//! delegation chain serves (their `key_root`s).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, RwLock};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::body;
use crate::handler::{DynHandler, Request, Response};
use crate::request_info::{query_values, RequestInfo};
use crate::storage::Storage;

/// Upstream's request latency buckets, shared by the request and etcd histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2., 3., 4., 5., 6., 8., 10., 15., 20., 30., 45., 60.,
];

/// The component label of requests served by this process's own chain.
pub const APISERVER_COMPONENT: &str = "apiserver";

/// The request kinds of apiserver_current_inflight_requests.
pub const READ_ONLY_KIND: &str = "readOnly";
pub const MUTATING_KIND: &str = "mutating";

/// How often the in-flight watermark is published, as upstream.
const INFLIGHT_PERIOD: Duration = Duration::from_secs(1);

/// The least time between two rebuilds of the resource index, and between two
/// object counts: a client can make either happen, so it must stay cheap.
const REFRESH_FLOOR: Duration = Duration::from_secs(1);

/// Subresources whose requests upstream reports with the verb CONNECT.
const CONNECT_SUBRESOURCES: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];

/// Verbs upstream reports as they are; anything else is "other".
const VALID_VERBS: &[&str] = &[
    "APPLY",
    "CONNECT",
    "CREATE",
    "DELETE",
    "DELETECOLLECTION",
    "GET",
    "LIST",
    "PATCH",
    "POST",
    "PROXY",
    "PUT",
    "UPDATE",
    "WATCH",
    "WATCHLIST",
];

pub struct Metrics {
    registry: Registry,
    request_total: IntCounterVec,
    request_duration: HistogramVec,
    request_terminations: IntCounterVec,
    longrunning: IntGaugeVec,
    inflight: IntGaugeVec,
    watch_events: IntCounterVec,
    storage_objects: IntGaugeVec,
    etcd_request_duration: HistogramVec,
    audit_events: IntCounterVec,
    audit_errors: IntCounterVec,
    audit_levels: IntCounterVec,
    audit_rejected: IntCounterVec,
    webhook_duration: HistogramVec,
    webhook_requests: IntCounterVec,
    webhook_rejections: IntCounterVec,
    webhook_fail_open: IntCounterVec,
    pod_security_evaluations: IntCounterVec,
    pod_security_exemptions: IntCounterVec,
    pod_security_errors: IntCounterVec,
    /// The highest in-flight count of each kind since the last publication.
    watermarks: [AtomicI64; 2],
    watermark_task: Once,
    resources: ResourceIndex,
    objects: Mutex<ObjectCounting>,
}

/// The storage objects are counted in, and when they last were.
#[derive(Default)]
struct ObjectCounting {
    storage: Option<Arc<dyn Storage>>,
    counted: Option<Instant>,
}

/// The one registry of this process.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

// The definitions are constants: a failure in these is a bug any test finds.
fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter definition");
    registry.register(Box::new(c.clone())).expect("a metric name registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge definition");
    registry.register(Box::new(g.clone())).expect("a metric name registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).expect("a valid histogram definition");
    registry.register(Box::new(h.clone())).expect("a metric name registered once");
    h
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = registry.register(Box::new(process)) {
                tracing::warn!("process metrics unavailable: {e}");
            }
        }
        let request_labels = ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"];
        let mut with_code = request_labels.to_vec();
        with_code.push("code");
        let m = Metrics {
            request_total: counter(
                &registry,
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
                &with_code,
            ),
            request_duration: histogram(
                &registry,
                "apiserver_request_duration_seconds",
                "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
                &request_labels,
            ),
            request_terminations: counter(
                &registry,
                "apiserver_request_terminations_total",
                "Number of requests which apiserver terminated in self-defense.",
                &["verb", "group", "version", "resource", "subresource", "scope", "component", "code"],
            ),
            longrunning: gauge(
                &registry,
                "apiserver_longrunning_requests",
                "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
                &["verb", "group", "version", "resource", "subresource", "scope", "component"],
            ),
            inflight: gauge(
                &registry,
                "apiserver_current_inflight_requests",
                "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
                &["request_kind"],
            ),
            watch_events: counter(
                &registry,
                "apiserver_watch_events_total",
                "Number of events sent in watch clients",
                &["group", "version", "kind"],
            ),
            storage_objects: gauge(
                &registry,
                "apiserver_storage_objects",
                "Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.",
                &["resource"],
            ),
            etcd_request_duration: histogram(
                &registry,
                "etcd_request_duration_seconds",
                "Etcd request latency in seconds for each operation and object type.",
                &["operation", "type"],
            ),
            audit_events: counter(
                &registry,
                "apiserver_audit_event_total",
                "Counter of audit events generated and sent to the audit backend.",
                &[],
            ),
            audit_errors: counter(
                &registry,
                "apiserver_audit_error_total",
                "Counter of audit events that failed to be audited properly. Plugin identifies the plugin affected by the error.",
                &["plugin"],
            ),
            audit_levels: counter(
                &registry,
                "apiserver_audit_level_total",
                "Counter of policy levels for audit events (1 per request).",
                &["level"],
            ),
            audit_rejected: counter(
                &registry,
                "apiserver_audit_requests_rejected_total",
                "Counter of apiserver requests rejected due to an error in audit logging backend.",
                &[],
            ),
            webhook_duration: {
                // Upstream's buckets for admission webhooks, not the request ones.
                let opts = HistogramOpts::new(
                    "apiserver_admission_webhook_admission_duration_seconds",
                    "Admission webhook latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).",
                )
                .buckets(vec![0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 25.0]);
                let h = HistogramVec::new(opts, &["name", "type", "operation", "rejected"])
                    .expect("a valid histogram definition");
                registry.register(Box::new(h.clone())).expect("a metric name registered once");
                h
            },
            webhook_requests: counter(
                &registry,
                "apiserver_admission_webhook_request_total",
                "Admission webhook request total, identified by name and broken out for each admission type (validating or mutating) and operation. Additional labels specify whether the request was rejected or not and an HTTP status code. Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.",
                &["name", "type", "operation", "code", "rejected"],
            ),
            webhook_rejections: counter(
                &registry,
                "apiserver_admission_webhook_rejection_count",
                "Admission webhook rejection count, identified by name and broken out for each admission type (validating or admit) and operation. Additional labels specify an error type (calling_webhook_error or apiserver_internal_error if an error occurred; no_error otherwise) and optionally a non-zero rejection code if the webhook rejects the request with an HTTP status code (honored by the apiserver when the code is greater or equal to 400). Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.",
                &["name", "type", "operation", "error_type", "rejection_code"],
            ),
            webhook_fail_open: counter(
                &registry,
                "apiserver_admission_webhook_fail_open_count",
                "Admission webhook fail open count, identified by name and broken out for each admission type (validating or admit).",
                &["name", "type"],
            ),
            pod_security_evaluations: counter(
                &registry,
                "pod_security_evaluations_total",
                "Number of policy evaluations that occurred, not counting ignored or exempt requests.",
                &["decision", "policy_level", "policy_version", "mode", "request_operation", "resource", "subresource"],
            ),
            pod_security_exemptions: counter(
                &registry,
                "pod_security_exemptions_total",
                "Number of exempt requests, not counting ignored or out of scope requests.",
                &["request_operation", "resource", "subresource"],
            ),
            pod_security_errors: counter(
                &registry,
                "pod_security_errors_total",
                "Number of errors preventing normal evaluation. Non-fatal errors may result in the latest restricted profile being used for evaluation.",
                &["fatal", "request_operation", "resource", "subresource"],
            ),
            registry,
            watermarks: [AtomicI64::new(0), AtomicI64::new(0)],
            watermark_task: Once::new(),
            resources: ResourceIndex::default(),
            objects: Mutex::default(),
        };
        for kind in [READ_ONLY_KIND, MUTATING_KIND] {
            m.inflight.with_label_values(&[kind]).set(0);
        }
        m
    }

    /// One admission webhook call (upstream's ObserveWebhook): `step` is
    /// "admit" or "validating", `code` the HTTP code it ended with (0 for an
    /// internal error).
    pub fn observe_webhook(
        &self,
        name: &str,
        step: &str,
        operation: &str,
        rejected: bool,
        code: u16,
        elapsed: Duration,
    ) {
        let rejected = if rejected { "true" } else { "false" };
        self.webhook_duration.with_label_values(&[name, step, operation, rejected]).observe(elapsed.as_secs_f64());
        let code = code.min(600).to_string();
        self.webhook_requests.with_label_values(&[name, step, operation, &code, rejected]).inc();
    }

    /// A request an admission webhook refused or failed (upstream's
    /// ObserveWebhookRejection); `error_type` is calling_webhook_error,
    /// apiserver_internal_error or no_error.
    pub fn observe_webhook_rejection(&self, name: &str, step: &str, operation: &str, error_type: &str, code: u16) {
        let code = code.min(600).to_string();
        self.webhook_rejections.with_label_values(&[name, step, operation, error_type, &code]).inc();
    }

    /// A failing webhook whose failurePolicy let the request through.
    pub fn observe_webhook_fail_open(&self, name: &str, step: &str) {
        self.webhook_fail_open.with_label_values(&[name, step]).inc();
    }

    /// One PodSecurity policy evaluation (upstream's RecordEvaluation):
    /// `policy` is (level, version label, mode), `request` (operation,
    /// resource, subresource) as upstream labels them.
    pub fn observe_pod_security_evaluation(&self, allowed: bool, policy: [&str; 3], request: [&str; 3]) {
        let decision = if allowed { "allow" } else { "deny" };
        let [level, version, mode] = policy;
        let [operation, resource, subresource] = request;
        let labels = [decision, level, version, mode, operation, resource, subresource];
        self.pod_security_evaluations.with_label_values(&labels).inc();
    }

    /// A request PodSecurity exempted (upstream's RecordExemption).
    pub fn observe_pod_security_exemption(&self, request: [&str; 3]) {
        self.pod_security_exemptions.with_label_values(&request).inc();
    }

    /// An error keeping PodSecurity from its normal evaluation (upstream's
    /// RecordError); a fatal one decided the request without a policy.
    pub fn observe_pod_security_error(&self, fatal: bool, request: [&str; 3]) {
        let [operation, resource, subresource] = request;
        let fatal = if fatal { "true" } else { "false" };
        self.pod_security_errors.with_label_values(&[fatal, operation, resource, subresource]).inc();
    }

    /// The audit policy's level for one request.
    pub fn observe_audit_level(&self, level: &str) {
        self.audit_levels.with_label_values(&[level]).inc();
    }

    /// An audit event handed to the backend (`lost`: which failed to take it).
    pub fn observe_audit_event(&self, lost: bool) {
        self.audit_events.with_label_values::<&str>(&[]).inc();
        if lost {
            self.audit_errors.with_label_values(&["log"]).inc();
        }
    }

    /// A request refused because its audit event could not be written.
    pub fn observe_audit_rejected(&self) {
        self.audit_rejected.with_label_values::<&str>(&[]).inc();
    }

    /// Where resources (their names and storage key roots) are looked up: the
    /// front of a delegation chain, whose `api_groups()` lists all of them.
    pub fn serve_resources_of(&self, chain: DynHandler) {
        *self.resources.source.write().unwrap_or_else(|e| e.into_inner()) = Some(chain);
        self.resources.invalidate();
    }

    /// The storage apiserver_storage_objects counts in.
    pub fn count_objects_in(&self, storage: Arc<dyn Storage>) {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).storage = Some(storage);
    }

    /// Records a request that the chain answered.
    pub fn observe_request(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        let mut buf = [0; 3];
        let values = labels.with_dry_run(code_label(code, &mut buf));
        LAST_REQUEST_SERIES.with_borrow_mut(|last| {
            let series = match last {
                Some(s) if s.labels.iter().eq(values.iter()) => s,
                _ => {
                    // The duration histogram has every label but the code.
                    let duration = self.request_duration.with_label_values(&values[..values.len() - 1]);
                    let total = self.request_total.with_label_values(&values);
                    let mut labels = last.take().map(|s| s.labels).unwrap_or_default();
                    for (kept, value) in labels.iter_mut().zip(values) {
                        kept.clear();
                        kept.push_str(value);
                    }
                    last.insert(RequestSeries { labels, duration, total })
                }
            };
            series.duration.observe(elapsed.as_secs_f64());
            series.total.inc();
        });
    }

    /// Records a request refused before it was served (upstream's
    /// RecordDroppedRequest): counted, not timed.
    pub fn observe_dropped(&self, labels: &RequestLabels, code: u16) {
        let mut buf = [0; 3];
        self.request_total.with_label_values(&labels.with_dry_run(code_label(code, &mut buf))).inc();
    }

    /// Records a request that a filter refused in self-defense (429, 504).
    pub fn observe_termination(&self, labels: &RequestLabels, code: u16) {
        let mut buf = [0; 3];
        let [verb, group, version, resource, subresource, scope, component] = labels.common();
        let values = [verb, group, version, resource, subresource, scope, component, code_label(code, &mut buf)];
        self.request_terminations.with_label_values(&values).inc();
    }

    /// Counts a long-running request for as long as the guard lives.
    pub fn long_running(&self, l: &RequestLabels) -> GaugeGuard {
        let g = self.longrunning.with_label_values(&l.common());
        g.inc();
        GaugeGuard(g)
    }

    /// The counter of watch events sent for objects of this group, version and kind.
    pub fn watch_events(&self, group: &str, version: &str, kind: &str) -> prometheus::IntCounter {
        self.watch_events.with_label_values(&[group, version, kind])
    }

    /// Records one storage call; `key` is what it was about.
    pub fn observe_storage(&self, operation: &str, key: &str, elapsed: Duration) {
        let ty = self.resources.group_resource_of_key(key);
        self.etcd_request_duration.with_label_values(&[operation, &ty]).observe(elapsed.as_secs_f64());
    }

    /// Whether a group/version/resource is served, so that a request for one
    /// that is not (any path a client makes up) adds no series.
    pub fn is_served(&self, group: &str, version: &str, resource: &str) -> bool {
        self.resources.is_served(group, version, resource)
    }

    /// Notes `count` requests of a kind in flight; upstream publishes the
    /// highest count of each second.
    pub fn note_inflight(&self, mutating: bool, count: i64) {
        self.watermarks[usize::from(mutating)].fetch_max(count, Ordering::Relaxed);
        self.watermark_task.call_once(|| {
            let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
            rt.spawn(async {
                let mut tick = tokio::time::interval(INFLIGHT_PERIOD);
                loop {
                    tick.tick().await;
                    let m = global();
                    for (i, kind) in [READ_ONLY_KIND, MUTATING_KIND].into_iter().enumerate() {
                        let highest = m.watermarks[i].swap(0, Ordering::Relaxed);
                        m.inflight.with_label_values(&[kind]).set(highest);
                    }
                }
            });
        });
    }

    /// The /metrics answer.
    pub async fn serve(&self) -> Response {
        self.refresh_object_counts().await;
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return crate::StatusError::internal(e).into_response();
        }
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(body::full(out))
            .unwrap_or_else(|_| http::Response::new(body::empty()))
    }

    /// Upstream counts each resource's objects on a timer; counting when
    /// scraped gives the same numbers, fresher, and costs nothing when nobody
    /// looks.
    async fn refresh_object_counts(&self) {
        let storage = {
            let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            if o.counted.is_some_and(|t| t.elapsed() < REFRESH_FLOOR) {
                return;
            }
            o.counted = Some(Instant::now());
            match &o.storage {
                Some(s) => s.clone(),
                None => return,
            }
        };
        self.resources.refresh();
        let roots = self.resources.roots();
        let mut seen = HashSet::new();
        for (root, name) in roots {
            // Not timed as a storage request: it is this module's own bookkeeping.
            let counted = crate::storage::untimed(storage.count(&root)).await;
            let n = counted.map(|n| i64::try_from(n).unwrap_or(i64::MAX)).unwrap_or(-1);
            self.storage_objects.with_label_values(&[&name]).set(n);
            seen.insert(name);
        }
        // A resource no longer served (a deleted CRD) stops being reported.
        for family in self.storage_objects_family() {
            if !seen.contains(&family) {
                let _ = self.storage_objects.remove_label_values(&[&family]);
            }
        }
    }

    fn storage_objects_family(&self) -> Vec<String> {
        let mut names = Vec::new();
        for mf in self.registry.gather() {
            if mf.name() != "apiserver_storage_objects" {
                continue;
            }
            for m in mf.get_metric() {
                names.extend(m.get_label().iter().filter(|l| l.name() == "resource").map(|l| l.value().to_string()));
            }
        }
        names
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard(IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The labels a request is reported under, as upstream's MonitorRequest
/// computes them. Made for every request, so nothing is copied: the group,
/// version, resource and subresource are read from its RequestInfo.
#[derive(Debug, Clone)]
pub struct RequestLabels {
    pub verb: &'static str,
    /// Empty (no allocation) unless the request asks for a dry run.
    pub dry_run: String,
    pub scope: &'static str,
    info: Arc<RequestInfo>,
}

impl RequestLabels {
    pub fn of(req: &Request, info: &Arc<RequestInfo>) -> RequestLabels {
        let scope = clean_scope(info);
        RequestLabels {
            verb: reported_verb(req, info, scope),
            dry_run: clean_dry_run(req.uri().query()),
            scope,
            info: info.clone(),
        }
    }

    /// `part` of a resource request's info; empty for other requests, whose
    /// paths are whatever a client sends (upstream puts a non-resource path
    /// in some families; this keeps them out).
    fn resource_part<'a>(&'a self, part: &'a str) -> &'a str {
        if self.info.is_resource_request {
            part
        } else {
            ""
        }
    }

    pub fn group(&self) -> &str {
        self.resource_part(&self.info.api_group)
    }

    pub fn version(&self) -> &str {
        self.resource_part(&self.info.api_version)
    }

    pub fn resource(&self) -> &str {
        self.resource_part(&self.info.resource)
    }

    pub fn subresource(&self) -> &str {
        self.resource_part(&self.info.subresource)
    }

    /// verb, group, version, resource, subresource, scope, component: the
    /// labels of the families without dryRun.
    fn common(&self) -> [&str; 7] {
        [self.verb, self.group(), self.version(), self.resource(), self.subresource(), self.scope, APISERVER_COMPONENT]
    }

    /// The common labels with dryRun second, then the code: those of
    /// apiserver_request_total.
    fn with_dry_run<'a>(&'a self, code: &'a str) -> [&'a str; 9] {
        let [verb, group, version, resource, subresource, scope, component] = self.common();
        [verb, &self.dry_run, group, version, resource, subresource, scope, component, code]
    }
}

thread_local! {
    /// The request series of [`global`] this thread recorded last (there is
    /// no other Metrics). A client's requests mostly repeat one kind, and
    /// finding a series anew costs a hash of every label, a lock and a
    /// reference count that all threads share.
    static LAST_REQUEST_SERIES: std::cell::RefCell<Option<RequestSeries>> = const { std::cell::RefCell::new(None) };
}

/// apiserver_request_duration_seconds and apiserver_request_total for one
/// set of labels (in [`RequestLabels::with_dry_run`]'s order); the strings
/// are reused when another set replaces it.
struct RequestSeries {
    labels: [String; 9],
    duration: prometheus::Histogram,
    total: prometheus::IntCounter,
}

/// A status code as a label, without allocating (codes have three digits).
fn code_label(code: u16, buf: &mut [u8; 3]) -> &str {
    let code = code.clamp(100, 999);
    *buf = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
    std::str::from_utf8(buf).unwrap_or("000")
}

/// Upstream's CleanScope.
fn clean_scope(info: &RequestInfo) -> &'static str {
    if !info.name.is_empty() || info.verb == "create" {
        "resource"
    } else if !info.namespace.is_empty() {
        "namespace"
    } else if info.is_resource_request {
        "cluster"
    } else {
        ""
    }
}

/// Upstream's CanonicalVerb and CleanVerb: the HTTP method upper-cased, GET of
/// a collection as LIST, watches as WATCH, apply patches as APPLY, connect
/// subresources as CONNECT, anything unknown as "other".
fn reported_verb(req: &Request, info: &RequestInfo, scope: &str) -> &'static str {
    let method = |name: &str| req.method().as_str().eq_ignore_ascii_case(name);
    let collection = scope != "resource" && !scope.is_empty();
    if info.is_resource_request && CONNECT_SUBRESOURCES.contains(&info.subresource.as_str()) {
        "CONNECT"
    } else if info.verb == "watch" {
        "WATCH"
    } else if method("GET") || method("HEAD") {
        if collection {
            "LIST"
        } else {
            "GET"
        }
    } else if method("PATCH") && is_apply(req) {
        "APPLY"
    } else {
        VALID_VERBS.iter().find(|v| method(v)).copied().unwrap_or("other")
    }
}

fn is_apply(req: &Request) -> bool {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    content_type.split(';').next().map(str::trim) == Some("application/apply-patch+yaml")
}

/// Upstream's cleanDryRun: every dryRun value, sorted and deduplicated, or
/// "invalid" if one is not "All".
fn clean_dry_run(query: Option<&str>) -> String {
    let mut values = query_values(query, "dryRun").peekable();
    // Most requests are not dry runs: no set to build.
    if values.peek().is_none() {
        return String::new();
    }
    let values: std::collections::BTreeSet<String> = values.collect();
    if values.iter().any(|v| v != "All") {
        return "invalid".into();
    }
    values.into_iter().collect::<Vec<_>>().join(",")
}

/// The served resources, as storage key roots and group/version/resource
/// triples, rebuilt from the chain's discovery when something is not found
/// (a CRD just created), at most once per [`REFRESH_FLOOR`].
#[derive(Default)]
struct ResourceIndex {
    source: RwLock<Option<DynHandler>>,
    state: RwLock<IndexState>,
}

#[derive(Default)]
struct IndexState {
    built: Option<Instant>,
    /// key_root with its trailing '/' -> upstream's resource name ("deployments.apps").
    roots: BTreeMap<String, String>,
    served: HashSet<(String, String, String)>,
}

impl ResourceIndex {
    fn invalidate(&self) {
        self.state.write().unwrap_or_else(|e| e.into_inner()).built = None;
    }

    /// Rebuilds the index unless it was rebuilt within the floor.
    fn refresh(&self) {
        let source = self.source.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(chain) = source else { return };
        {
            let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
            if s.built.is_some_and(|t| t.elapsed() < REFRESH_FLOOR) {
                return;
            }
            s.built = Some(Instant::now());
        }
        let mut roots = BTreeMap::new();
        let mut served = HashSet::new();
        for g in chain.api_groups() {
            for v in &g.versions {
                for r in &v.resources {
                    let name = if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) };
                    if !r.key_root.is_empty() {
                        roots.insert(format!("{}/", r.key_root), name);
                    }
                    served.insert((g.name.clone(), v.version.clone(), r.plural.clone()));
                }
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.roots = roots;
        s.served = served;
    }

    fn roots(&self) -> Vec<(String, String)> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.roots.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn lookup_key(&self, key: &str) -> Option<String> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        // The longest matching root: services live under /registry/services/specs/.
        s.roots
            .iter()
            .filter(|(root, _)| key.starts_with(root.as_str()))
            .max_by_key(|(root, _)| root.len())
            .map(|(_, name)| name.clone())
    }

    fn group_resource_of_key(&self, key: &str) -> String {
        if let Some(name) = self.lookup_key(key) {
            return name;
        }
        self.refresh();
        if let Some(name) = self.lookup_key(key) {
            return name;
        }
        // Calls made before the chain was known, and keys of no served
        // resource (allocator state): named by the key's layout, where a group
        // that has one comes first ("/registry/<group>/<resource>/").
        let mut segments = key.trim_start_matches('/').split('/').skip(1);
        match (segments.next(), segments.next()) {
            (Some(group), Some(resource)) if group.contains('.') && !resource.is_empty() => {
                format!("{resource}.{group}")
            }
            (Some(first), _) => first.to_string(),
            _ => String::new(),
        }
    }

    fn is_served(&self, group: &str, version: &str, resource: &str) -> bool {
        let find = |s: &IndexState| s.served.contains(&(group.to_string(), version.to_string(), resource.to_string()));
        if find(&self.state.read().unwrap_or_else(|e| e.into_inner())) {
            return true;
        }
        self.refresh();
        find(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: &str, uri: &str, content_type: Option<&str>) -> RequestLabels {
        let mut b = http::Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        let req = b.body(bytes::Bytes::new()).expect("a valid request");
        let info = crate::request_info::parse(req.method(), req.uri().path(), req.uri().query());
        RequestLabels::of(&req, &Arc::new(info))
    }

    #[test]
    fn verbs_as_upstream_reports_them() {
        let l = labels("GET", "/api/v1/namespaces/default/configmaps", None);
        assert_eq!((l.verb, l.scope), ("LIST", "namespace"));
        let l = labels("GET", "/api/v1/namespaces/default/configmaps/a", None);
        assert_eq!((l.verb, l.scope), ("GET", "resource"));
        let l = labels("GET", "/api/v1/configmaps?watch=true", None);
        assert_eq!((l.verb, l.scope), ("WATCH", "cluster"));
        let l = labels("GET", "/api/v1/watch/namespaces/default/configmaps", None);
        assert_eq!(l.verb, "WATCH");
        let l = labels("POST", "/apis/apps/v1/namespaces/default/deployments", None);
        assert_eq!((l.verb, l.scope, l.group()), ("POST", "resource", "apps"));
        let l = labels("PATCH", "/api/v1/namespaces/default/configmaps/a", Some("application/apply-patch+yaml"));
        assert_eq!(l.verb, "APPLY");
        let l = labels("PATCH", "/api/v1/namespaces/default/configmaps/a", Some("application/merge-patch+json"));
        assert_eq!(l.verb, "PATCH");
        let l = labels("DELETE", "/api/v1/namespaces/default/configmaps", None);
        assert_eq!((l.verb, l.scope), ("DELETE", "namespace"));
        let l = labels("GET", "/api/v1/namespaces/default/pods/p/log", None);
        assert_eq!((l.verb, l.subresource()), ("CONNECT", "log"));
        let l = labels("OPTIONS", "/api/v1/namespaces/default/pods/p", None);
        assert_eq!(l.verb, "other");
    }

    #[test]
    fn alternating_requests_are_each_counted_in_their_own_series() {
        // A resource no other test records, so the counts are this test's.
        let get = labels("GET", "/apis/memo.example.com/v1/namespaces/ns/widgets/a", None);
        let list = labels("GET", "/apis/memo.example.com/v1/namespaces/ns/widgets", None);
        let dry = labels("POST", "/apis/memo.example.com/v1/namespaces/ns/widgets?dryRun=All", None);
        let m = global();
        for (l, code) in [(&get, 200), (&list, 200), (&get, 200), (&get, 404), (&dry, 201), (&get, 200)] {
            m.observe_request(l, code, Duration::from_millis(1));
        }
        let total = |l: &RequestLabels, code: &str| m.request_total.with_label_values(&l.with_dry_run(code)).get();
        assert_eq!((total(&get, "200"), total(&get, "404"), total(&list, "200"), total(&dry, "201")), (3, 1, 1, 1));
        let timed = |l: &RequestLabels| {
            let values = l.with_dry_run("");
            m.request_duration.with_label_values(&values[..values.len() - 1]).get_sample_count()
        };
        assert_eq!((timed(&get), timed(&list), timed(&dry)), (4, 1, 1), "404s are timed with the 200s");
    }

    #[test]
    fn dry_run_values() {
        assert_eq!(clean_dry_run(None), "");
        assert_eq!(clean_dry_run(Some("dryRun=All")), "All");
        assert_eq!(clean_dry_run(Some("dryRun=All&dryRun=All&x=1")), "All");
        assert_eq!(clean_dry_run(Some("dryRun=Nope")), "invalid");
    }

    #[test]
    fn key_roots_resolve_to_the_longest_match() {
        let idx = ResourceIndex::default();
        {
            let mut s = idx.state.write().unwrap_or_else(|e| e.into_inner());
            s.built = Some(Instant::now());
            s.roots.insert("/registry/services/specs/".into(), "services".into());
            s.roots.insert("/registry/deployments/".into(), "deployments.apps".into());
            s.roots.insert("/registry/example.com/widgets/".into(), "widgets.example.com".into());
        }
        assert_eq!(idx.group_resource_of_key("/registry/services/specs/default/kubernetes"), "services");
        assert_eq!(idx.group_resource_of_key("/registry/deployments/ns/web"), "deployments.apps");
        assert_eq!(idx.group_resource_of_key("/registry/example.com/widgets/ns/w"), "widgets.example.com");
        assert_eq!(idx.group_resource_of_key("/registry/ranges/serviceips"), "ranges");
        assert_eq!(idx.group_resource_of_key("/registry/other.io/things/"), "things.other.io");
    }
}
