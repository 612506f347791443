//! Discovery against upstream 1.33's, from ../shared/facts/api-resources-1.33.json:
//! every built-in resource and subresource with its kind, scope, verbs, short
//! names and categories; the order of /apis; `kubectl api-versions`; and the
//! storageVersionHash values upstream's golden discovery documents hold.

use std::collections::{BTreeMap, BTreeSet};

use e2e::Server;
use serde_json::{json, Value};

/// What upstream serves and this server does not yet, as "groupVersion resource"
/// (subresources as "resource/sub"). The test fails when anything else is
/// missing, and when something listed here is served: the list only shrinks.
const NOT_YET_SERVED: &[&str] = &[];

fn facts() -> Value {
    let path = e2e::workspace_root().join("../shared/facts/api-resources-1.33.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the facts file is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

/// A discovery entry in the form the facts file uses.
fn entry(served: &Value) -> Value {
    json!({
        "singularName": served["singularName"],
        "kind": served["kind"],
        "namespaced": served["namespaced"],
        "verbs": strings(&served["verbs"]),
        "shortNames": strings(&served["shortNames"]),
        "categories": strings(&served["categories"]),
    })
}

#[test]
fn discovery_equals_upstream() {
    let s = Server::start();
    let facts = facts();
    let resources: Vec<&Value> =
        facts["resources"].as_array().into_iter().chain(facts["already_served_groups"].as_array()).flatten().collect();
    let mut by_gv: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &resources {
        by_gv.entry(r["groupVersion"].as_str().unwrap_or_default().to_string()).or_default().push(r);
    }

    let mut missing = BTreeSet::new();
    let mut served_gvs = BTreeSet::new();
    for (gv, want) in &by_gv {
        let path = if gv.contains('/') { format!("/apis/{gv}") } else { format!("/api/{gv}") };
        let r = s.request("GET", &path, None);
        if r.status == 404 {
            for w in want {
                missing.insert(format!("{gv} {}", w["resource"].as_str().unwrap_or_default()));
                for sub in w["subresources"].as_array().into_iter().flatten() {
                    missing.insert(format!(
                        "{gv} {}/{}",
                        w["resource"].as_str().unwrap_or_default(),
                        sub["name"].as_str().unwrap_or_default()
                    ));
                }
            }
            continue;
        }
        served_gvs.insert(gv.clone());
        let list = r.json();
        let served: BTreeMap<String, &Value> = list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e))
            .collect();
        let names: Vec<&String> = served.keys().collect();
        let mut sorted = names.clone();
        sorted.sort();
        let in_order: Vec<&str> =
            list["resources"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(in_order, sorted.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "{gv}: paths are sorted");

        let mut expected_names = BTreeSet::new();
        for w in want {
            let name = w["resource"].as_str().unwrap_or_default();
            expected_names.insert(name.to_string());
            match served.get(name) {
                None => {
                    missing.insert(format!("{gv} {name}"));
                }
                Some(got) => {
                    let want_entry = json!({
                        "singularName": w["singularName"], "kind": w["kind"], "namespaced": w["namespaced"],
                        "verbs": strings(&w["verbs"]), "shortNames": strings(&w["shortNames"]),
                        "categories": strings(&w["categories"]),
                    });
                    assert_eq!(entry(got), want_entry, "{gv} {name}");
                }
            }
            for sub in w["subresources"].as_array().into_iter().flatten() {
                let full = format!("{name}/{}", sub["name"].as_str().unwrap_or_default());
                expected_names.insert(full.clone());
                match served.get(&full) {
                    None => {
                        missing.insert(format!("{gv} {full}"));
                    }
                    Some(got) => {
                        assert_eq!(got["kind"], sub["kind"], "{gv} {full} kind");
                        assert_eq!(strings(&got["verbs"]), strings(&sub["verbs"]), "{gv} {full} verbs");
                        assert_eq!(got.get("group"), sub.get("group"), "{gv} {full} group");
                        assert_eq!(got.get("version"), sub.get("version"), "{gv} {full} version");
                        assert_eq!(got["namespaced"], w["namespaced"], "{gv} {full} scope");
                    }
                }
            }
        }
        let extra: Vec<&&String> = names.iter().filter(|n| !expected_names.contains(**n)).collect();
        assert!(extra.is_empty(), "{gv} serves what upstream does not: {extra:?}");
    }
    let listed: BTreeSet<String> = NOT_YET_SERVED.iter().map(|s| s.to_string()).collect();
    assert_eq!(missing, listed, "missing (left) vs NOT_YET_SERVED (right)");

    // /apis lists groups in upstream's order.
    let groups = s.request("GET", "/apis", None).json();
    let served_order: Vec<String> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect();
    let upstream_order: Vec<String> = facts["apis_group_order"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["group"].as_str().map(str::to_string))
        .filter(|g| served_order.contains(g))
        .collect();
    assert_eq!(served_order, upstream_order, "/apis group order");

    // kubectl api-versions: exactly the served built-in group-versions.
    let out = s.run(&["api-versions"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let versions: BTreeSet<String> = out.stdout.lines().map(str::to_string).collect();
    assert_eq!(versions, served_gvs, "kubectl api-versions");

    // storageVersionHash as upstream's golden discovery documents hold it.
    let core = s.request("GET", "/api/v1", None).json();
    let hash = |name: &str| {
        core["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["storageVersionHash"].clone())
    };
    assert_eq!(hash("configmaps"), Some(json!("qFsyl6wFWjQ=")));
    assert_eq!(hash("pods"), Some(json!("xPOwRZ+Yhw8=")));
    assert_eq!(hash("services"), Some(json!("0/CO1lhkEBI=")));
    assert_eq!(hash("namespaces"), Some(json!("Q3oi5N2YM8M=")));
    assert_eq!(hash("pods/status"), Some(Value::Null), "subresources carry no hash");
}
