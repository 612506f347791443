//! Writing results in the form the client negotiated: JSON, YAML, protobuf,
//! Table or PartialObjectMetadata.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::body;
use crate::handler::{Request, Response};
use crate::negotiation::{self, Offer, Output};
use crate::registry::store::ObjectList;
use crate::registry::{CachedObject, ReadOnly, Store, TableColumn};
use crate::request_info::query_param;
use crate::status::StatusError;
use crate::wire;

fn accept(req: &Request) -> Option<&str> {
    req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// A Warning header as upstream writes one (RFC 7234 code 299, no agent).
pub fn warning_header(text: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(&format!("299 - {text:?}")).ok()
}

/// Serializes `value` in the negotiated form. JSON is written as upstream's
/// serializer writes it ([`crate::wire`]); the caller has put the value in
/// its wire order. A value with no protobuf form is answered in JSON.
/// Warnings travel in the request's notes, which the filter chain writes.
pub fn respond(req: &Request, code: u16, value: &Value, output: &Output) -> Response {
    let (ct, bytes) = match output {
        // Upstream writes YAML from a generic map: every key sorted.
        Output::Yaml => match serde_yaml::to_string(&wire::sorted(value.clone())) {
            Ok(s) => (Ok(http::HeaderValue::from_static("application/yaml")), s.into_bytes()),
            Err(e) => return StatusError::internal(e).into_response(),
        },
        Output::Table(_) | Output::PartialObjectMetadata(_) => {
            let ct = accept(req).and_then(first_json_param_form).map_or(Ok(json()), http::HeaderValue::try_from);
            (ct, wire::json(value))
        }
        Output::AggregatedDiscovery(v) => {
            let ct = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
            (http::HeaderValue::try_from(ct), wire::json(value))
        }
        Output::Protobuf => match crate::protobuf::encode(value) {
            Ok(pb) => (Ok(protobuf()), pb),
            Err(_) => (Ok(json()), wire::json(value)),
        },
        Output::Json => (Ok(json()), wire::json(value)),
    };
    match ct {
        Ok(ct) => respond_bytes(code, ct, bytes),
        Err(e) => StatusError::internal(e).into_response(),
    }
}

/// A body already encoded.
fn respond_bytes(code: u16, content_type: http::HeaderValue, bytes: impl Into<Bytes>) -> Response {
    let mut resp = http::Response::new(body::full(bytes));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
    resp
}

fn json() -> http::HeaderValue {
    http::HeaderValue::from_static("application/json")
}

fn protobuf() -> http::HeaderValue {
    http::HeaderValue::from_static("application/vnd.kubernetes.protobuf")
}

/// The content type to answer a Table/PartialObjectMetadata request with: the
/// Accept entry that asked for it.
fn first_json_param_form(accept: &str) -> Option<String> {
    negotiation::parse_accept(accept).into_iter().find(|m| m.param("as").is_some()).map(|m| {
        let mut s = "application/json".to_string();
        for (k, v) in &m.params {
            s.push_str(&format!(";{k}={v}"));
        }
        s
    })
}

/// The form to write a value that has no table form in: what the client
/// asked for, JSON when it asked for nothing this can write.
pub(crate) fn negotiated_or_json(req: &Request) -> Output {
    negotiation::negotiate(accept(req), false, false).unwrap_or(Output::Json)
}

/// A typed value that has no table form (Status, Scale, discovery).
pub fn respond_value(req: &Request, code: u16, value: &Value) -> Response {
    respond(req, code, &wire::typed(value.clone()), &negotiated_or_json(req))
}

/// Writes objects of one Store's resource, which may be asked for as a Table.
pub struct Responder<'a> {
    pub store: Arc<Store>,
    pub req: &'a Request,
}

