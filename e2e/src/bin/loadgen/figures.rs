//! The figures of a run: each measurement set against its baseline from the
//! same run and judged against its target. The targets are issue 13's table
//! (watch fan-out, writes during it, LIST at resourceVersion=0, GET against
//! the HTTP stack, consistent GET against GET at resourceVersion=0, create
//! against the raw store, memory), issue 12's admission figure and issue
//! 11's RBAC figure, per backend.

use crate::admission;
use crate::driver::{round3, Summary};
use crate::rbac;
use crate::report::{Figure, Measurement};

pub const T_FANOUT: &str = "watch fan-out (1000 watchers, 100 writes/s): delivery p99 < 100 ms, none lost";
pub const T_FANOUT_WRITES: &str = "write latency during that fan-out: p99 < 100 ms";
pub const T_LIST: &str = "LIST 10k objects, resourceVersion=0: p50 < 50 ms";
pub const T_GET: &str = "GET resourceVersion=0 ≥ 0.80 × the bare hyper+rustls stack";
pub const T_CONSISTENT: &str = "consistent GET ≥ 0.80 × GET resourceVersion=0";
pub const T_CREATE: &str = "create ≥ 0.50 × the raw store of the same backend";
pub const T_MEMORY: &str = "RSS < 2 × stored JSON (100k objects of 1 KiB)";
pub const T_ADMISSION: &str = "creates with 20 webhooks + 20 policies not matching ≥ 0.95 × with none";
pub const T_POLICY: &str = "one matching validating policy costs < 10% (≥ 0.90 × not matching)";
pub const T_RBAC: &str = "GET resourceVersion=0 as an RBAC-authorized user (1000 bindings) ≥ 0.90 × as system:masters";

/// How far a figure is from its target.
fn judge(value: f64, target: f64, at_least: bool, unit: &str) -> (bool, String) {
    let met = if at_least { value >= target } else { value < target };
    if met {
        let shown = if at_least { format!("{value:.2}{unit}") } else { format!("{value:.1}{unit}") };
        return (true, format!("met: {shown}"));
    }
    let how = if at_least {
        let short = percent((1.0 - value / target) * 100.0);
        format!("missed: {}, short by {short}", apart(value, target, 2, unit))
    } else {
        format!("missed: {}, {} over", apart(value, target, 1, unit), percent((value / target - 1.0) * 100.0))
    };
    (false, how)
}

/// A missed figure with as many decimals as it takes not to read as its
/// target (0.4993 is "0.499", not "0.50").
fn apart(value: f64, target: f64, decimals: usize, unit: &str) -> String {
    let mut d = decimals;
    while d < 4 && format!("{value:.d$}") == format!("{target:.d$}") {
        d += 1;
    }
    format!("{value:.d$}{unit}")
}

/// A shortfall or an excess in percent, with a decimal when it is under one.
fn percent(p: f64) -> String {
    if p < 0.1 {
        "under 0.1%".to_string()
    } else if p < 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

pub fn raw_store(backend: Option<&str>) -> Option<&'static str> {
    match backend {
        Some("embedded") => Some("embedded store alone"),
        Some("etcd") => Some("raw etcd"),
        _ => None,
    }
}

/// What a request measurement is set against, and the throughput ratio it
/// must reach (if any).
fn baseline_of<'a>(ms: &'a [Measurement], m: &Measurement) -> (Option<&'a Measurement>, Option<(f64, &'static str)>) {
    let b = m.backend.as_deref();
    let v = m.variant.as_str();
    let same = |variant: &str| {
        ms.iter().find(|x| x.scenario == m.scenario && x.backend.as_deref() == b && x.variant == variant)
    };
    let same_prefix = |prefix: &str| {
        ms.iter().find(|x| x.scenario == m.scenario && x.backend.as_deref() == b && x.variant.starts_with(prefix))
    };
    let raw = |prefix: String| {
        ms.iter().find(|x| x.scenario == m.scenario && x.backend.is_none() && x.variant.starts_with(&prefix))
    };
    if b.is_none() {
        return (None, None);
    }
    match m.scenario.as_str() {
        // Protobuf reads are set against the same read in JSON.
        "get" | "list" if v.starts_with("server, protobuf, ") => {
            let read = v.trim_start_matches("server, protobuf, ").split(" (").next().unwrap_or_default();
            (same_prefix(&format!("server, {read}")), None)
        }
        "get" if v == "server, consistent" => (same("server, resourceVersion=0"), Some((0.8, T_CONSISTENT))),
        "get" if v == "server, resourceVersion=0" => (same_prefix(crate::HTTP_STACK), Some((0.8, T_GET))),
        "list" if v.contains("paginated") => (raw_store(b).and_then(|r| raw(format!("{r}, paginated"))), None),
        "list" => (raw_store(b).and_then(|r| raw(format!("{r} ("))), None),
        "create" if v == "server" => {
            (raw_store(b).and_then(|r| same(&format!("{r}{}", crate::ALTERNATING))), Some((0.5, T_CREATE)))
        }
        "create" => (None, None),
        "admission" if v == admission::NOT_MATCHING => (same(admission::NONE), Some((0.95, T_ADMISSION))),
        "admission" if v == admission::ONE_MATCHING => (same(admission::NOT_MATCHING), Some((0.9, T_POLICY))),
        "rbac" if v.starts_with(rbac::AS_READER) => (same(rbac::AS_ADMIN), Some((0.9, T_RBAC))),
        "admission" | "rbac" => (None, None),
        _ => (raw_store(b).and_then(|r| raw(r.to_string())), None),
    }
}

