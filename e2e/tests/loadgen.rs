//! The load generator end to end: a smoke-sized run against the debug server
//! writes its JSON, Markdown and SVG, with every requested scenario measured,
//! requests answered and no watch event lost. No timing is asserted.

use std::process::Command;

#[test]
fn loadgen_smoke_run_writes_parseable_results() {
    let out = tempfile::tempdir().expect("a temp dir");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--smoke", "--scenarios", "create,get,watch-fanout", "--backend", "embedded", "--server-binary"])
        .arg(e2e::server_binary())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running loadgen");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "loadgen failed ({}):\n{stderr}", run.status);

    let text = std::fs::read_to_string(out.path().join("latest.json")).expect("latest.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("latest.json is JSON");
    assert!(report["machine"]["cores"].as_u64().unwrap_or(0) >= 1, "machine info: {}", report["machine"]);
    assert_eq!(report["watch_violations"], 0, "watch events lost or reordered:\n{stderr}");
    assert_eq!(report["skipped"], serde_json::json!([]), "nothing may be skipped:\n{stderr}");
    let measurements = report["measurements"].as_array().expect("measurements");
    let find = |scenario: &str, variant: &str, server: bool| {
        measurements
            .iter()
            .find(|m| {
                m["scenario"] == scenario
                    && m["variant"].as_str().is_some_and(|v| v.starts_with(variant))
                    && m["backend"].is_null() != server
            })
            .unwrap_or_else(|| panic!("no {scenario} measurement of {variant:?} in {text}"))
    };
    // Every request measurement answered something and nothing failed.
    for (scenario, variant, server) in [
        ("create", "server", true),
        ("get", "server, consistent", true),
        ("get", "server, resourceVersion=0", true),
        ("create", "embedded store alone", false),
        ("get", "embedded store alone", false),
        ("get", "HTTP stack", false),
    ] {
        let m = find(scenario, variant, server);
        let s = &m["summary"];
        assert!(s["ops"].as_u64().unwrap_or(0) > 0, "{scenario}/{variant} ran no operations: {m}");
        assert_eq!(s["errors"], 0, "{scenario}/{variant} had errors: {m}");
        assert!(s["latency_ms"]["max"].as_f64().unwrap_or(0.0) > 0.0, "{scenario}/{variant} has no latencies: {m}");
        if server {
            assert_eq!(m["backend"], "embedded", "{m}");
        }
    }
    let watch = &find("watch-fanout", "10 watchers", true)["extra"];
    assert_eq!(watch["writes"], 20, "every write at 20/s for 1 s is acknowledged: {watch}");
    assert_eq!(watch["delivered"], 200, "10 watchers each see the 20 writes: {watch}");
    for k in ["lost", "undelivered", "reordered", "duplicates", "broken_watches", "write_errors"] {
        assert_eq!(watch[k], 0, "{k}: {watch}");
    }

    // The summary has a table per scenario, and the ratio of the create figure.
    let md = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md");
    for s in ["## create", "## get", "## watch-fanout", "| figure | value | baseline | ratio | target | result |"] {
        assert!(md.contains(s), "latest.md lacks {s:?}:\n{md}");
    }
    let cores = report["machine"]["cores"].as_u64().unwrap_or(0);
    assert!(md.contains(&format!("Machine: {cores} cores")), "core count missing from latest.md:\n{md}");
    let create_row = md.lines().find(|l| l.starts_with("| server [embedded]")).expect("the create row");
    assert!(create_row.contains("embedded store alone"), "create is set against the store alone: {create_row}");
    for s in ["create", "get", "watch-fanout"] {
        let svg = std::fs::read_to_string(out.path().join(format!("{s}.svg"))).expect("an SVG per scenario");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{s}.svg is not an SVG document");
        assert!(svg.contains("<rect x="), "{s}.svg draws no bars");
    }
}
