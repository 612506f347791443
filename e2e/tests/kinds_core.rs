//! The kind check (e2e::kinds) for the core/v1 kinds served before the
//! registration redesign, on one shared server.

use e2e::kinds::KindCase;
use e2e::Server;
use serde_json::json;

#[test]
fn core_kinds() {
    let s = Server::start();
    s.check_kind(&KindCase {
        resource: "configmaps",
        kind: "ConfigMap",
        namespace: Some("default"),
        valid: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1', b: '2'}\n",
        name: "settings",
        defaults: &[("/data/a", json!("1"))],
        columns: &["NAME", "DATA", "AGE"],
        wide_columns: &["NAME", "DATA", "AGE"],
        invalid: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {'a/b': x}\n",
        invalid_name: "bad",
        invalid_causes: &["data[a/b]", "a valid config key must consist of alphanumeric characters"],
    });
    s.check_kind(&KindCase {
        resource: "deployments.apps",
        kind: "Deployment",
        namespace: Some("default"),
        valid: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx}]}\n",
        name: "web",
        defaults: &[
            ("/spec/replicas", json!(1)),
            ("/spec/strategy/rollingUpdate/maxSurge", json!("25%")),
            ("/spec/template/spec/restartPolicy", json!("Always")),
        ],
        columns: &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        wide_columns: &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        invalid: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nosel}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: nginx}]}\n",
        invalid_name: "nosel",
        invalid_causes: &["spec.selector: Required value"],
    });
}