fn latency_text(s: &Summary) -> String {
    let l = s.latency_ms;
    format!(
        "{:.0} ops/s; p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms; {} ops, {} errors",
        s.throughput, l.p50, l.p90, l.p99, l.max, s.ops, s.errors
    )
}

pub fn figures(ms: &[Measurement]) -> Vec<Figure> {
    let mut out = Vec::new();
    for m in ms {
        let b = m.backend.as_deref();
        let mut f = Figure {
            scenario: m.scenario.clone(),
            figure: m.label(),
            backend: m.backend.clone(),
            value: String::new(),
            baseline: String::new(),
            ratio: None,
            target: String::new(),
            result: String::new(),
            met: None,
        };
        if let Some(s) = &m.summary {
            f.value = latency_text(s);
            if let Some(ex) = m.extra.get("webhook_calls") {
                f.value.push_str(&format!("; {ex} webhook calls"));
            }
            let (base, target) = baseline_of(ms, m);
            if let Some(bs) = base.and_then(|bm| bm.summary.as_ref().map(|bs| (bm, bs))) {
                let (bm, bs) = bs;
                f.baseline = format!("{}: {:.0} ops/s, p50 {:.2} ms", bm.variant, bs.throughput, bs.latency_ms.p50);
                if bs.throughput > 0.0 {
                    f.ratio = Some(round3(s.throughput / bs.throughput));
                }
            }
            let list_target = m.scenario == "list" && b.is_some() && m.variant.starts_with("server, resourceVersion=0");
            if let Some((t, text)) = target {
                f.target = text.into();
                match f.ratio {
                    Some(r) => {
                        let (met, how) = judge(r, t, true, "×");
                        f.met = Some(met);
                        f.result = how;
                    }
                    None => f.result = "no baseline measured".into(),
                }
            } else if list_target {
                f.target = T_LIST.into();
                let (met, how) = judge(s.latency_ms.p50, 50.0, false, " ms");
                f.met = Some(met);
                f.result = how;
            }
            out.push(f);
            continue;
        }
        let x = &m.extra;
        match m.scenario.as_str() {
            "startup" => {
                let ms_ = x["readyz_ms"].as_f64().unwrap_or(0.0);
                let objects = x["objects"].as_u64().unwrap_or(0);
                f.value = format!("{ms_:.1} ms to /readyz 200");
                let (t, text) = if objects == 0 {
                    (100.0, "< 100 ms (empty embedded store)")
                } else {
                    (1000.0, "< 1 s (100k objects)")
                };
                if objects > 0 || b == Some("embedded") {
                    let (met, how) = judge(ms_, t, false, " ms");
                    f.target = text.into();
                    f.met = Some(met);
                    f.result = how;
                }
                out.push(f);
            }
            "memory" => {
                let ratio = x["ratio"].as_f64().unwrap_or(0.0);
                let mib = |k: &str| x[k].as_f64().unwrap_or(0.0) / (1u64 << 20) as f64;
                let idle = match x["idle_cpu_percent"].as_f64() {
                    Some(p) => format!(
                        "; idle after restart, {:.2}% of a core over {:.0} s",
                        p,
                        x["idle_seconds"].as_f64().unwrap_or(0.0)
                    ),
                    None => String::new(),
                };
                f.value = format!(
                    "RSS {:.1} MiB (empty server {:.1} MiB, so {:.2}× the JSON over an empty server; after restart {:.1} MiB{idle})",
                    mib("rss_bytes"),
                    mib("rss_empty_bytes"),
                    x["growth_ratio"].as_f64().unwrap_or(0.0),
                    mib("rss_after_restart_bytes")
                );
                f.baseline = format!("{:.1} MiB of JSON stored", mib("json_bytes"));
                f.ratio = Some(ratio);
                f.target = T_MEMORY.into();
                let (met, how) = judge(ratio, 2.0, false, "×");
                f.met = Some(met);
                f.result = how;
                out.push(f);
            }
            "watch-fanout" => out.extend(fanout(ms, m, f)),
            _ => {}
        }
    }
    out
}