impl Responder<'_> {
    fn output(&self) -> Result<Output, StatusError> {
        negotiate_objects(self.req, &self.store)
    }

    fn include_object(&self) -> String {
        query_param(self.req.uri().query(), "includeObject").unwrap_or_else(|| "Metadata".into())
    }

    pub fn object(&self, code: u16, obj: Value) -> Response {
        match self.output() {
            Ok(Output::Table(v)) => {
                let table = self.table(&v, std::slice::from_ref(&obj), Map::new());
                respond(self.req, code, &table, &Output::Table(v))
            }
            Ok(Output::PartialObjectMetadata(v)) => {
                respond(self.req, code, &partial(&v, &obj), &Output::PartialObjectMetadata(v))
            }
            Ok(o) => respond(self.req, code, &wire_object(&self.store, obj), &o),
            Err(e) => e.into_response(),
        }
    }

    /// The answer to a write: its JSON is the bytes the Store wrote when it
    /// kept them, other forms are made from the object.
    pub fn written(&self, code: u16, r: crate::registry::store::WriteResult) -> Response {
        match (self.output(), r.encoded) {
            (Ok(Output::Json), Some(encoded)) => respond_bytes(code, json(), encoded.json()),
            _ => self.object(code, r.object),
        }
    }

    /// An object read from the Store, written from the encodings it shares
    /// with every other reader and watcher when JSON or protobuf is asked.
    pub fn cached(&self, code: u16, obj: &CachedObject) -> Response {
        match self.output() {
            Ok(Output::Json) => respond_bytes(code, json(), obj.json()),
            Ok(Output::Protobuf) => match obj.protobuf() {
                Ok(pb) => respond_bytes(code, protobuf(), pb.clone()),
                Err(_) => respond_bytes(code, json(), obj.json()),
            },
            _ => self.object(code, Arc::unwrap_or_clone(obj.value())),
        }
    }

    /// A list read from the Store: JSON and protobuf are written from its
    /// items' cached encodings, the list around them; a Table from the
    /// shared items; other forms from the list's value.
    pub fn objects(&self, code: u16, list: ObjectList) -> Response {
        match self.output() {
            Ok(Output::Json) => respond_bytes(code, json(), list_json(&self.store, &list)),
            Ok(Output::Protobuf) => match list_protobuf(&self.store, &list) {
                Some(pb) => respond_bytes(code, protobuf(), pb),
                None => respond_bytes(code, json(), list_json(&self.store, &list)),
            },
            Ok(Output::Table(v)) => {
                let values: Vec<Arc<Value>> = list.values().collect();
                let items = values.iter().map(|v| &**v);
                let table = table(&self.store, &v, items, list.metadata, &self.include_object(), true);
                respond(self.req, code, &table, &Output::Table(v))
            }
            _ => self.list(code, &self.store.list_value(list)),
        }
    }

    pub fn list(&self, code: u16, list: &Value) -> Response {
        let items: &[Value] = list.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let list_meta = list.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        match self.output() {
            Ok(Output::Table(v)) => {
                let table = self.table(&v, items, list_meta);
                respond(self.req, code, &table, &Output::Table(v))
            }
            Ok(Output::PartialObjectMetadata(v)) => {
                let out = partial_list(&v, items, list_meta);
                respond(self.req, code, &out, &Output::PartialObjectMetadata(v))
            }
            Ok(o) => {
                let list = if self.store.schema.unstructured {
                    wire::sorted(list.clone())
                } else {
                    wire::typed_list(list.clone())
                };
                respond(self.req, code, &list, &o)
            }
            Err(e) => e.into_response(),
        }
    }

    fn table(&self, version: &str, items: &[Value], list_meta: Map<String, Value>) -> Value {
        table(&self.store, version, items, list_meta, &self.include_object(), true)
    }
}

/// A meta.k8s.io Table of `items`; `with_columns` false leaves out the column
/// definitions (later events of a watch, as upstream's NoHeaders).
pub(super) fn table<'a>(
    store: &Store,
    version: &str,
    items: impl IntoIterator<Item = &'a Value>,
    list_meta: Map<String, Value>,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let strategy = &store.strategy;
    let columns = if with_columns { strategy.table_columns() } else { Vec::new() };
    let rows = TableRows {
        cells: &|obj| strategy.table_row(obj),
        whole: &|obj| wire_object(store, obj.clone()),
        include_object,
    };
    rows.table(version, columns, items, list_meta)
}

