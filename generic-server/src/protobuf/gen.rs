//! Generator of `schema.txt`, the field table the conversion layer runs on.
//!
//! It reads two crates' sources from the local Cargo registry:
//! - k8s-pb (prost code generated from upstream's generated.proto files): every
//!   message, its fields' tags, wire types, cardinality and nested message types,
//!   and the apiVersion of each module (from its `Resource` impls);
//! - k8s-openapi (the same types as serde structs): the JSON name of every field
//!   (prost snake-cases proto names, which are the JSON names, so they cannot be
//!   recovered from k8s-pb alone: `volume_id` is `volumeID`, `cluster_i_ps` is
//!   `clusterIPs`) and whether a field is required (not an `Option`).
//!
//! Messages are matched to definitions by full name (`api.core.v1.Pod` and
//! `io.k8s.api.core.v1.Pod`), else by type name in the newest version of the same
//! group (for API versions k8s-openapi no longer has). Fields are matched by name
//! with case, `_`, `-` and `$` ignored; embedded Go structs (`json:",inline"`,
//! such as Volume's VolumeSource) are recognised as message fields the parent's
//! definition lacks while having the child's fields. A field with no k8s-openapi
//! counterpart (newer than the k8s-openapi feature in use) takes the first word
//! of its doc comment when that word is the field's name (upstream comments start
//! with the JSON or Go name), else lowerCamelCase.
//!
//! Only std is used, so the generator runs inside the ordinary test binary:
//! `tests::schema_table_is_up_to_date` regenerates and compares, and rewrites the
//! file when `REGENERATE_PROTOBUF_SCHEMA=1`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The k8s-openapi feature (Kubernetes version) the workspace enables.
pub const OPENAPI_VERSION_MODULE: &str = "v1_33";

/// Modules of k8s-pb that are not part of any served API.
const SKIPPED_MODULES: &[&str] = &["apimachinery.pkg.apis.testapigroup", "metrics."];

fn normalize(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Upstream comments sometimes start with the Go field name: `ShareID`,
/// `HostnameOverride`, `URL`. Their JSON names lower-case the leading capitals
/// (all but the last when a lower-case letter follows): `shareID`, `url`, `ipFamilies`.
fn go_to_json_name(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let lead = chars.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let lower_upto = if lead == chars.len() || lead <= 1 { lead } else { lead - 1 };
    chars.iter().enumerate().map(|(i, c)| if i < lower_upto { c.to_ascii_lowercase() } else { *c }).collect()
}

#[derive(Debug, Clone)]
struct PbField {
    rust_name: String,
    tag: u32,
    /// string, bytes, int32, int64, bool, double, message
    ty: String,
    /// opt, rep, map
    card: &'static str,
    /// Message type path resolved to a dotted full name (for message fields and map values).
    msg: Option<String>,
    doc_first_word: Option<String>,
}

#[derive(Debug, Default)]
struct PbMessage {
    fields: Vec<PbField>,
}

/// Finds a crate's source directory in the local registry, by the version the
/// workspace's Cargo.lock pins.
pub fn locate_crate(cargo_lock: &Path, name: &str) -> Option<PathBuf> {
    let lock = std::fs::read_to_string(cargo_lock).ok()?;
    let mut version = None;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let v = lines.next()?.trim().strip_prefix("version = \"")?.trim_end_matches('"').to_string();
            version = Some(v);
            break;
        }
    }
    let version = version?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    for entry in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        let dir = entry.path().join(format!("{name}-{version}"));
        if dir.join("src").is_dir() {
            return Some(dir);
        }
    }
    None
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Resolves a Rust type path used in module `module` (dotted) to a dotted full name.
fn resolve_path(module: &str, path: &str) -> String {
    let mut base: Vec<&str> = if module.is_empty() { vec![] } else { module.split('.').collect() };
    let mut rest = path;
    if let Some(r) = rest.strip_prefix("crate::") {
        base.clear();
        rest = r;
    }
    while let Some(r) = rest.strip_prefix("super::") {
        base.pop();
        rest = r;
    }
    let mut parts: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    parts.extend(rest.split("::").map(|s| s.to_string()));
    parts.join(".")
}

