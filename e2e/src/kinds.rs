//! One check every built-in kind passes, as a new user would try it with
//! kubectl: create a valid object, read it back with upstream's defaults, see
//! upstream's `kubectl get` columns (and `-o wide`'s), have an invalid object
//! refused with upstream's field path and leave nothing behind, and have
//! `kubectl explain` describe the kind.

use serde_json::Value;

use crate::Server;

/// What to check for one kind.
pub struct KindCase<'a> {
    /// The resource as kubectl names it: "replicasets.apps", "nodes".
    pub resource: &'a str,
    /// The kind `kubectl explain` must name.
    pub kind: &'a str,
    /// Where namespaced objects go; None for cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    /// A valid object, named `name`.
    pub valid: &'a str,
    pub name: &'a str,
    /// JSON pointers into the stored object and the values the server must
    /// have defaulted there.
    pub defaults: &'a [(&'a str, Value)],
    /// `kubectl get` headers in order, then those of `kubectl get -o wide`.
    pub columns: &'a [&'a str],
    pub wide_columns: &'a [&'a str],
    /// An object upstream refuses with 422, named `invalid_name`, and the
    /// fragments kubectl's error must contain (field paths and messages).
    pub invalid: &'a str,
    pub invalid_name: &'a str,
    pub invalid_causes: &'a [&'a str],
}

/// The header cells of a kubectl table, in order.
pub fn header(out: &str) -> Vec<String> {
    let line = out.lines().next().unwrap_or("");
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

impl Server {
    /// Runs every check of `case`; the valid object is left in place.
    #[track_caller]
    pub fn check_kind(&self, case: &KindCase) {
        let ns: Vec<&str> = case.namespace.map(|n| vec!["-n", n]).unwrap_or_default();
        let with_ns = |args: &[&str]| -> Vec<String> { args.iter().chain(ns.iter()).map(|s| s.to_string()).collect() };
        let run = |args: &[&str], stdin: Option<&str>| {
            let args = with_ns(args);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.run(&refs, stdin)
        };

        let created = run(&["create", "-f", "-"], Some(case.valid));
        assert_eq!(created.code, 0, "{}: creating the valid object: {created:?}", case.resource);
        assert!(created.stdout.contains("created"), "{}: {created:?}", case.resource);

        let got = run(&["get", case.resource, case.name, "-o", "json"], None);
        assert_eq!(got.code, 0, "{}: reading it back: {got:?}", case.resource);
        let obj: Value = serde_json::from_str(&got.stdout).expect("kubectl -o json prints JSON");
        for (pointer, want) in case.defaults {
            assert_eq!(obj.pointer(pointer), Some(want), "{}: default at {pointer} in {obj:#}", case.resource);
        }

        let table = run(&["get", case.resource, case.name], None);
        assert_eq!(table.code, 0, "{}: {table:?}", case.resource);
        assert_eq!(header(&table.stdout), case.columns, "{}: columns of\n{}", case.resource, table.stdout);
        let wide = run(&["get", case.resource, case.name, "-o", "wide"], None);
        assert_eq!(wide.code, 0, "{}: {wide:?}", case.resource);
        assert_eq!(header(&wide.stdout), case.wide_columns, "{}: wide columns of\n{}", case.resource, wide.stdout);

        let refused = run(&["create", "-f", "-"], Some(case.invalid));
        assert_eq!(refused.code, 1, "{}: the invalid object must be refused: {refused:?}", case.resource);
        assert!(refused.stderr.contains("is invalid"), "{}: not a 422 Invalid: {}", case.resource, refused.stderr);
        for fragment in case.invalid_causes {
            assert!(
                refused.stderr.contains(fragment),
                "{}: error lacks {fragment:?}:\n{}",
                case.resource,
                refused.stderr
            );
        }
        let left = run(&["get", case.resource, case.invalid_name], None);
        assert_eq!(left.code, 1, "{}: the refused object must not exist: {left:?}", case.resource);
        assert!(left.stderr.contains("NotFound") || left.stderr.contains("not found"), "{left:?}");

        let explain = self.run(&["explain", case.resource], None);
        assert_eq!(explain.code, 0, "{}: kubectl explain: {explain:?}", case.resource);
        assert!(
            explain.stdout.lines().any(|l| l.starts_with("KIND:") && l.trim_end().ends_with(case.kind)),
            "{}: kubectl explain names no KIND {}:\n{}",
            case.resource,
            case.kind,
            explain.stdout
        );
    }
}