/// How a Table's rows are made: their cells, and the object each carries as
/// `includeObject` asks (None, Object, or by default its metadata).
struct TableRows<'a> {
    cells: &'a dyn Fn(&Value) -> Vec<Value>,
    whole: &'a dyn Fn(&Value) -> Value,
    include_object: &'a str,
}

impl TableRows<'_> {
    fn table<'v>(
        &self,
        version: &str,
        columns: Vec<TableColumn>,
        items: impl IntoIterator<Item = &'v Value>,
        list_meta: Map<String, Value>,
    ) -> Value {
        let columns: Vec<Value> = columns.iter().map(TableColumn::to_json).collect();
        let rows: Vec<Value> = items
            .into_iter()
            .map(|obj| {
                let mut row = json!({"cells": (self.cells)(obj)});
                match self.include_object {
                    "None" => {}
                    "Object" => row["object"] = (self.whole)(obj),
                    _ => row["object"] = partial(version, obj),
                }
                row
            })
            .collect();
        json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
        })
    }
}

/// Writes `value`, an object or (with `list`) a list of a read-only kind, in
/// the negotiated form.
pub(super) fn read_only(req: &Request, resource: &ReadOnly, value: &Value, list: bool) -> Response {
    let a = accept(req);
    let offer = Offer { table: true, discovery: false, protobuf: true };
    let Some(output) = negotiation::negotiate_offer(a, offer) else {
        return StatusError::not_acceptable(a.unwrap_or("")).into_response();
    };
    let (items, list_meta) = match list {
        true => (
            value.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]),
            value.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default(),
        ),
        false => (std::slice::from_ref(value), Map::new()),
    };
    let body = match &output {
        Output::Table(v) => {
            let include_object = query_param(req.uri().query(), "includeObject");
            let rows = TableRows {
                cells: &|obj| resource.reader.table_row(obj),
                whole: &|obj| wire::typed(obj.clone()),
                include_object: include_object.as_deref().unwrap_or("Metadata"),
            };
            rows.table(v, resource.reader.table_columns(), items, list_meta)
        }
        Output::PartialObjectMetadata(v) if list => partial_list(v, items, list_meta),
        Output::PartialObjectMetadata(v) => partial(v, value),
        _ if list => wire::typed_list(value.clone()),
        _ => wire::typed(value.clone()),
    };
    respond(req, 200, &body, &output)
}

/// `store`'s list as a protobuf body from its items' cached encodings;
/// None when its kind has no protobuf form (the caller answers in JSON).
fn list_protobuf(store: &Store, list: &ObjectList) -> Option<Bytes> {
    let head = json!({
        "kind": store.info.list_kind(),
        "apiVersion": store.info.api_version(),
        "metadata": list.metadata,
    });
    let items: Vec<&[u8]> = list.items.iter().map(|i| i.protobuf().ok().map(|b| b.as_ref())).collect::<Option<_>>()?;
    crate::protobuf::encode_list(&head, items).ok().map(Bytes::from)
}