/// The innermost user type of a prost field type (the message or map value type).
fn inner_type(ty: &str) -> String {
    let mut t: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(i) = t.find("BTreeMap<") {
        // BTreeMap<K,V>: take V
        let inner = &t[i + "BTreeMap<".len()..];
        let mut depth = 0;
        let mut split = None;
        for (j, c) in inner.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                ',' if depth == 0 => {
                    split = Some(j);
                    break;
                }
                _ => {}
            }
        }
        if let Some(j) = split {
            t = inner[j + 1..].to_string();
        }
    }
    loop {
        let before = t.len();
        for prefix in ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"] {
            if let Some(r) = t.strip_prefix(prefix) {
                t = r.to_string();
            }
        }
        if t.len() == before {
            break;
        }
    }
    t.trim_end_matches([',', '>']).to_string()
}

fn parse_prost_attr(attr: &str) -> Option<(String, &'static str, u32)> {
    // attr: the text inside #[prost( ... )]
    let tag: u32 = attr.split("tag = \"").nth(1)?.split('"').next()?.parse().ok()?;
    if let Some(m) = attr.strip_prefix("btree_map = \"").or_else(|| attr.strip_prefix("map = \"")) {
        let kv = m.split('"').next()?;
        let mut it = kv.split(',').map(|s| s.trim());
        let key = it.next()?;
        let val = it.next()?;
        if key != "string" {
            return None;
        }
        return Some((val.to_string(), "map", tag));
    }
    let mut parts = attr.split(',').map(|s| s.trim());
    let first = parts.next()?;
    let ty = if first.starts_with("bytes") { "bytes".to_string() } else { first.to_string() };
    let card = if attr.contains(" repeated") || attr.contains(",repeated") { "rep" } else { "opt" };
    Some((ty, card, tag))
}

fn parse_k8s_pb(root: &Path) -> (BTreeMap<String, PbMessage>, BTreeMap<String, String>) {
    let src = root.join("src");
    let mut files = vec![];
    walk(&src, &mut files);
    let mut messages = BTreeMap::new();
    let mut module_versions = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let mut comps: Vec<String> = rel.iter().map(|c| c.to_string_lossy().to_string()).collect();
        comps.pop(); // mod.rs / lib.rs
        let module = comps.join(".");
        if SKIPPED_MODULES.iter().any(|s| module.starts_with(s)) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        let mut current: Option<(String, PbMessage)> = None;
        let mut pending_attr: Option<String> = None;
        let mut doc_first: Option<String> = None;
        while i < lines.len() {
            let line = lines[i];
            let t = line.trim();
            if let Some(name) = t.strip_prefix("pub struct ").and_then(|r| r.strip_suffix(" {")) {
                current = Some((name.to_string(), PbMessage::default()));
                doc_first = None;
            } else if t == "}" && line.starts_with('}') {
                if let Some((name, msg)) = current.take() {
                    messages.insert(format!("{module}.{name}"), msg);
                }
            } else if current.is_some() && t.starts_with("///") {
                if doc_first.is_none() {
                    let w = t.trim_start_matches('/').split_whitespace().next().unwrap_or("");
                    doc_first = Some(w.trim_matches(['`', ',', '.', ':']).to_string());
                }
            } else if let Some(a) = t.strip_prefix("#[prost(").and_then(|r| r.strip_suffix(")]")) {
                pending_attr = Some(a.to_string());
            } else if let (Some(attr), Some(decl)) = (pending_attr.as_ref(), t.strip_prefix("pub ")) {
                // Gather the declaration until generics close and it ends with ','.
                let mut decl = decl.to_string();
                let depth = |s: &str| s.matches('<').count() as i64 - s.matches('>').count() as i64;
                while !(depth(&decl) == 0 && decl.ends_with(',')) && i + 1 < lines.len() {
                    i += 1;
                    decl.push_str(lines[i].trim());
                }
                if let (Some((name, ty)), Some((pty, card, tag))) = (decl.split_once(':'), parse_prost_attr(attr)) {
                    let rust_name = name.trim().trim_start_matches("r#").to_string();
                    let msg = if pty == "message" { Some(resolve_path(&module, &inner_type(ty))) } else { None };
                    if let Some((_, m)) = current.as_mut() {
                        m.fields.push(PbField { rust_name, tag, ty: pty, card, msg, doc_first_word: doc_first.take() });
                    }
                }
                pending_attr = None;
                doc_first = None;
            } else if let Some(v) = t.strip_prefix("const API_VERSION: &'static str = \"") {
                let v = v.trim_end_matches("\";");
                module_versions.entry(module.clone()).or_insert_with(|| v.to_string());
            }
            i += 1;
        }
    }
    (messages, module_versions)
}

