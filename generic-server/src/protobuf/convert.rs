//! The generic conversion between a message's wire bytes and its JSON form,
//! driven by the field table. Errors are plain strings; the public functions in
//! `mod.rs` turn them into Status errors.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{Card, Field, Message, Schema, Special, Ty};
use super::wire::{self, Reader, WireValue};

/// Deepest nesting of messages (and embedded objects) accepted either way.
pub const MAX_DEPTH: u32 = 128;

/// Singular int and IntOrString fields whose zero value means "unset". Go
/// clients always put non-pointer fields on the wire, so an unset `nodePort`
/// arrives as 0; upstream treats that as unset, and so must the JSON form.
/// (Pointer fields such as `replicas` or `gracePeriodSeconds` carry a meaningful
/// 0 and cannot be told apart on the wire, so zeros are kept everywhere else.)
const ZERO_MEANS_UNSET: &[&str] = &[
    "nodePort",
    "hostPort",
    "healthCheckNodePort",
    "targetPort",
    "generation",
    "minReadySeconds",
    "initialDelaySeconds",
    "observedGeneration",
];

/// Singular bools that are plain (not pointer) fields in Go, by message (as
/// the field table names it) and field: Go clients always put them on the wire, so `kubectl create
/// deployment` sends `stdin: false` and `hostNetwork: false`, which upstream
/// drops again under `omitempty`. A pointer bool's false is kept: it differs
/// from unset.
pub(super) const FALSE_MEANS_UNSET: &[(&str, &[&str])] = &[
    ("Container", &["stdin", "stdinOnce", "tty"]),
    ("EphemeralContainerCommon", &["stdin", "stdinOnce", "tty"]),
    ("PodSpec", &["hostNetwork", "hostPID", "hostIPC"]),
    ("VolumeMount", &["readOnly"]),
    ("ServiceSpec", &["publishNotReadyAddresses"]),
    ("NodeSpec", &["unschedulable"]),
    ("DeploymentSpec", &["paused"]),
    ("PriorityClass", &["globalDefault"]),
    ("APIServiceSpec", &["insecureSkipTLSVerify"]),
    ("CustomResourceDefinitionSpec", &["preserveUnknownFields"]),
    ("CustomResourceDefinitionVersion", &["deprecated"]),
    ("TokenReviewStatus", &["authenticated"]),
    ("SubjectAccessReviewStatus", &["denied"]),
    ("IscsiVolumeSource", &["readOnly", "chapAuthDiscovery", "chapAuthSession"]),
    ("IscsiPersistentVolumeSource", &["readOnly", "chapAuthDiscovery", "chapAuthSession"]),
    ("ScaleIoVolumeSource", &["readOnly", "sslEnabled"]),
    ("ScaleIoPersistentVolumeSource", &["readOnly", "sslEnabled"]),
    ("PersistentVolumeClaimVolumeSource", &["readOnly"]),
    ("AwsElasticBlockStoreVolumeSource", &["readOnly"]),
    ("GcePersistentDiskVolumeSource", &["readOnly"]),
    ("NfsVolumeSource", &["readOnly"]),
    ("RbdVolumeSource", &["readOnly"]),
    ("RbdPersistentVolumeSource", &["readOnly"]),
    ("CephFsVolumeSource", &["readOnly"]),
    ("CephFsPersistentVolumeSource", &["readOnly"]),
    ("CinderVolumeSource", &["readOnly"]),
    ("CinderPersistentVolumeSource", &["readOnly"]),
    ("FcVolumeSource", &["readOnly"]),
    ("FlexVolumeSource", &["readOnly"]),
    ("FlexPersistentVolumeSource", &["readOnly"]),
    ("AzureFileVolumeSource", &["readOnly"]),
    ("AzureFilePersistentVolumeSource", &["readOnly"]),
    ("QuobyteVolumeSource", &["readOnly"]),
    ("PortworxVolumeSource", &["readOnly"]),
    ("StorageOsVolumeSource", &["readOnly"]),
    ("StorageOsPersistentVolumeSource", &["readOnly"]),
    ("GlusterfsVolumeSource", &["readOnly"]),
    ("GlusterfsPersistentVolumeSource", &["readOnly"]),
    ("CSIPersistentVolumeSource", &["readOnly"]),
];