/// The bytes `wire::json` writes for `store`'s list (typed: kind,
/// apiVersion, metadata, items without their type; custom: every key
/// sorted), with each item copied from its cached encoding.
fn list_json(store: &Store, list: &ObjectList) -> Vec<u8> {
    let compact = |v: &Value| {
        let mut b = wire::json(v);
        b.pop();
        b
    };
    let kind = compact(&json!(store.info.list_kind()));
    let api_version = compact(&json!(store.info.api_version()));
    let mut items = Vec::with_capacity(list.items.iter().map(|i| i.json().len()).sum::<usize>() + 2);
    items.push(b'[');
    for (n, item) in list.items.iter().enumerate() {
        if n > 0 {
            items.push(b',');
        }
        item.write_item(&mut items);
    }
    items.push(b']');
    let metadata = Value::Object(list.metadata.clone());
    let parts: [(&str, Vec<u8>); 4] = if store.schema.unstructured {
        let metadata = compact(&wire::sorted(metadata));
        [("apiVersion", api_version), ("items", items), ("kind", kind), ("metadata", metadata)]
    } else {
        // ListMeta's order, as typed() writes a list's metadata.
        let typed = wire::typed(json!({"metadata": metadata, "items": []}));
        let metadata = compact(&typed["metadata"]);
        [("kind", kind), ("apiVersion", api_version), ("metadata", metadata), ("items", items)]
    };
    let mut out = Vec::with_capacity(parts.iter().map(|(_, p)| p.len() + 16).sum());
    for (n, (key, part)) in parts.iter().enumerate() {
        out.push(if n == 0 { b'{' } else { b',' });
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"}\n");
    out
}

/// What the client may be answered with for objects of `store`'s resource.
pub(super) fn negotiate_objects(req: &Request, store: &Store) -> Result<Output, StatusError> {
    let a = accept(req);
    let offer = Offer { table: true, discovery: false, protobuf: !store.schema.unstructured };
    negotiation::negotiate_offer(a, offer).ok_or_else(|| StatusError::not_acceptable(a.unwrap_or("")))
}

/// One object of `store`'s resource in upstream's key order.
pub(super) fn wire_object(store: &Store, obj: Value) -> Value {
    wire::object(obj, store.schema.unstructured)
}

fn partial_list(version: &str, items: &[Value], list_meta: Map<String, Value>) -> Value {
    let parts: Vec<Value> = items.iter().map(|i| partial(version, i)).collect();
    wire::typed(json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "items": parts,
    }))
}

pub(super) fn partial(version: &str, obj: &Value) -> Value {
    wire::typed(json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    }))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;
    use crate::registry::store::{ListOptions, WriteOptions};
    use crate::registry::{DefaultStrategy, Registration, ResourceInfo, Schema};
    use crate::storage::embedded::EmbeddedStorage;

    /// A list written around its items' cached encodings is byte for byte
    /// the list encoded whole, typed or unstructured, on every page.
    #[tokio::test]
    async fn lists_from_cached_items_equal_the_encoded_list() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn crate::storage::Storage> =
            Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        for unstructured in [false, true] {
            let schema =
                if unstructured { Schema::of::<ConfigMap>().unstructured() } else { Schema::of::<ConfigMap>() };
            let reg = Registration::new(ResourceInfo::of::<ConfigMap>(), schema, Arc::new(DefaultStrategy));
            let store = Store::new(reg, storage.clone(), crate::registry::AdmissionChain::empty());
            let ns = if unstructured { "u" } else { "t" };
            for name in ["a", "b", "c"] {
                let cm = json!({"metadata": {"name": name, "annotations": {"z": "<&>"}}, "data": {"y": "1", "x": "2"}});
                store.create(ns, cm, &WriteOptions::default()).await.unwrap();
            }
            let empty = ListOptions {
                label_selector: crate::selectors::LabelSelector::parse("none").unwrap(),
                ..Default::default()
            };
            for opts in [ListOptions::default(), ListOptions { limit: 2, ..Default::default() }, empty] {
                let written = list_json(&store, &store.list_objects(ns, &opts).await.unwrap());
                let whole = store.list_value(store.list_objects(ns, &opts).await.unwrap());
                let whole = if unstructured { wire::sorted(whole) } else { wire::typed_list(whole) };
                assert_eq!(String::from_utf8(written).unwrap(), String::from_utf8(wire::json(&whole)).unwrap());
                let pb = list_protobuf(&store, &store.list_objects(ns, &opts).await.unwrap());
                if !unstructured {
                    let encoded = crate::protobuf::encode(&whole).unwrap();
                    assert_eq!(pb.as_deref(), Some(encoded.as_slice()), "protobuf, {opts:?}");
                }
            }
        }
    }
}