#[derive(Debug, Default)]
struct OaType {
    /// normalized json name -> (json name, required)
    fields: HashMap<String, (String, bool)>,
}

fn parse_k8s_openapi(root: &Path) -> HashMap<String, OaType> {
    let src = root.join("src").join(OPENAPI_VERSION_MODULE);
    let mut files = vec![];
    walk(&src, &mut files);
    let mut out = HashMap::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Some(def) = text.lines().next().and_then(|l| l.strip_prefix("// Generated from definition ")) else {
            continue;
        };
        // struct fields: rust name -> required
        let mut required: HashMap<String, bool> = HashMap::new();
        let mut in_struct = false;
        for line in text.lines() {
            if line.starts_with("pub struct ") && line.ends_with('{') {
                in_struct = true;
                continue;
            }
            if in_struct {
                if line.starts_with('}') {
                    break;
                }
                if let Some((name, ty)) = line.trim().strip_prefix("pub ").and_then(|d| d.split_once(": ")) {
                    required.insert(name.trim_start_matches("r#").to_string(), !ty.starts_with("Option<"));
                }
            }
        }
        let mut ty = OaType::default();
        for line in text.lines() {
            let t = line.trim();
            if let Some((json, rest)) = t.strip_prefix('"').and_then(|r| r.split_once("\" => Field::Key_")) {
                let rust = rest.trim_end_matches(',');
                let req = required.get(rust).copied().unwrap_or(false);
                ty.fields.insert(normalize(json), (json.to_string(), req));
            }
        }
        out.insert(normalize(def), ty);
    }
    out
}

/// Splits a trailing API version (v1, v2beta1, v1alpha3) off a normalized
/// definition prefix; returns the rest and a priority (GA > beta > alpha, then
/// higher numbers).
/// A candidate definition's rank: same group, then version priority.
type Rank = (bool, (u32, u32, u32));

fn split_version_suffix(head: &str) -> Option<(&str, (u32, u32, u32))> {
    let digits = |s: &str| s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let n = digits(head);
    let base = &head[..head.len() - n];
    let pre = base.strip_suffix("alpha").map(|r| (1, r)).or_else(|| base.strip_suffix("beta").map(|r| (2, r)));
    let (stage, minor, rest) = match pre {
        Some((stage, r)) if n > 0 => (stage, head[base.len()..].parse().ok()?, r),
        _ => (3, 0, head),
    };
    let m = digits(rest);
    if m == 0 {
        return None;
    }
    let major = rest[rest.len() - m..].parse().ok()?;
    let group = rest[..rest.len() - m].strip_suffix('v')?;
    Some((group, (major, stage, minor)))
}

/// How many of `child`'s fields (expanding, `depth` levels deep, message fields the
/// definition lacks, which may be inline themselves) the definition `d` has.
fn coverage(messages: &BTreeMap<String, PbMessage>, child: &str, d: &OaType, depth: u32) -> (usize, usize) {
    let (mut found, mut total) = (0, 0);
    for c in messages.get(child).map(|m| &m.fields[..]).unwrap_or(&[]) {
        if d.fields.contains_key(&normalize(&c.rust_name)) {
            found += 1;
            total += 1;
        } else if let (Some(m), true) = (&c.msg, depth > 0) {
            let (f, t) = coverage(messages, m, d, depth - 1);
            found += f;
            total += t.max(1);
        } else {
            total += 1;
        }
    }
    (found, total)
}

fn type_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