/// Singular string fields whose empty value is meaningful (pointer fields where
/// `""` differs from unset). Every other empty singular string is dropped unless
/// required, as Go's `omitempty` would.
const EMPTY_STRING_MEANINGFUL: &[&str] = &["storageClassName"];

type Result<T> = std::result::Result<T, String>;

fn depth_check(depth: u32) -> Result<()> {
    if depth > MAX_DEPTH {
        Err(format!("message nesting exceeds {MAX_DEPTH} levels"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- decoding

/// Decodes message `idx` from `data` into its JSON form. `None` means the value
/// is absent in JSON (a zero Time, an empty RawExtension).
pub fn decode_message(s: &Schema, idx: usize, data: &[u8], depth: u32) -> Result<Option<Value>> {
    depth_check(depth)?;
    let msg = s.messages.get(idx).ok_or("unknown message")?;
    match msg.special {
        Special::None => decode_fields(s, msg, data, depth).map(|m| Some(Value::Object(m))),
        special => decode_special(s, msg, special, data, depth),
    }
}

fn decode_fields(s: &Schema, msg: &Message, data: &[u8], depth: u32) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let (number, value) = r.field()?;
        let Some(field) = msg.field(number) else { continue };
        let ctx = || format!("{}.{}", short_name(msg), field.json);
        match field.card {
            Card::Opt => {
                if field.inline {
                    let Ty::Message(child) = field.ty else { return Err(format!("{}: inline scalar", ctx())) };
                    let bytes = expect_len(&value).map_err(|e| format!("{}: {e}", ctx()))?;
                    if let Some(Value::Object(m)) = decode_message(s, child, bytes, depth + 1)? {
                        out.extend(m);
                    }
                    continue;
                }
                let v = decode_single(s, field.ty, &value, depth).map_err(|e| format!("{}: {e}", ctx()))?;
                match v {
                    Some(v) if keep_singular(msg, field, &v) => merge_into(&mut out, &field.json, v),
                    _ => {
                        out.remove(&field.json);
                    }
                }
            }
            Card::Rep => {
                let items = decode_repeated(s, field.ty, &value, depth).map_err(|e| format!("{}: {e}", ctx()))?;
                let entry = out.entry(field.json.clone()).or_insert_with(|| Value::Array(vec![]));
                if let Value::Array(a) = entry {
                    a.extend(items);
                }
            }
            Card::Map => {
                let bytes = expect_len(&value).map_err(|e| format!("{}: {e}", ctx()))?;
                let (k, v) = decode_map_entry(s, field.ty, bytes, depth).map_err(|e| format!("{}: {e}", ctx()))?;
                let entry = out.entry(field.json.clone()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(k, v);
                }
            }
        }
    }
    Ok(out)
}

fn short_name(msg: &Message) -> &str {
    msg.name.rsplit('.').next().unwrap_or(&msg.name)
}

/// Whether a decoded singular value belongs in the JSON form (see
/// [`ZERO_MEANS_UNSET`], [`FALSE_MEANS_UNSET`] and [`EMPTY_STRING_MEANINGFUL`]).
fn keep_singular(msg: &Message, field: &Field, v: &Value) -> bool {
    match v {
        Value::Bool(false) => {
            let name = short_name(msg);
            !FALSE_MEANS_UNSET.iter().any(|(m, fields)| *m == name && fields.contains(&field.json.as_str()))
        }
        Value::String(st) if st.is_empty() && matches!(field.ty, Ty::String) => {
            field.required || EMPTY_STRING_MEANINGFUL.contains(&field.json.as_str())
        }
        Value::Number(n) if n.as_i64() == Some(0) => !ZERO_MEANS_UNSET.contains(&field.json.as_str()),
        _ => true,
    }
}

/// Proto semantics for a repeated singular message field: merge.
fn merge_into(out: &mut Map<String, Value>, key: &str, v: Value) {
    match (out.get_mut(key), v) {
        (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
        (_, v) => {
            out.insert(key.to_string(), v);
        }
    }
}

fn expect_len<'a>(v: &WireValue<'a>) -> Result<&'a [u8]> {
    match v {
        WireValue::Len(b) => Ok(b),
        _ => Err("expected a length-delimited field".into()),
    }
}

fn expect_varint(v: &WireValue<'_>) -> Result<u64> {
    match v {
        WireValue::Varint(x) => Ok(*x),
        _ => Err("expected a varint field".into()),
    }
}

fn double_to_json(f: f64) -> Result<Value> {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f).map(Value::Number).ok_or_else(|| "non-finite double".to_string())
}