/// A watch-fanout measurement's figures: delivery (against the bare HTTP
/// stack streaming the same bytes) and, for the server's JSON watchers, the
/// two targets: delivery and the writes' latency meanwhile.
fn fanout(ms: &[Measurement], m: &Measurement, mut f: Figure) -> Vec<Figure> {
    let x = &m.extra;
    let d = &x["delivery_ms"];
    let p99 = d["p99"].as_f64().unwrap_or(0.0);
    let n = |k: &str| x[k].as_u64().unwrap_or(0);
    let bad = n("lost") + n("reordered") + n("duplicates");
    let write = &x["write"]["latency_ms"];
    let write_p99 = write["p99"].as_f64().unwrap_or(0.0);
    f.value = format!(
        "delivery p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms; {} events/s delivered; {} writes \
         (p50 {:.1} ms, p99 {:.1} ms, {} errors); lost {}, reordered {}, duplicated {}, undelivered at the end {}, \
         broken watches {}",
        d["p50"].as_f64().unwrap_or(0.0),
        d["p90"].as_f64().unwrap_or(0.0),
        p99,
        d["max"].as_f64().unwrap_or(0.0),
        x["events_per_sec"].as_f64().unwrap_or(0.0).round(),
        n("writes"),
        write["p50"].as_f64().unwrap_or(0.0),
        write_p99,
        n("write_errors"),
        n("lost"),
        n("reordered"),
        n("duplicates"),
        n("undelivered"),
        n("broken_watches"),
    );
    if m.backend.is_none() {
        return vec![f];
    }
    let stack = ms.iter().find(|s| s.scenario == "watch-fanout" && s.backend.is_none());
    if let Some(stack_p99) = stack.and_then(|s| s.extra["delivery_ms"]["p99"].as_f64()) {
        f.baseline = format!(
            "bare HTTP stack streaming the same bytes: delivery p99 {stack_p99:.2} ms (the server's is {:.1}× that)",
            p99 / stack_p99.max(1e-3)
        );
    }
    if m.variant.contains("protobuf") {
        return vec![f];
    }
    let mut writes = f.clone();
    f.target = T_FANOUT.into();
    let (met, how) = judge(p99, 100.0, false, " ms");
    let late = n("undelivered");
    f.met = Some(met && bad == 0 && late == 0);
    f.result = if bad > 0 {
        format!("MISSED: {bad} events lost, reordered or duplicated; {how}")
    } else if late > 0 {
        format!("missed: {late} events still undelivered 10 s after the last write (none lost in between); {how}")
    } else {
        how
    };
    writes.figure = format!("writes during {}", m.label());
    writes.value = format!(
        "{} writes; p50 {:.2} / p90 {:.2} / p99 {write_p99:.2} / max {:.2} ms; {} errors",
        n("writes"),
        write["p50"].as_f64().unwrap_or(0.0),
        write["p90"].as_f64().unwrap_or(0.0),
        write["max"].as_f64().unwrap_or(0.0),
        n("write_errors")
    );
    writes.baseline = String::new();
    writes.target = T_FANOUT_WRITES.into();
    let (met, how) = judge(write_p99, 100.0, false, " ms");
    let errors = n("write_errors");
    writes.met = Some(met && errors == 0);
    writes.result = if errors > 0 { format!("missed: {errors} writes failed; {how}") } else { how };
    vec![f, writes]
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn a_near_miss_does_not_read_as_its_target() {
        assert_eq!(judge(0.4993, 0.5, true, "×"), (false, "missed: 0.499×, short by 0.1%".to_string()));
        assert_eq!(judge(0.77, 0.8, true, "×"), (false, "missed: 0.77×, short by 4%".to_string()));
        assert_eq!(judge(0.5, 0.5, true, "×"), (true, "met: 0.50×".to_string()));
        assert_eq!(judge(50.02, 50.0, false, " ms"), (false, "missed: 50.02 ms, under 0.1% over".to_string()));
        assert_eq!(judge(75.0, 50.0, false, " ms"), (false, "missed: 75.0 ms, 50% over".to_string()));
    }
}
