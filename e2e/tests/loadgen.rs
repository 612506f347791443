//! The load generator end to end: a smoke-sized run against the debug server
//! writes its JSON, Markdown and SVG, with every requested scenario measured
//! (JSON and protobuf reads, the watch fan-out and its HTTP-stack baseline,
//! admission and RBAC variants), requests answered and no watch event lost.
//! No timing is asserted.

use std::process::Command;

#[test]
fn loadgen_smoke_run_writes_parseable_results() {
    let out = tempfile::tempdir().expect("a temp dir");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--smoke",
            "--scenarios",
            "create,get,watch-fanout,admission,rbac",
            "--backend",
            "embedded",
            "--server-binary",
        ])
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
        ("get", "server, protobuf, consistent", true),
        ("get", "server, protobuf, resourceVersion=0", true),
        ("admission", "creates, no webhooks or policies", true),
        ("admission", "creates, 20 webhooks + 20 policies not matching", true),
        ("admission", "creates, 1 of the 20 policies matching", true),
        ("rbac", "GET resourceVersion=0 as system:masters", true),
        ("rbac", "GET resourceVersion=0 as a user authorized by RBAC (40 bindings)", true),
        // Compared in rounds alternating with the server's own.
        ("create", "embedded store alone (alternating with the server)", true),
        ("get", "HTTP stack, fixed", true),
        ("create", "embedded store alone", false),
        ("get", "embedded store alone", false),
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
    // No configured webhook selects a measured namespace, so none was called.
    for m in measurements.iter().filter(|m| m["scenario"] == "admission") {
        assert_eq!(m["extra"]["webhook_calls"], 0, "{m}");
    }
    for (variant, server) in [
        ("10 watchers, 20 writes/s", true),
        ("10 watchers, 20 writes/s, protobuf", true),
        ("HTTP stack, 10 watchers, 20 writes/s", false),
    ] {
        let watch = &find("watch-fanout", variant, server)["extra"];
        assert_eq!(watch["writes"], 20, "{variant}: every write at 20/s for 1 s is acknowledged: {watch}");
        assert_eq!(watch["delivered"], 200, "{variant}: 10 watchers each see the 20 writes: {watch}");
        for k in ["lost", "undelivered", "reordered", "duplicates", "broken_watches", "write_errors"] {
            assert_eq!(watch[k], 0, "{variant}: {k}: {watch}");
        }
    }

    // The summary has a table per scenario, and the ratio of the create figure.
    let md = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md");
    for s in ["## create", "## get", "## watch-fanout", "| figure | value | baseline | ratio | target | result |"] {
        assert!(md.contains(s), "latest.md lacks {s:?}:\n{md}");
    }
    // One table of targets, a column per backend, each judged.
    assert!(md.contains("| scenario | target | embedded |"), "no targets table:\n{md}");
    for target in [
        "consistent GET ≥ 0.80 × GET resourceVersion=0",
        "GET resourceVersion=0 ≥ 0.80 × the bare hyper+rustls stack",
        "write latency during that fan-out: p99 < 100 ms",
        "creates with 20 webhooks + 20 policies not matching ≥ 0.95 × with none",
        "one matching validating policy costs < 10%",
        "GET resourceVersion=0 as an RBAC-authorized user",
    ] {
        let row = md.lines().find(|l| l.contains(target)).unwrap_or_else(|| panic!("no target row {target:?}:\n{md}"));
        assert!(row.contains("| met: ") || row.contains("| missed: "), "{target} is not judged: {row}");
    }
    let cores = report["machine"]["cores"].as_u64().unwrap_or(0);
    assert!(md.contains(&format!("Machine: {cores} cores")), "core count missing from latest.md:\n{md}");
    let create_row = md.lines().find(|l| l.starts_with("| server [embedded]")).expect("the create row");
    assert!(
        create_row.contains("embedded store alone (alternating with the server)"),
        "create is set against the store alone, in the same rounds: {create_row}"
    );
    let get_row = md.lines().find(|l| l.starts_with("| server, resourceVersion=0 [embedded]")).expect("the GET row");
    assert!(get_row.contains("HTTP stack, fixed"), "GET is set against the bare stack: {get_row}");
    for s in ["create", "get", "watch-fanout", "admission", "rbac"] {
        let svg = std::fs::read_to_string(out.path().join(format!("{s}.svg"))).expect("an SVG per scenario");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{s}.svg is not an SVG document");
        assert!(svg.contains("<rect x="), "{s}.svg draws no bars");
    }
}
