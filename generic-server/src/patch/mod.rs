//! Patch application: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes strategic merge patch.
//!
//! Errors follow upstream's patch handler: a body that cannot be read as the
//! patch type is 400 BadRequest; a JSON patch whose operations fail (a `test`
//! that does not match, a path that does not exist) is 422 Invalid with
//! upstream's generic message. Strategic merge patch maps its errors as
//! upstream does (bad directive formats 400, lists of lists 422); the errors
//! upstream leaves unclassified (it answers them with a bare 500) are 400 here
//! with upstream's message, since they are all caused by the patch.
//!
//! Strategic merge patch reads the patch strategy, merge key and field types
//! from the one facts table in [`crate::openapi::facts`].
//!
//! Work is bounded by the patch: every patch body passes the nesting check of
//! [`crate::depth`] before it is parsed, a JSON patch may copy at most
//! upstream's JSONPatchMaxCopyBytes in all, and no operation may nest the
//! document deeper than a body may be.

// The signatures return the crate's StatusError by value, as every handler does.

mod smp;

use serde_json::{json, Value};

use crate::status::StatusError;

pub use smp::strategic_merge_patch;

/// Upstream's limit on the number of operations in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

/// How many bytes (of their JSON form) the `copy` operations of one JSON patch
/// may copy in all: upstream's JSONPatchMaxCopyBytes, which the apiserver sets
/// as evanphx/json-patch's AccumulatedCopySizeLimit, so that a short patch of
/// doubling copies cannot make the server build a huge document.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// 422 Invalid with upstream's generic message for a patch that could not be
/// applied (upstream builds it with NewGenericServerResponse, which drops the
/// underlying error text).
pub(crate) fn unprocessable() -> StatusError {
    let mut e = StatusError::new(
        422,
        crate::status::Reason::Invalid,
        "the server rejected our request due to an error in our request",
    );
    e.details = Some(Box::new(json!({})));
    e
}

/// Applies an RFC 6902 JSON patch to `doc`.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    crate::depth::check_json(patch).map_err(StatusError::bad_request)?;
    let raw: Value = serde_json::from_slice(patch).map_err(|e| StatusError::bad_request(e.to_string()))?;
    if let Value::Array(ops) = &raw {
        if ops.len() > MAX_JSON_PATCH_OPERATIONS {
            return Err(StatusError::new(
                413,
                crate::status::Reason::RequestEntityTooLarge,
                format!(
                    "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got: {}",
                    ops.len()
                ),
            ));
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(raw).map_err(|e| StatusError::bad_request(e.to_string()))?;
    let mut out = doc.clone();
    let mut copied = 0usize;
    // An upper bound of the document's depth, kept per operation without walking the document again.
    let mut depth = depth_of(&out);
    for op in ops.0.iter() {
        use json_patch::PatchOperation as Op;
        let within = |p: &json_patch::jsonptr::Pointer| p.count();
        depth = match op {
            Op::Add(o) => depth.max(within(&o.path) + depth_of(&o.value)),
            Op::Replace(o) => depth.max(within(&o.path) + depth_of(&o.value)),
            Op::Move(o) => depth.max(within(&o.path) + depth.saturating_sub(within(&o.from))),
            Op::Copy(o) => {
                // Counted before the copy is made, as upstream: the copy that would pass the limit is never made.
                copied = copied.saturating_add(out.pointer(o.from.as_str()).map(json_size).unwrap_or(0));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(unprocessable());
                }
                depth.max(within(&o.path) + depth.saturating_sub(within(&o.from)))
            }
            Op::Remove(_) | Op::Test(_) => depth,
        };
        if depth > crate::depth::MAX_DEPTH {
            return Err(unprocessable());
        }
        // On failure the copy is dropped whole, so nothing needs undoing.
        json_patch::patch_unsafe(&mut out, std::slice::from_ref(op)).map_err(|_| unprocessable())?;
    }
    Ok(out)
}

