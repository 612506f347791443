//! /metrics: the Prometheus text a scrape gets after kubectl traffic carries
//! upstream's families with upstream's label sets and values that follow the
//! traffic (requests, watch events, stored objects, storage latency, process).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{Cred, Server};

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape parsed as Prometheus' text format 0.0.4: every sample, and the
/// HELP and TYPE of every family.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
}

/// Parses `name{a="x",b="y"} value`, with the format's escapes in label values.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut consumed = None;
        loop {
            // label name
            let mut key = String::new();
            while let Some(&(i, c)) = chars.peek() {
                if c == '}' && key.is_empty() {
                    consumed = Some(i + 1);
                    break;
                }
                if c == '=' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if consumed.is_some() {
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('=') || chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("bad label in {line:?}"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated label value in {line:?}")),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                other => return Err(format!("unexpected {other:?} in {line:?}")),
            }
        }
        rest = &r[consumed.ok_or("unterminated labels")?..];
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("bad value {v:?} in {line:?}: {e}"))?,
    };
    Ok(Sample { name, labels, value })
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(s.helps.insert(name.into(), help.into()).is_none(), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a type: {line}"));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty), "unknown type in {line:?}");
            assert!(s.types.insert(name.into(), ty.into()).is_none(), "TYPE twice for {name}");
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("unparseable sample: {e}"));
            // Every sample belongs to a family announced before it.
            let family = family_of(&sample.name, &s.types)
                .unwrap_or_else(|| panic!("sample {} has no # TYPE before it", sample.name));
            assert!(s.helps.contains_key(&family), "family {family} has no # HELP");
            s.samples.push(sample);
        }
    }
    s
}

fn family_of(name: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram" || t == "summary") {
                return Some(base.to_string());
            }
        }
    }
    None
}

impl Scrape {
    /// Samples of `name` whose labels include all of `want`.
    fn matching<'a>(&'a self, name: &'a str, want: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the matching samples (0 when there are none).
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(name, want).map(|s| s.value).sum()
    }

    #[track_caller]
    fn one(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, want).collect();
        assert_eq!(found.len(), 1, "expected one {name} with {want:?}, found {found:?}");
        found[0].value
    }

    #[track_caller]
    fn label_names(&self, name: &str) -> BTreeSet<String> {
        let sets: BTreeSet<BTreeSet<String>> =
            self.matching(name, &[]).map(|s| s.labels.keys().cloned().collect()).collect();
        assert_eq!(sets.len(), 1, "{name}: expected one label set, got {sets:?}");
        sets.into_iter().next().unwrap_or_default()
    }
}

fn scrape(s: &Server) -> Scrape {
    parse(&s.kubectl(&["get", "--raw", "/metrics"]))
}

fn labels(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Scrapes until `ok` holds (object counts are refreshed at most once a second).
#[track_caller]
fn scrape_until(s: &Server, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = scrape(s);
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} never held");
        std::thread::sleep(Duration::from_millis(300));
    }
}