fn decode_single(s: &Schema, ty: Ty, v: &WireValue<'_>, depth: u32) -> Result<Option<Value>> {
    Ok(Some(match ty {
        Ty::String => {
            let b = expect_len(v)?;
            Value::String(std::str::from_utf8(b).map_err(|_| "string is not valid UTF-8")?.to_string())
        }
        Ty::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(expect_len(v)?)),
        Ty::Int32 => Value::Number(Number::from(expect_varint(v)? as i64 as i32)),
        Ty::Int64 => Value::Number(Number::from(expect_varint(v)? as i64)),
        Ty::Bool => Value::Bool(expect_varint(v)? != 0),
        Ty::Double => match v {
            WireValue::I64(b) => double_to_json(f64::from_le_bytes(*b))?,
            _ => return Err("expected a 64-bit field".into()),
        },
        Ty::Message(child) => return decode_message(s, child, expect_len(v)?, depth + 1),
    }))
}

fn decode_repeated(s: &Schema, ty: Ty, v: &WireValue<'_>, depth: u32) -> Result<Vec<Value>> {
    // Packed encoding of numeric fields: a length-delimited run of values.
    if let (WireValue::Len(b), Ty::Int32 | Ty::Int64 | Ty::Bool | Ty::Double) = (v, ty) {
        let mut out = vec![];
        let mut r = Reader::new(b);
        while !r.is_empty() {
            let item = if ty == Ty::Double { WireValue::I64(r.fixed64()?) } else { WireValue::Varint(r.varint()?) };
            out.extend(decode_single(s, ty, &item, depth)?);
        }
        return Ok(out);
    }
    // An absent element (an empty Time) still takes its place in a list.
    Ok(vec![decode_single(s, ty, v, depth)?.unwrap_or(Value::Null)])
}

fn decode_map_entry(s: &Schema, ty: Ty, data: &[u8], depth: u32) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut r = Reader::new(data);
    while !r.is_empty() {
        match r.field()? {
            (1, WireValue::Len(b)) => {
                key = std::str::from_utf8(b).map_err(|_| "map key is not valid UTF-8")?.to_string()
            }
            (1, _) => return Err("map key must be a string".into()),
            (2, v) => value = decode_single(s, ty, &v, depth)?,
            _ => {}
        }
    }
    let value = match value {
        Some(v) => v,
        // An absent value is the type's zero value.
        None => match ty {
            Ty::String | Ty::Bytes => Value::String(String::new()),
            Ty::Message(child) => decode_message(s, child, &[], depth + 1)?.unwrap_or(Value::Null),
            Ty::Bool => Value::Bool(false),
            Ty::Int32 | Ty::Int64 | Ty::Double => Value::Number(Number::from(0)),
        },
    };
    Ok((key, value))
}