/// Builds the schema text. Returns it plus a list of notes (fields whose JSON
/// names were guessed) for review.
pub fn generate(k8s_pb: &Path, k8s_openapi: &Path) -> (String, Vec<String>) {
    let (messages, module_versions) = parse_k8s_pb(k8s_pb);
    let oa = parse_k8s_openapi(k8s_openapi);
    let own_def = |name: &str| -> Option<&OaType> { oa.get(&normalize(&format!("io.k8s.{name}"))) };
    let similar_def = |name: &str| -> Option<&OaType> {
        // The same type name in the newest version of the same group, else of any group.
        let tn = normalize(type_name(name));
        let group = name.rsplitn(3, '.').nth(2).map(normalize).unwrap_or_default();
        let mut best: Option<(Rank, &String, &OaType)> = None;
        for (k, v) in &oa {
            let Some(head) = k.strip_suffix(&tn) else { continue };
            let Some((prefix, prio)) = split_version_suffix(head) else { continue };
            let rank = (prefix.ends_with(&group), prio);
            let better = match &best {
                None => true,
                Some((br, bk, _)) => rank > *br || (rank == *br && k < *bk),
            };
            if better {
                best = Some((rank, k, v));
            }
        }
        best.map(|(_, _, v)| v)
    };
    let def_for = |name: &str| -> Option<&OaType> { own_def(name).or_else(|| similar_def(name)) };

    // Inline (embedded, `json:",inline"`) message fields: their fields appear in the
    // parent's JSON object. A message field is inline when the parent's definition
    // lacks it but has (nearly) all of the child's fields. The child's fields are
    // then named from the parent's definition (VolumeSource has none of its own).
    let mut inline: HashMap<(String, u32), bool> = HashMap::new();
    // child message -> parent definitions that name its fields
    let mut extra_defs: HashMap<String, Vec<&OaType>> = HashMap::new();
    for pass in 0..2 {
        for (name, msg) in &messages {
            let mut defs: Vec<&OaType> = def_for(name).into_iter().collect();
            if pass == 1 {
                defs.extend(extra_defs.get(name).into_iter().flatten().copied());
            }
            for f in &msg.fields {
                let (Some(child), "opt") = (&f.msg, f.card) else { continue };
                let nf = normalize(&f.rust_name);
                if defs.is_empty() || defs.iter().any(|d| d.fields.contains_key(&nf)) {
                    continue;
                }
                let covered = |d: &OaType| {
                    let (found, total) = coverage(&messages, child, d, 3);
                    total > 0 && found * 4 >= total * 3
                };
                if let Some(d) = defs.iter().find(|d| covered(d)) {
                    if inline.insert((name.clone(), f.tag), true).is_none() {
                        extra_defs.entry(child.clone()).or_default().push(d);
                    }
                }
            }
        }
    }

    let mut notes = vec![];
    let mut out = String::new();
    out.push_str(
        "# Generated by generic-server/src/protobuf/gen.rs from the k8s-pb and k8s-openapi sources; do not edit.\n",
    );
    out.push_str("# G <apiVersion> <module>: the messages of <module> are the kinds of <apiVersion>\n");
    out.push_str("# M <message>; F <tag> <jsonName> <type> <opt|rep|map> [<message type>] [req] [inline]\n");
    for (module, version) in &module_versions {
        let _ = writeln!(out, "G {version} {module}");
    }
    for (name, msg) in &messages {
        let _ = writeln!(out, "M {name}");
        let mut defs: Vec<&OaType> = def_for(name).into_iter().collect();
        defs.extend(extra_defs.get(name).into_iter().flatten().copied());
        let mut fields = msg.fields.clone();
        fields.sort_by_key(|f| f.tag);
        for f in fields {
            let nf = normalize(&f.rust_name);
            let is_inline = inline.contains_key(&(name.clone(), f.tag));
            let (json, req) = match defs.iter().find_map(|d| d.fields.get(&nf)) {
                Some((j, r)) => (j.clone(), *r),
                None => {
                    let guess = match &f.doc_first_word {
                        Some(w) if normalize(w) == nf => go_to_json_name(w),
                        _ => lower_camel(&f.rust_name),
                    };
                    if !is_inline {
                        notes.push(format!(
                            "{name}.{} -> {guess}{}",
                            f.rust_name,
                            if defs.is_empty() { " (no type)" } else { "" }
                        ));
                    }
                    (guess, false)
                }
            };
            let _ = write!(out, "F {} {} {} {}", f.tag, json, f.ty, f.card);
            if let Some(m) = &f.msg {
                let _ = write!(out, " {m}");
            }
            if req {
                out.push_str(" req");
            }
            if is_inline {
                out.push_str(" inline");
            }
            out.push('\n');
        }
    }
    (out, notes)
}