const CM: &[(&str, &str)] = &[("group", ""), ("version", "v1"), ("resource", "configmaps"), ("component", "apiserver")];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn metrics_follow_kubectl_traffic() {
    let mut s = Server::start();
    s.kubectl(&["create", "namespace", "metrics"]);
    let before = scrape(&s);

    for name in ["m1", "m2", "m3"] {
        s.kubectl(&["create", "configmap", name, "-n", "metrics", "--from-literal=k=v"]);
    }
    s.kubectl(&["create", "configmap", "dry", "-n", "metrics", "--dry-run=server"]);
    s.kubectl(&["get", "configmap", "m1", "-n", "metrics"]);
    s.kubectl(&["get", "configmaps", "-n", "metrics"]);
    s.kubectl(&["patch", "configmap", "m1", "-n", "metrics", "--type=merge", "-p", r#"{"data":{"k":"w"}}"#]);

    // A watch held open is a long-running request while it lasts.
    let watch = std::thread::scope(|scope| {
        let w = scope.spawn(|| {
            s.curl(
                "GET",
                "/api/v1/namespaces/metrics/configmaps?watch=true&resourceVersion=0&timeoutSeconds=3",
                Cred::Admin,
                &[],
                None,
            )
        });
        let during = scrape_until(&s, "a watch counted as long-running", |m| {
            m.sum("apiserver_longrunning_requests", &with(CM, &[("verb", "WATCH")])) == 1.0
        });
        assert_eq!(
            during.label_names("apiserver_longrunning_requests"),
            labels(&["verb", "group", "version", "resource", "subresource", "scope", "component"])
        );
        assert_eq!(
            during.one("apiserver_longrunning_requests", &with(CM, &[("verb", "WATCH"), ("scope", "namespace")])),
            1.0
        );
        w.join().expect("the watch thread")
    });
    assert_eq!(watch.status, 200, "{}", watch.text());
    let events = watch.text().lines().filter(|l| !l.trim().is_empty()).count();
    // The three configmaps and the published kube-root-ca.crt (the dry run
    // stored nothing).
    assert_eq!(events, 4, "{}", watch.text());

    let all_configmaps = s.kubectl_json(&["get", "configmaps", "-A"])["items"].as_array().map(Vec::len).unwrap_or(0);
    let after = scrape_until(&s, "the watch recorded and configmaps counted", |m| {
        m.sum("apiserver_request_total", &with(CM, &[("verb", "WATCH")]))
            > before.sum("apiserver_request_total", &with(CM, &[("verb", "WATCH")]))
            && m.sum("apiserver_storage_objects", &[("resource", "configmaps")]) == all_configmaps as f64
    });
    let delta = |name: &str, want: &[(&str, &str)]| after.sum(name, want) - before.sum(name, want);

    // apiserver_request_total: upstream's labels, verbs and codes.
    assert_eq!(
        after.label_names("apiserver_request_total"),
        labels(&["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"])
    );
    assert_eq!(after.types["apiserver_request_total"], "counter");
    let post = with(CM, &[("verb", "POST"), ("scope", "resource"), ("code", "201"), ("subresource", "")]);
    assert_eq!(delta("apiserver_request_total", &with(&post, &[("dry_run", "")])), 3.0);
    assert_eq!(delta("apiserver_request_total", &with(&post, &[("dry_run", "All")])), 1.0);
    let get = with(CM, &[("verb", "GET"), ("scope", "resource"), ("code", "200")]);
    assert!(delta("apiserver_request_total", &get) >= 1.0);
    let list = with(CM, &[("verb", "LIST"), ("scope", "namespace"), ("code", "200")]);
    assert!(delta("apiserver_request_total", &list) >= 1.0);
    let patch = with(CM, &[("verb", "PATCH"), ("scope", "resource"), ("code", "200")]);
    assert_eq!(delta("apiserver_request_total", &patch), 1.0);
    let watched = with(CM, &[("verb", "WATCH"), ("scope", "namespace"), ("code", "200")]);
    assert_eq!(delta("apiserver_request_total", &watched), 1.0);
    // The watch has ended: no longer counted as running.
    assert_eq!(after.sum("apiserver_longrunning_requests", &with(CM, &[("verb", "WATCH")])), 0.0);
    let not_found = with(CM, &[("verb", "GET"), ("code", "404")]);
    s.kubectl_err(&["get", "configmap", "nope", "-n", "metrics"], None, &["NotFound"]);
    assert_eq!(
        scrape(&s).sum("apiserver_request_total", &not_found) - after.sum("apiserver_request_total", &not_found),
        1.0
    );
    // A resource nobody serves adds no series.
    s.request("GET", "/api/v1/madeupthings", None).assert_status(404, "NotFound");
    assert_eq!(scrape(&s).matching("apiserver_request_total", &[("resource", "madeupthings")]).count(), 0);

    // apiserver_request_duration_seconds: upstream's buckets and labels.
    assert_eq!(after.types["apiserver_request_duration_seconds"], "histogram");
    let timed = with(CM, &[("verb", "POST"), ("dry_run", "")]);
    assert_eq!(delta("apiserver_request_duration_seconds_count", &timed), 3.0);
    let les: Vec<String> =
        after.matching("apiserver_request_duration_seconds_bucket", &timed).map(|s| s.labels["le"].clone()).collect();
    let upstream = [
        "0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1", "1.25", "1.5", "2", "3", "4", "5", "6", "8",
        "10", "15", "20", "30", "45", "60", "+Inf",
    ];
    assert_eq!(les, upstream);
    let mut labelled =
        labels(&["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"]);
    assert_eq!(after.label_names("apiserver_request_duration_seconds_count"), labelled);
    labelled.insert("le".into());
    assert_eq!(after.label_names("apiserver_request_duration_seconds_bucket"), labelled);
    assert!(after.one("apiserver_request_duration_seconds_sum", &timed) > 0.0);

    // apiserver_watch_events_total{group,version,kind} (1.33's labels).
    assert_eq!(after.label_names("apiserver_watch_events_total"), labels(&["group", "version", "kind"]));
    let cm_kind = [("group", ""), ("version", "v1"), ("kind", "ConfigMap")];
    assert_eq!(delta("apiserver_watch_events_total", &cm_kind), events as f64);

    // apiserver_storage_objects{resource}: what storage holds.
    assert_eq!(after.types["apiserver_storage_objects"], "gauge");
    assert_eq!(after.one("apiserver_storage_objects", &[("resource", "configmaps")]), all_configmaps as f64);
    assert!(after.one("apiserver_storage_objects", &[("resource", "namespaces")]) >= 5.0);
    assert_eq!(after.one("apiserver_storage_objects", &[("resource", "deployments.apps")]), 0.0);
    s.kubectl(&["delete", "configmap", "m3", "-n", "metrics"]);
    scrape_until(&s, "a deletion counted", |m| {
        m.sum("apiserver_storage_objects", &[("resource", "configmaps")]) == (all_configmaps - 1) as f64
    });

    // etcd_request_duration_seconds{operation,type}, whichever backend.
    assert_eq!(after.types["etcd_request_duration_seconds"], "histogram");
    assert_eq!(after.label_names("etcd_request_duration_seconds_count"), labels(&["operation", "type"]));
    let creates = [("operation", "create"), ("type", "configmaps")];
    assert!(delta("etcd_request_duration_seconds_count", &creates) >= 3.0);
    assert!(
        after.one("etcd_request_duration_seconds_count", &[("operation", "create"), ("type", "namespaces")]) >= 1.0
    );

    // apiserver_current_inflight_requests{request_kind}.
    assert_eq!(after.types["apiserver_current_inflight_requests"], "gauge");
    for kind in ["readOnly", "mutating"] {
        let v = after.one("apiserver_current_inflight_requests", &[("request_kind", kind)]);
        assert!((0.0..=400.0).contains(&v), "{kind}: {v}");
    }

    // process_* from /proc.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    let started = after.one("process_start_time_seconds", &[]);
    assert!(started <= now + 1.0 && started > now - 600.0, "start time {started}, now {now}");
    let rss = after.one("process_resident_memory_bytes", &[]);
    assert!(rss > 1e6, "resident memory {rss}");
    assert!(after.one("process_virtual_memory_bytes", &[]) >= rss);
    assert!(after.one("process_open_fds", &[]) >= 3.0);
    assert!(after.one("process_cpu_seconds_total", &[]) >= 0.0);
    assert_eq!(after.types["process_cpu_seconds_total"], "counter");
    s.assert_healthy();
}

#[test]
fn metrics_need_an_authorized_caller() {
    let mut s = Server::start();
    // Anonymous callers hold no role naming /metrics.
    let r = s.curl("GET", "/metrics", Cred::None, &[], None);
    r.assert_status(403, "Forbidden");
    assert_eq!(r.json()["message"], "forbidden: User \"system:anonymous\" cannot get path \"/metrics\"");
    // A family appears with its first sample.
    s.kubectl(&["get", "namespaces"]);
    let r = s.curl("GET", "/metrics", Cred::Admin, &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), ["text/plain; version=0.0.4; charset=utf-8"]);
    let m = parse(&r.text());
    assert!(m.types.contains_key("apiserver_request_total"), "{:?}", m.types.keys());
    s.assert_healthy();
}

#[test]
fn the_parser_reads_escapes_and_refuses_garbage() {
    let s = parse_sample(r#"x_total{a="q\"uote",b="back\\slash",c="new\nline"} 2"#).expect("a valid sample");
    assert_eq!(
        (s.labels["a"].as_str(), s.labels["b"].as_str(), s.labels["c"].as_str()),
        ("q\"uote", "back\\slash", "new\nline")
    );
    assert_eq!(s.value, 2.0);
    assert_eq!(parse_sample("y 1e3").expect("a bare sample").value, 1000.0);
    assert!(parse_sample(r#"x{a="unterminated} 1"#).is_err());
    assert!(parse_sample("x{a=1} 1").is_err());
    assert!(parse_sample("x one").is_err());
}

e2e::on_etcd!(metrics_follow_kubectl_traffic);
