//! The results: every measurement and figure as JSON (`latest.json`), one
//! Markdown table per scenario with ratios against the same run's baselines
//! and the targets (`latest.md`), and a latency chart per scenario drawn as
//! SVG text (`<scenario>.svg`).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::driver::Summary;

/// One variant of one scenario as measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub scenario: String,
    /// What ran: "server", "server, resourceVersion=0", "raw etcd", ...
    pub variant: String,
    /// The server's storage backend; None for a baseline.
    pub backend: Option<String>,
    /// Request scenarios: counts, throughput, latency percentiles.
    pub summary: Option<Summary>,
    /// Scenario-specific figures (startup times, memory, watch delivery).
    #[serde(default)]
    pub extra: serde_json::Value,
}

impl Measurement {
    pub fn label(&self) -> String {
        match &self.backend {
            Some(b) => format!("{} [{b}]", self.variant),
            None => self.variant.clone(),
        }
    }
}

/// One row of a scenario's table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub scenario: String,
    pub figure: String,
    /// The server's storage backend; None for a baseline.
    #[serde(default)]
    pub backend: Option<String>,
    pub value: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: String,
    /// "met", "missed by ..." or "" when no target applies.
    pub result: String,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub scenario: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_total_bytes: u64,
    pub date: String,
    pub git_commit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub measurements: Vec<Measurement>,
    pub figures: Vec<Figure>,
    pub skipped: Vec<Skipped>,
    /// Lost, reordered or duplicated watch events over the whole run.
    pub watch_violations: u64,
}

impl Machine {
    pub fn detect(root: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_total_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let git_commit = git(&["rev-parse", "HEAD"]).map(|c| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} (with uncommitted changes)")
            } else {
                c
            }
        });
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            memory_total_bytes,
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            git_commit,
        }
    }
}

/// The order scenarios appear in.
pub const SCENARIOS: &[&str] =
    &["startup", "create", "get", "update", "list", "delete", "watch-fanout", "admission", "rbac", "memory"];

pub fn write_all(report: &Report, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    write(&out.join("latest.json"), &json)?;
    write(&out.join("latest.md"), &markdown(report))?;
    for s in SCENARIOS {
        if let Some(svg) = chart(report, s) {
            write(&out.join(format!("{s}.svg")), &svg)?;
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# loadgen results\n");
    let _ = writeln!(
        md,
        "Machine: {} cores ({}), {:.1} GiB memory. Date: {}. Commit: {}.\n",
        m.cores,
        m.cpu_model,
        m.memory_total_bytes as f64 / (1u64 << 30) as f64,
        m.date,
        m.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md, "Settings: `{}`\n", r.settings);
    let _ = writeln!(
        md,
        "Baselines are measured in the same run on the same machine, so the ratios matter more than the \
         absolute figures; on a shared machine (other builds running) absolute numbers are noisy.\n"
    );
    if r.settings["quick"].as_bool() == Some(true) || r.settings["smoke"].as_bool() == Some(true) {
        let _ = writeln!(
            md,
            "This is a shrunken run (--quick or --smoke): the targets are stated for the full settings and are only \
             indicative here.\n"
        );
    }
    if r.watch_violations > 0 {
        let _ = writeln!(md, "**WATCH EVENTS LOST, REORDERED OR DUPLICATED: {}**\n", r.watch_violations);
    }
    targets_table(&mut md, r);
    for s in SCENARIOS {
        let rows: Vec<&Figure> = r.figures.iter().filter(|f| f.scenario == *s).collect();
        let skipped: Vec<&Skipped> = r.skipped.iter().filter(|k| k.scenario == *s).collect();
        if rows.is_empty() && skipped.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {s}\n");
        for k in skipped {
            let _ = writeln!(md, "Skipped: {}\n", k.why);
        }
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "| figure | value | baseline | ratio | target | result |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
        for f in rows {
            let ratio = f.ratio.map(|x| format!("{x:.2}")).unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&f.figure),
                cell(&f.value),
                cell(&f.baseline),
                ratio,
                cell(&f.target),
                cell(&f.result)
            );
        }
        let _ = writeln!(md);
        let errors: Vec<String> = r
            .measurements
            .iter()
            .filter(|x| x.scenario == *s)
            .filter_map(|x| {
                let sm = x.summary.as_ref()?;
                (sm.errors > 0)
                    .then(|| format!("{}: {} errors, e.g. {}", x.label(), sm.errors, sm.error_samples.join("; ")))
            })
            .collect();
        for e in errors {
            let _ = writeln!(md, "- errors: {}", cell(&e));
        }
        let _ = writeln!(md, "![{s}]({s}.svg)\n");
    }
    md
}