/// How many bytes `v`'s compact JSON form takes, without building it.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// How deeply `v` nests (a scalar 0, `[]` 1), found without recursion.
fn depth_of(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// Applies an RFC 7386 JSON merge patch to `doc`. The patch must be a JSON
/// object (an object's patch can only be an object).
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    crate::depth::check_json(patch).map_err(|_| StatusError::bad_request("Invalid JSON Patch"))?;
    let p: Value = serde_json::from_slice(patch).map_err(|_| StatusError::bad_request("Invalid JSON Patch"))?;
    if !p.is_object() {
        return Err(StatusError::bad_request("Invalid JSON Patch"));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, &p);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_applies_and_fails_as_upstream() {
        let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let out = json_patch(
            &doc,
            br#"[{"op":"add","path":"/data/n","value":"m"},{"op":"remove","path":"/metadata/labels/x"}]"#,
        )
        .expect("applies");
        assert_eq!(out["data"]["n"], "m");
        assert_eq!(out["metadata"]["labels"], json!({}));

        let e = json_patch(&doc, b"{not json").expect_err("malformed");
        assert_eq!((e.code, e.reason), (400, crate::status::Reason::BadRequest));
        let e = json_patch(&doc, br#"{"op":"add"}"#).expect_err("not a list");
        assert_eq!(e.code, 400);
        let e = json_patch(&doc, br#"[{"op":"frob","path":"/a"}]"#).expect_err("bad op");
        assert_eq!(e.code, 400);
        let e = json_patch(&doc, br#"[{"op":"test","path":"/data/k","value":"other"}]"#).expect_err("test fails");
        assert_eq!((e.code, e.reason), (422, crate::status::Reason::Invalid));
        let e = json_patch(&doc, br#"[{"op":"remove","path":"/nope/x"}]"#).expect_err("missing path");
        assert_eq!(e.code, 422);
    }

    #[test]
    fn json_patch_copies_are_bounded_as_upstream() {
        // 20 doubling copies of a 1 KiB string would build a 1 GiB document.
        let doc = json!({"data": {"a": "x".repeat(1024), "b": []}});
        let mut ops = vec![json!({"op": "add", "path": "/data/b/-", "value": "x".repeat(1024)})];
        for _ in 0..20 {
            ops.push(json!({"op": "copy", "from": "/data/b", "path": "/data/b/-"}));
        }
        let patch = serde_json::to_vec(&ops).expect("json");
        let e = json_patch(&doc, &patch).expect_err("amplification");
        assert_eq!((e.code, e.reason), (422, crate::status::Reason::Invalid));
        assert_eq!(e.message, "the server rejected our request due to an error in our request");

        // Copies within the limit apply, each counted by the size of what it copies.
        let patch =
            br#"[{"op":"copy","from":"/data/a","path":"/data/c"},{"op":"copy","from":"/data/a","path":"/data/d"}]"#;
        let out = json_patch(&doc, patch).expect("small copies");
        assert_eq!(out["data"]["d"], doc["data"]["a"]);
        assert_eq!(json_size(&doc["data"]["a"]), 1026);
        let exactly = serde_json::to_vec(&vec![
            json!({"op": "copy", "from": "/data/a", "path": "/data/c"});
            MAX_JSON_PATCH_COPY_BYTES / 1026
        ])
        .expect("json");
        assert!(json_patch(&doc, &exactly).is_ok(), "the limit itself is allowed");
    }

    #[test]
    fn json_patch_cannot_nest_past_the_body_limit() {
        let deep = (0..100).fold(json!(1), |v, _| json!([v]));
        let doc = json!({"a": deep});
        let ok = br#"[{"op":"copy","from":"/a/0","path":"/b"}]"#;
        assert!(json_patch(&doc, ok).is_ok());
        // Copying the deep value into its own depths would nest past the limit.
        let patch = br#"[{"op":"copy","from":"/a","path":"/a/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0"}]"#;
        let e = json_patch(&doc, patch).expect_err("too deep");
        assert_eq!((e.code, e.reason), (422, crate::status::Reason::Invalid));
        assert_eq!(depth_of(&json!([[], {"a": [1]}])), 3);
        assert_eq!(depth_of(&json!("x")), 0);
    }

    #[test]
    fn over_deep_patch_bodies_are_refused_before_parsing() {
        let doc = json!({"a": 1});
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = json_patch(&doc, deep.as_bytes()).expect_err("deep json patch");
        assert_eq!((e.code, e.message.as_str()), (400, "invalid character '[' exceeded max depth"));
        let deep = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let e = merge_patch(&doc, deep.as_bytes()).expect_err("deep merge patch");
        assert_eq!((e.code, e.message.as_str()), (400, "Invalid JSON Patch"));
    }

    #[test]
    fn merge_patch_merges_and_deletes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}});
        let out =
            merge_patch(&doc, br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"list":[3]}}"#).expect("applies");
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [3]}}));
        for bad in [&b"{"[..], b"[1]", b"null", b"3", b""] {
            let e = merge_patch(&doc, bad).expect_err("malformed");
            assert_eq!((e.code, e.reason), (400, crate::status::Reason::BadRequest));
        }
    }
}