/// The fields of a small fixed message, by number.
fn raw_fields(data: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>> {
    let mut r = Reader::new(data);
    let mut out = vec![];
    while !r.is_empty() {
        out.push(r.field()?);
    }
    Ok(out)
}

fn last_varint(fields: &[(u32, WireValue<'_>)], n: u32) -> Result<Option<u64>> {
    let mut out = None;
    for (num, v) in fields {
        if *num == n {
            out = Some(expect_varint(v)?);
        }
    }
    Ok(out)
}

fn last_bytes<'a>(fields: &[(u32, WireValue<'a>)], n: u32) -> Result<Option<&'a [u8]>> {
    let mut out = None;
    for (num, v) in fields {
        if *num == n {
            out = Some(expect_len(v)?);
        }
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String> {
    Ok(std::str::from_utf8(b).map_err(|_| "string is not valid UTF-8")?.to_string())
}

fn decode_special(s: &Schema, msg: &Message, special: Special, data: &[u8], depth: u32) -> Result<Option<Value>> {
    let fields = raw_fields(data)?;
    Ok(match special {
        Special::None => None,
        Special::Time | Special::MicroTime => {
            // A zero time is marshalled as an empty message and is null in JSON.
            if data.is_empty() {
                return Ok(None);
            }
            let secs = last_varint(&fields, 1)?.unwrap_or(0) as i64;
            let nanos = last_varint(&fields, 2)?.unwrap_or(0) as i64 as i32;
            Some(Value::String(format_time(secs, nanos, special == Special::MicroTime)?))
        }
        Special::Duration => Some(Value::String(format_duration(last_varint(&fields, 1)?.unwrap_or(0) as i64))),
        Special::Quantity => {
            let q = last_bytes(&fields, 1)?.map(utf8).transpose()?.unwrap_or_default();
            Some(Value::String(if q.is_empty() { "0".into() } else { q }))
        }
        Special::IntOrString => {
            let ty = last_varint(&fields, 1)?.unwrap_or(0);
            if ty == 1 {
                Some(Value::String(last_bytes(&fields, 3)?.map(utf8).transpose()?.unwrap_or_default()))
            } else {
                Some(Value::Number(Number::from(last_varint(&fields, 2)?.unwrap_or(0) as i64 as i32)))
            }
        }
        Special::RawJson => match last_bytes(&fields, 1)? {
            None => None,
            Some([]) => None,
            Some(raw) => Some(decode_raw_object(s, raw, depth)?),
        },
        Special::StringList => {
            let mut items = vec![];
            for (num, v) in &fields {
                if *num == 1 {
                    items.push(Value::String(utf8(expect_len(v)?)?));
                }
            }
            Some(Value::Array(items))
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            let schema_msg = schema_props_index(s, msg)?;
            let mut schema = None;
            let mut list = vec![];
            let mut allows = false;
            for (num, v) in &fields {
                match (special, *num) {
                    (Special::SchemaOrArray, 1) | (Special::SchemaOrStringArray, 1) | (Special::SchemaOrBool, 2) => {
                        schema = decode_message(s, schema_msg, expect_len(v)?, depth + 1)?;
                    }
                    (Special::SchemaOrArray, 2) => {
                        list.extend(decode_message(s, schema_msg, expect_len(v)?, depth + 1)?);
                    }
                    (Special::SchemaOrStringArray, 2) => list.push(Value::String(utf8(expect_len(v)?)?)),
                    (Special::SchemaOrBool, 1) => allows = expect_varint(v)? != 0,
                    _ => {}
                }
            }
            match special {
                Special::SchemaOrBool => Some(schema.unwrap_or(Value::Bool(allows))),
                _ if !list.is_empty() => Some(Value::Array(list)),
                _ => schema,
            }
        }
    })
}

/// JSONSchemaProps of the same apiextensions version as the union message.
fn schema_props_index(s: &Schema, msg: &Message) -> Result<usize> {
    let module = msg.name.rsplit_once('.').map_or("", |(m, _)| m);
    s.by_name.get(&format!("{module}.JsonSchemaProps")).copied().ok_or_else(|| "JSONSchemaProps not in schema".into())
}

/// An embedded object: JSON, or (in watch events and some clients) a nested
/// protobuf envelope.
fn decode_raw_object(s: &Schema, raw: &[u8], depth: u32) -> Result<Value> {
    if raw.starts_with(super::MAGIC) {
        return super::decode_envelope(s, raw, depth + 1);
    }
    serde_json::from_slice(raw).map_err(|e| format!("embedded object is not JSON: {e}"))
}

fn format_time(secs: i64, nanos: i32, micro: bool) -> Result<String> {
    let nanos = if micro { u32::try_from(nanos).unwrap_or(0).min(999_999_999) } else { 0 };
    let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or("timestamp out of range")?;
    Ok(if micro { t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string() } else { t.format("%Y-%m-%dT%H:%M:%SZ").to_string() })
}

pub use crate::duration::{format_duration, parse_duration};

// ---------------------------------------------------------------- encoding

/// Encodes the JSON form of message `idx`. Returns `None` when the value is
/// absent on the wire (JSON null for a Time).
pub fn encode_message(s: &Schema, idx: usize, v: &Value, depth: u32) -> Result<Option<Vec<u8>>> {
    depth_check(depth)?;
    let msg = s.messages.get(idx).ok_or("unknown message")?;
    if msg.special != Special::None {
        return encode_special(s, msg, v, depth);
    }
    let Value::Object(obj) = v else {
        return Err(format!("{}: expected an object", short_name(msg)));
    };
    let mut out = vec![];
    encode_fields(s, msg, obj, depth, &mut out)?;
    Ok(Some(out))
}

fn encode_fields(s: &Schema, msg: &Message, obj: &Map<String, Value>, depth: u32, out: &mut Vec<u8>) -> Result<()> {
    for field in &msg.fields {
        let ctx = |e: String| format!("{}.{}: {e}", short_name(msg), field.json);
        if field.inline {
            if let Ty::Message(child) = field.ty {
                let child_msg = s.messages.get(child).ok_or("unknown message")?;
                depth_check(depth + 1)?;
                let mut buf = vec![];
                encode_fields(s, child_msg, obj, depth + 1, &mut buf).map_err(ctx)?;
                wire::put_len(out, field.tag, &buf);
            }
            continue;
        }
        let Some(v) = obj.get(&field.json) else { continue };
        if v.is_null() {
            continue;
        }
        match field.card {
            Card::Opt => encode_single(s, field.tag, field.ty, v, depth, out).map_err(ctx)?,
            Card::Rep => {
                let Value::Array(items) = v else { return Err(ctx("expected an array".into())) };
                for item in items {
                    if item.is_null() && matches!(field.ty, Ty::Message(_)) {
                        wire::put_len(out, field.tag, &[]);
                        continue;
                    }
                    encode_single(s, field.tag, field.ty, item, depth, out).map_err(ctx)?;
                }
            }
            Card::Map => {
                let Value::Object(m) = v else { return Err(ctx("expected an object".into())) };
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    let mut entry = vec![];
                    wire::put_len(&mut entry, 1, k.as_bytes());
                    let val = &m[k];
                    if !val.is_null() {
                        encode_single(s, 2, field.ty, val, depth, &mut entry).map_err(ctx)?;
                    }
                    wire::put_len(out, field.tag, &entry);
                }
            }
        }
    }
    Ok(())
}