/// Every target in one table: a row per target, a column per backend, each
/// cell met or missed (with the figure) or "not measured".
fn targets_table(md: &mut String, r: &Report) {
    let targeted: Vec<&Figure> = r.figures.iter().filter(|f| f.met.is_some()).collect();
    if targeted.is_empty() {
        return;
    }
    let mut backends: Vec<&str> = Vec::new();
    let mut targets: Vec<(&str, &str)> = Vec::new();
    for f in &targeted {
        let b = f.backend.as_deref().unwrap_or("baseline");
        if !backends.contains(&b) {
            backends.push(b);
        }
        if !targets.iter().any(|(s, t)| *s == f.scenario && *t == f.target) {
            targets.push((&f.scenario, &f.target));
        }
    }
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| scenario | target | {} |", backends.join(" | "));
    let _ = writeln!(md, "| --- | --- |{}", " --- |".repeat(backends.len()));
    for (scenario, target) in targets {
        let cells: Vec<String> = backends
            .iter()
            .map(|b| {
                let results: Vec<String> = targeted
                    .iter()
                    .filter(|f| f.scenario == scenario && f.target == target)
                    .filter(|f| f.backend.as_deref().unwrap_or("baseline") == *b)
                    .map(|f| cell(&f.result))
                    .collect();
                if results.is_empty() {
                    "not measured".to_string()
                } else {
                    results.join("; ")
                }
            })
            .collect();
        let _ = writeln!(md, "| {scenario} | {} | {} |", cell(target), cells.join(" | "));
    }
    let _ = writeln!(md);
}

/// One variant's bars: its label and named values.
type Group = (String, Vec<(String, f64)>);

/// The bars a scenario's chart draws (in ms, or MiB for memory) and the unit.
fn series(r: &Report, scenario: &str) -> (String, Vec<Group>) {
    let mut groups = Vec::new();
    let mut unit = "ms".to_string();
    for m in r.measurements.iter().filter(|m| m.scenario == scenario) {
        let bars: Vec<(String, f64)> = if let Some(s) = &m.summary {
            let l = s.latency_ms;
            vec![("p50".into(), l.p50), ("p90".into(), l.p90), ("p99".into(), l.p99), ("max".into(), l.max)]
        } else if let Some(d) = m.extra.get("delivery_ms") {
            ["p50", "p90", "p99", "max"].iter().map(|k| (k.to_string(), d[*k].as_f64().unwrap_or(0.0))).collect()
        } else if let Some(ms) = m.extra.get("readyz_ms").and_then(|v| v.as_f64()) {
            vec![("to ready".into(), ms)]
        } else if let Some(rss) = m.extra.get("rss_bytes").and_then(|v| v.as_f64()) {
            unit = "MiB".into();
            let json = m.extra.get("json_bytes").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let mib = |b: f64| b / (1u64 << 20) as f64;
            let mut v = vec![("RSS".into(), mib(rss)), ("JSON stored".into(), mib(json))];
            if let Some(after) = m.extra.get("rss_after_restart_bytes").and_then(|v| v.as_f64()) {
                v.push(("RSS after restart".into(), mib(after)));
            }
            v
        } else {
            continue;
        };
        groups.push((m.label(), bars));
    }
    (unit, groups)
}

const COLORS: &[&str] = &["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f"];

/// A grouped bar chart on a log scale (latencies span orders of magnitude).
pub fn chart(r: &Report, scenario: &str) -> Option<String> {
    let (unit, groups) = series(r, scenario);
    if groups.is_empty() {
        return None;
    }
    let bars_per_group = groups.iter().map(|g| g.1.len()).max().unwrap_or(1);
    let (bar_w, gap, left, top, plot_h) = (18.0, 30.0, 70.0, 40.0, 260.0);
    let group_w = bar_w * bars_per_group as f64 + gap;
    // Room on the right and below for the slanted variant labels.
    let width = left + group_w * groups.len() as f64 + 240.0;
    let height = top + plot_h + 190.0;
    let values = groups.iter().flat_map(|g| g.1.iter().map(|b| b.1)).filter(|v| *v > 0.0);
    let lo = values.clone().fold(f64::INFINITY, f64::min).min(1.0);
    let hi = values.fold(0.0f64, f64::max).max(lo * 10.0);
    let (llo, lhi) = (lo.log10().floor(), hi.log10().ceil());
    let y = |v: f64| {
        let v = v.max(10f64.powf(llo));
        top + plot_h - (v.log10() - llo) / (lhi - llo).max(1e-9) * plot_h
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left}" y="20" font-size="14">{scenario} ({unit}, log scale)</text>"#);
    let mut p = llo;
    while p <= lhi {
        let v = 10f64.powf(p);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - 240.0,
            left - 5.0,
            yy + 4.0,
            fmt_num(v)
        );
        p += 1.0;
    }
    for (gi, (label, bars)) in groups.iter().enumerate() {
        let x0 = left + gi as f64 * group_w + gap / 2.0;
        for (bi, (name, v)) in bars.iter().enumerate() {
            let x = x0 + bi as f64 * bar_w;
            let yy = y(*v);
            let color = COLORS[bi % COLORS.len()];
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} {name}: {} {unit}</title></rect>"#,
                bar_w - 2.0,
                (top + plot_h - yy).max(0.0),
                xml(label),
                fmt_num(*v)
            );
        }
        let cx = x0 + bar_w * bars.len() as f64 / 2.0;
        let ly = top + plot_h + 12.0;
        let _ = writeln!(
            s,
            r#"<text transform="translate({cx:.1},{ly:.1}) rotate(35)" text-anchor="start">{}</text>"#,
            xml(label)
        );
    }
    // The legend, beside the title: bar names of the first group.
    for (bi, (name, _)) in groups[0].1.iter().enumerate() {
        let x = left + 260.0 + bi as f64 * 120.0;
        let ly = 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{ly:.0}">{}</text>"#,
            ly - 9.0,
            COLORS[bi % COLORS.len()],
            x + 14.0,
            xml(name)
        );
    }
    let _ = writeln!(s, "</svg>");
    Some(s)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
