use serde_json::json;

use super::*;

fn writer<'a>(manager: &'a str, r: &'a dyn TypeResolver) -> Writer<'a> {
    Writer { manager, api_version: "apps/v1".into(), subresource: "", status_split: true, resolver: r }
}

fn entries(obj: &Value) -> Vec<(String, String, Value)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                        e["fieldsV1"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

#[test]
fn creates_and_updates_record_update_entries() {
    let r = Definitions::new("io.k8s.api.apps.v1.Deployment");
    let mut created = deployment(1, "a");
    created["status"] = json!({"replicas": 0});
    update(None, &mut created, &writer("kubectl-create", &r));
    let e = entries(&created);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("kubectl-create", "Update"));
    // Struct fields are not owned themselves, maps and items are; status is the
    // status subresource's.
    assert_eq!(e[0].2["f:spec"]["f:template"]["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
    assert!(e[0].2["f:spec"].get(".").is_none());
    assert_eq!(
        e[0].2["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    assert!(e[0].2.get("f:status").is_none());
    assert_eq!(created["metadata"]["managedFields"][0]["apiVersion"], "apps/v1");
    assert_eq!(created["metadata"]["managedFields"][0]["fieldsType"], "FieldsV1");

    // Another manager's change moves the field to it.
    let mut edited = created.clone();
    edited["spec"]["replicas"] = json!(3);
    update(Some(&created), &mut edited, &writer("kubectl-edit", &r));
    let e = entries(&edited);
    assert_eq!(e.len(), 2);
    assert!(e[0].2["f:spec"].get("f:replicas").is_none());
    assert_eq!(e[1].0, "kubectl-edit");
    assert_eq!(e[1].2, json!({"f:spec": {"f:replicas": {}}}));

    // An update that omits managedFields keeps them; one that changes nothing adds nothing.
    let mut same = edited.clone();
    meta::remove_meta(&mut same, "managedFields");
    update(Some(&edited), &mut same, &writer("other", &r));
    assert_eq!(same["metadata"]["managedFields"], edited["metadata"]["managedFields"]);

    // managedFields: [] resets them.
    let mut reset = edited.clone();
    meta::set_meta(&mut reset, "managedFields", json!([]));
    update(Some(&edited), &mut reset, &writer("other", &r));
    assert!(reset["metadata"].get("managedFields").is_none());

    // Invalid managedFields from a client keep the stored ones.
    let mut bad = edited.clone();
    meta::set_meta(&mut bad, "managedFields", json!([{"manager": "x", "operation": "Bogus"}]));
    update(Some(&edited), &mut bad, &writer("other", &r));
    assert_eq!(bad["metadata"]["managedFields"], edited["metadata"]["managedFields"]);
}

#[test]
fn apply_merges_owns_conflicts_and_prunes() {
    let r = Definitions::new("io.k8s.api.apps.v1.Deployment");
    let first = deployment(1, "a");
    let obj = apply(None, &first, &first, &writer("kubectl", &r), false).unwrap();
    let e = entries(&obj);
    assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("kubectl", "Apply"));
    assert_eq!(e[0].2["f:spec"]["f:selector"], json!({}));
    assert_eq!(e[0].2["f:spec"]["f:template"]["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    assert!(obj["metadata"]["managedFields"][0]["time"].is_string());

    // Same value: shared, no conflict.
    let other =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    let shared = apply(Some(&obj), &other, &other, &writer("other", &r), false).unwrap();
    assert_eq!(entries(&shared).len(), 2);

    // A different value conflicts.
    let mut other2 = other.clone();
    other2["spec"]["replicas"] = json!(5);
    let err = apply(Some(&obj), &other2, &other2, &writer("other", &r), false).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, crate::status::Reason::Conflict);
    assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas");
    let causes = &err.details.as_ref().unwrap()["causes"];
    assert_eq!(
        causes[0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"})
    );

    // force takes it over.
    let forced = apply(Some(&obj), &other2, &other2, &writer("other", &r), true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    let e = entries(&forced);
    let kubectl = e.iter().find(|e| e.0 == "kubectl").unwrap();
    assert!(kubectl.2["f:spec"].get("f:replicas").is_none());

    // Fields the manager stops applying go, unless someone else holds them.
    let mut second = deployment(1, "a");
    second["spec"].as_object_mut().unwrap().remove("replicas");
    second["metadata"]["labels"] = json!({"x": "y"});
    let pruned = apply(Some(&obj), &second, &second, &writer("kubectl", &r), false).unwrap();
    assert!(pruned["spec"].get("replicas").is_none());
    assert_eq!(pruned["metadata"]["labels"], json!({"x": "y"}));
    let kept = apply(Some(&shared), &second, &second, &writer("kubectl", &r), false).unwrap();
    assert_eq!(kept["spec"]["replicas"], 1);

    // Two managers' containers merge by name.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}}});
    let both = apply(Some(&obj), &sidecar, &sidecar, &writer("sidecar", &r), false).unwrap();
    let names: Vec<&str> = both["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c", "side"]);
    let again = apply(Some(&both), &first, &first, &writer("kubectl", &r), false).unwrap();
    assert_eq!(again["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 2);
}

#[test]
fn kubectl_takes_over_what_client_side_apply_recorded() {
    let r = Definitions::new("io.k8s.api.apps.v1.Deployment");
    // A client-side apply: an Update by kubectl-client-side-apply with the
    // configuration in the annotation; then someone else scales it.
    let mut csa = deployment(1, "a");
    csa["metadata"]["annotations"] = json!({LAST_APPLIED: deployment(1, "a").to_string()});
    update(None, &mut csa, &writer("kubectl-client-side-apply", &r));
    let mut scaled = csa.clone();
    scaled["spec"]["replicas"] = json!(4);
    update(Some(&csa), &mut scaled, &writer("hpa", &r));

    // kubectl applies a changed image: the conflict with the client-side
    // manager is its own, so it goes through and the annotation follows.
    let changed = deployment(4, "b");
    let out = apply(Some(&scaled), &changed, &changed, &writer("kubectl", &r), false).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "b");
    let last: Value = serde_json::from_str(out["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap()).unwrap();
    assert_eq!(last["spec"]["template"]["spec"]["containers"][0]["image"], "b");
    let e = entries(&out);
    let csa_entry = e.iter().find(|e| e.0 == "kubectl-client-side-apply").unwrap();
    assert!(csa_entry.2["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]
        .get("f:image")
        .is_none());

    // A field the annotation does not describe as live (replicas, now the
    // hpa's 4) still conflicts; so does every conflict for another manager.
    let rescaled = deployment(7, "b");
    let err = apply(Some(&scaled), &rescaled, &rescaled, &writer("kubectl", &r), false).unwrap_err();
    assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas");
    let err = apply(Some(&scaled), &changed, &changed, &writer("other", &r), false).unwrap_err();
    assert!(err.message.contains("kubectl-client-side-apply"), "{}", err.message);
}

#[test]
fn conflict_messages_group_by_manager() {
    let r = Untyped;
    let w = |m| Writer { manager: m, api_version: "v1".into(), subresource: "", status_split: false, resolver: &r };
    let mut obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}});
    update(None, &mut obj, &w("kubectl-create"));
    let c = json!({"data": {"c": "1"}});
    let obj = apply(Some(&obj), &c, &c, &w("kubectl"), false).unwrap();
    let all = json!({"data": {"a": "2", "b": "2", "c": "2"}});
    let err = apply(Some(&obj), &all, &all, &w("mine"), false).unwrap_err();
    assert_eq!(
        err.message,
        "Apply failed with 3 conflicts: conflicts with \"kubectl\":\n- .data.c\nconflicts with \"kubectl-create\" using v1:\n- .data.a\n- .data.b"
    );
}

#[test]
fn status_subresource_writes_own_only_status() {
    let r = Definitions::new("io.k8s.api.apps.v1.Deployment");
    let d = deployment(1, "a");
    let obj = apply(None, &d, &d, &writer("kubectl", &r), false).unwrap();
    let w = Writer {
        manager: "ctl",
        api_version: "apps/v1".into(),
        subresource: "status",
        status_split: true,
        resolver: &r,
    };
    let status = json!({"status": {"replicas": 1}});
    let applied = apply(Some(&obj), &status, &status, &w, false).unwrap();
    let e = entries(&applied);
    let ctl = e.iter().find(|e| e.0 == "ctl").unwrap();
    assert_eq!(ctl.2, json!({"f:status": {"f:replicas": {}}}));
    let raw = applied["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "ctl").unwrap();
    assert_eq!(raw["subresource"], "status");
}

#[test]
fn update_entries_are_capped() {
    let r = Untyped;
    let mut obj = json!({"data": {}});
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        let m = format!("m{i:02}");
        update(
            Some(&obj),
            &mut next,
            &Writer { manager: &m, api_version: "v1".into(), subresource: "", status_split: false, resolver: &r },
        );
        obj = next;
    }
    let e = entries(&obj);
    assert_eq!(e.len(), 10);
    assert!(e.iter().any(|e| e.0 == "ancient-changes"));
}

#[test]
fn field_managers_are_validated() {
    assert!(validate_field_manager("kubectl").is_empty());
    let long = validate_field_manager(&"m".repeat(129));
    assert_eq!(long[0].full_message(), "fieldManager: Too long: may not be more than 128 bytes");
    let bad = validate_field_manager("a\u{7}");
    assert!(bad[0].full_message().ends_with("invalid character U+0007 (at position 1)"), "{:?}", bad);
}

#[test]
fn manager_names_follow_upstream() {
    assert_eq!(manager_name(Some("mine"), "kubectl/v1.33"), "mine");
    assert_eq!(manager_name(None, "kubectl/v1.33.0 (linux/amd64) kubernetes/abc"), "kubectl");
    assert_eq!(manager_name(Some(""), ""), "unknown");
    assert_eq!(manager_name(None, &"x".repeat(300)).len(), 128);
}

/// The definition `typed::node_set` computes in one walk: every node added
/// against an empty object, less the struct nodes a typed zero value
/// already has (the struct objects that are not in the value's field set).
fn without_struct_nodes(r: &dyn TypeResolver, set: &Set, new: &Value) -> Set {
    let shape = typed::field_set(r, new);
    let mut out = Set::new();
    for p in set.paths() {
        if shape.has(&p) || !is_struct_object(r, new, &p) {
            out.insert(&p);
        }
    }
    out
}

fn is_struct_object(r: &dyn TypeResolver, v: &Value, path: &Path) -> bool {
    let mut t = r.root();
    let mut cur = v;
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                t = r.field(&t, f);
                match cur.get(f) {
                    Some(next) => cur = next,
                    None => return false,
                }
            }
            _ => {
                let list = t.list.clone();
                t = r.item(&t);
                let found = cur.as_array().and_then(|a| a.iter().find(|i| typed::item_element(&list, i) == *pe));
                match found {
                    Some(next) => cur = next,
                    None => return false,
                }
            }
        }
    }
    t.is_struct && matches!(cur, Value::Object(m) if !m.is_empty())
}

#[test]
fn a_creates_node_set_is_the_comparison_with_an_empty_object() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "annotations": {}},
        "spec": {"containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}],
             "resources": {}, "securityContext": {"capabilities": {"add": ["A", "A"]}}, "env": null},
            {"name": "d", "image": "j", "args": ["x", "y"]}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}},
            "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "t"}, {"key": "t"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let mut custom = pod.clone();
    custom["spec"]["unknown"] = json!({"deep": {"er": [1, 2, {"x": {}}]}});
    let cases: Vec<(Box<dyn TypeResolver>, Value)> = vec![
        (Box::new(Definitions::new("io.k8s.api.apps.v1.Deployment")), deployment(2, "a")),
        (Box::new(Definitions::new("io.k8s.api.core.v1.Pod")), pod.clone()),
        (Box::new(Definitions::new("io.k8s.api.core.v1.Pod")), custom.clone()),
        (
            Box::new(Definitions::new("io.k8s.api.core.v1.ConfigMap")),
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {}, "immutable": true}),
        ),
        (Box::new(typed::Untyped), custom),
    ];
    for (r, v) in cases {
        let added = typed::compare(r.as_ref(), &json!({}), &v).added;
        assert_eq!(typed::node_set(r.as_ref(), &v, false), added, "{v}");
        assert_eq!(typed::node_set(r.as_ref(), &v, true), without_struct_nodes(r.as_ref(), &added, &v), "{v}");
    }
}