fn json_i64(v: &Value) -> Result<i64> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18) {
                Ok(f as i64)
            } else {
                Err(format!("expected an integer, got {n}"))
            }
        }
        other => Err(format!("expected an integer, got {other}")),
    }
}

fn encode_single(s: &Schema, tag: u32, ty: Ty, v: &Value, depth: u32, out: &mut Vec<u8>) -> Result<()> {
    match ty {
        Ty::String => match v {
            Value::String(st) => wire::put_len(out, tag, st.as_bytes()),
            other => return Err(format!("expected a string, got {other}")),
        },
        Ty::Bytes => {
            let Value::String(st) = v else { return Err("expected a base64 string".into()) };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(st)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(st))
                .map_err(|e| format!("invalid base64: {e}"))?;
            wire::put_len(out, tag, &bytes);
        }
        Ty::Int32 => {
            let i = json_i64(v)?;
            let i = i32::try_from(i).map_err(|_| format!("{i} does not fit in int32"))?;
            wire::put_varint_field(out, tag, i64::from(i) as u64);
        }
        Ty::Int64 => wire::put_varint_field(out, tag, json_i64(v)? as u64),
        Ty::Bool => match v {
            Value::Bool(b) => wire::put_varint_field(out, tag, u64::from(*b)),
            other => return Err(format!("expected a boolean, got {other}")),
        },
        Ty::Double => {
            let f = v.as_f64().ok_or_else(|| format!("expected a number, got {v}"))?;
            wire::put_key(out, tag, wire::I64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Ty::Message(child) => {
            if let Some(bytes) = encode_message(s, child, v, depth + 1)? {
                wire::put_len(out, tag, &bytes);
            }
        }
    }
    Ok(())
}

fn encode_special(s: &Schema, msg: &Message, v: &Value, depth: u32) -> Result<Option<Vec<u8>>> {
    let mut out = vec![];
    match msg.special {
        Special::None => return Ok(None),
        Special::Time | Special::MicroTime => {
            let Value::String(st) = v else { return Err("expected an RFC 3339 time string".into()) };
            if st.is_empty() {
                return Ok(None);
            }
            let t = chrono::DateTime::parse_from_rfc3339(st).map_err(|e| format!("invalid time {st:?}: {e}"))?;
            wire::put_varint_field(&mut out, 1, t.timestamp() as u64);
            let nanos = if msg.special == Special::MicroTime { t.timestamp_subsec_micros() * 1000 } else { 0 };
            wire::put_varint_field(&mut out, 2, u64::from(nanos));
        }
        Special::Duration => {
            let Value::String(st) = v else { return Err("expected a duration string".into()) };
            wire::put_varint_field(&mut out, 1, parse_duration(st)? as u64);
        }
        Special::Quantity => {
            let q = match v {
                Value::String(st) => st.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(format!("expected a quantity, got {other}")),
            };
            wire::put_len(&mut out, 1, q.as_bytes());
        }
        Special::IntOrString => match v {
            Value::String(st) => {
                wire::put_varint_field(&mut out, 1, 1);
                wire::put_varint_field(&mut out, 2, 0);
                wire::put_len(&mut out, 3, st.as_bytes());
            }
            Value::Number(_) => {
                let i = json_i64(v)?;
                let i = i32::try_from(i).map_err(|_| format!("{i} does not fit in int32"))?;
                wire::put_varint_field(&mut out, 1, 0);
                wire::put_varint_field(&mut out, 2, i64::from(i) as u64);
                wire::put_len(&mut out, 3, &[]);
            }
            other => return Err(format!("expected an int or string, got {other}")),
        },
        Special::RawJson => {
            let raw = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            wire::put_len(&mut out, 1, &raw);
        }
        Special::StringList => {
            let Value::Array(items) = v else { return Err("expected an array of strings".into()) };
            for item in items {
                encode_single(s, 1, Ty::String, item, depth, &mut out)?;
            }
        }
        Special::SchemaOrArray => {
            let props = schema_props_index(s, msg)?;
            match v {
                Value::Array(items) => {
                    for item in items {
                        encode_single(s, 2, Ty::Message(props), item, depth, &mut out)?;
                    }
                }
                other => encode_single(s, 1, Ty::Message(props), other, depth, &mut out)?,
            }
        }
        Special::SchemaOrBool => {
            let props = schema_props_index(s, msg)?;
            match v {
                Value::Bool(b) => wire::put_varint_field(&mut out, 1, u64::from(*b)),
                other => {
                    wire::put_varint_field(&mut out, 1, 1);
                    encode_single(s, 2, Ty::Message(props), other, depth, &mut out)?;
                }
            }
        }
        Special::SchemaOrStringArray => {
            let props = schema_props_index(s, msg)?;
            match v {
                Value::Array(items) => {
                    for item in items {
                        encode_single(s, 2, Ty::String, item, depth, &mut out)?;
                    }
                }
                other => encode_single(s, 1, Ty::Message(props), other, depth, &mut out)?,
            }
        }
    }
    Ok(Some(out))
}
