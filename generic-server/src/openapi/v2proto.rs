//! The protobuf form of the Swagger 2.0 document (/openapi/v2 with `Accept:
//! application/com.github.proto-openapi.spec.v2.v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` message (github.com/google/gnostic-models,
//! openapiv2/OpenAPIv2.proto), which kubectl unmarshals for apply (strategic
//! merge patch metadata) and explain.
//!
//! Upstream builds it by parsing the JSON document with gnostic and marshaling
//! the result; this module writes the same message straight from our JSON
//! document:
//!
//! - every object of the Swagger 2.0 schema becomes its message, fields in
//!   field-number order, proto3 style (empty strings, zero numbers and false
//!   left out; present sub-messages always written, oneof members always);
//! - maps become repeated `Named*` pairs in document order;
//! - `x-` keys become `vendor_extension` entries whose value is an `Any`
//!   carrying the value as YAML text (`Any.yaml`), which is what kubectl reads
//!   back with a YAML parser; `default`, `example` and `enum` values are
//!   `Any`s the same way;
//! - the unions follow gnostic's choice: a parameter or response with `$ref`
//!   is a `JsonReference`, a parameter `in: body` a `BodyParameter`, others the
//!   sub-schema of their `in`; a security definition goes by `type` (and
//!   `flow` for oauth2); `additionalProperties` is a schema or a boolean.
//!
//! Keys Swagger 2.0 does not know, and values of the wrong JSON type, are
//! skipped rather than failing the whole document.

use serde_json::{Map, Value};

use crate::protobuf::wire::{put_key, put_len, put_varint_field, I64};

/// The media type upstream answers with (for either accepted form).
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The older media type kubectl up to 1.27 asks for; served as [`CONTENT_TYPE`].
pub const CONTENT_TYPE_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Encodes a Swagger 2.0 document (JSON form) as an `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Result<Vec<u8>, String> {
    match doc {
        Value::Object(m) => Ok(fields(m, DOCUMENT)),
        _ => Err("the OpenAPI v2 document is not a JSON object".into()),
    }
}

/// How one JSON key is written.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Double,
    /// `repeated string` from an array of strings.
    Strings,
    /// `Any` holding the value as YAML.
    Any,
    /// `repeated Any`, one per array element.
    Anys,
    /// A sub-message (skipped when the encoder rejects the value's shape).
    Msg(Encoder),
    /// A repeated sub-message from an array.
    Msgs(Encoder),
}

/// Encodes a JSON value as a message body; `None` when its shape does not fit.
type Encoder = fn(&Value) -> Option<Vec<u8>>;

/// One field: JSON key, field number, kind.
type Field = (&'static str, u32, Kind);

/// The key under which a message's `vendor_extension` field is listed: every
/// `x-` key of the object, in order.
const EXT: &str = "x-";

fn fields(m: &Map<String, Value>, table: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(key, number, kind) in table {
        if key == EXT {
            for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
                put_len(&mut out, number, &named_any(k, v));
            }
            continue;
        }
        if let Some(v) = m.get(key) {
            put_field(&mut out, number, kind, v);
        }
    }
    out
}

fn put_field(out: &mut Vec<u8>, number: u32, kind: Kind, v: &Value) {
    match kind {
        Kind::Str => {
            if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                put_len(out, number, s.as_bytes());
            }
        }
        Kind::Bool => {
            if v.as_bool() == Some(true) {
                put_varint_field(out, number, 1);
            }
        }
        Kind::Int => {
            let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).unwrap_or(0);
            if n != 0 {
                put_varint_field(out, number, n as u64);
            }
        }
        Kind::Double => {
            if let Some(f) = v.as_f64().filter(|f| f.to_bits() != 0) {
                put_key(out, number, I64);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
        Kind::Strings => {
            for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                put_len(out, number, s.as_bytes());
            }
        }
        Kind::Any => put_len(out, number, &any(v)),
        Kind::Anys => {
            for x in v.as_array().into_iter().flatten() {
                put_len(out, number, &any(x));
            }
        }
        Kind::Msg(enc) => {
            if let Some(b) = enc(v) {
                put_len(out, number, &b);
            }
        }
        Kind::Msgs(enc) => {
            for b in v.as_array().into_iter().flatten().filter_map(enc) {
                put_len(out, number, &b);
            }
        }
    }
}

/// `Any {2: yaml}`.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, 2, yaml(v).as_bytes());
    out
}

/// `NamedAny {1: name, 2: Any}`.
fn named_any(name: &str, v: &Value) -> Vec<u8> {
    named(name, &any(v))
}

/// A `Named*` pair: `{1: name, 2: value}`.
fn named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if !name.is_empty() {
        put_len(&mut out, 1, name.as_bytes());
    }
    put_len(&mut out, 2, value);
    out
}

/// A map message `{number: repeated Named* {name, value}}` over every entry of
/// an object (entries whose value does not fit are skipped).
fn named_map(v: &Value, number: u32, enc: Encoder) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let mut out = Vec::new();
    for (k, x) in m {
        if let Some(b) = enc(x) {
            put_len(&mut out, number, &named(k, &b));
        }
    }
    Some(out)
}

/// An encoder for an object with a field table.
macro_rules! table_encoder {
    ($name:ident, $table:expr) => {
        fn $name(v: &Value) -> Option<Vec<u8>> {
            Some(fields(v.as_object()?, $table))
        }
    };
}

const DOCUMENT: &[Field] = &[
    ("swagger", 1, Kind::Str),
    ("info", 2, Kind::Msg(info)),
    ("host", 3, Kind::Str),
    ("basePath", 4, Kind::Str),
    ("schemes", 5, Kind::Strings),
    ("consumes", 6, Kind::Strings),
    ("produces", 7, Kind::Strings),
    ("paths", 8, Kind::Msg(paths)),
    ("definitions", 9, Kind::Msg(definitions)),
    ("parameters", 10, Kind::Msg(parameter_definitions)),
    ("responses", 11, Kind::Msg(response_definitions)),
    ("security", 12, Kind::Msgs(security_requirement)),
    ("securityDefinitions", 13, Kind::Msg(security_definitions)),
    ("tags", 14, Kind::Msgs(tag)),
    ("externalDocs", 15, Kind::Msg(external_docs)),
    (EXT, 16, Kind::Any),
];

table_encoder!(
    info,
    &[
        ("title", 1, Kind::Str),
        ("version", 2, Kind::Str),
        ("description", 3, Kind::Str),
        ("termsOfService", 4, Kind::Str),
        ("contact", 5, Kind::Msg(contact)),
        ("license", 6, Kind::Msg(license)),
        (EXT, 7, Kind::Any),
    ]
);
table_encoder!(contact, &[("name", 1, Kind::Str), ("url", 2, Kind::Str), ("email", 3, Kind::Str), (EXT, 4, Kind::Any)]);
table_encoder!(license, &[("name", 1, Kind::Str), ("url", 2, Kind::Str), (EXT, 3, Kind::Any)]);
table_encoder!(external_docs, &[("description", 1, Kind::Str), ("url", 2, Kind::Str), (EXT, 3, Kind::Any)]);
table_encoder!(
    tag,
    &[
        ("name", 1, Kind::Str),
        ("description", 2, Kind::Str),
        ("externalDocs", 3, Kind::Msg(external_docs)),
        (EXT, 4, Kind::Any),
    ]
);

/// `Paths {1: vendor_extension, 2: repeated NamedPathItem}`.
fn paths(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let mut out = fields(m, &[(EXT, 1, Kind::Any)]);
    for (k, item) in m.iter().filter(|(k, _)| k.starts_with('/')) {
        if let Some(b) = path_item(item) {
            put_len(&mut out, 2, &named(k, &b));
        }
    }
    Some(out)
}

table_encoder!(
    path_item,
    &[
        ("$ref", 1, Kind::Str),
        ("get", 2, Kind::Msg(operation)),
        ("put", 3, Kind::Msg(operation)),
        ("post", 4, Kind::Msg(operation)),
        ("delete", 5, Kind::Msg(operation)),
        ("options", 6, Kind::Msg(operation)),
        ("head", 7, Kind::Msg(operation)),
        ("patch", 8, Kind::Msg(operation)),
        ("parameters", 9, Kind::Msgs(parameters_item)),
        (EXT, 10, Kind::Any),
    ]
);

table_encoder!(
    operation,
    &[
        ("tags", 1, Kind::Strings),
        ("summary", 2, Kind::Str),
        ("description", 3, Kind::Str),
        ("externalDocs", 4, Kind::Msg(external_docs)),
        ("operationId", 5, Kind::Str),
        ("produces", 6, Kind::Strings),
        ("consumes", 7, Kind::Strings),
        ("parameters", 8, Kind::Msgs(parameters_item)),
        ("responses", 9, Kind::Msg(responses)),
        ("schemes", 10, Kind::Strings),
        ("deprecated", 11, Kind::Bool),
        ("security", 12, Kind::Msgs(security_requirement)),
        (EXT, 13, Kind::Any),
    ]
);

table_encoder!(json_reference, &[("$ref", 1, Kind::Str), ("description", 2, Kind::Str)]);

/// `ParametersItem`: oneof `{1: Parameter, 2: JsonReference}`.
fn parameters_item(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if v.get("$ref").is_some() {
        put_len(&mut out, 2, &json_reference(v)?);
    } else {
        put_len(&mut out, 1, &parameter(v)?);
    }
    Some(out)
}

/// `Parameter`: oneof `{1: BodyParameter, 2: NonBodyParameter}`; a
/// `NonBodyParameter` is oneof `{1: header, 2: formData, 3: query, 4: path}`.
fn parameter(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let location = m.get("in").and_then(Value::as_str)?;
    let mut out = Vec::new();
    if location == "body" {
        put_len(&mut out, 1, &fields(m, BODY_PARAMETER));
        return Some(out);
    }
    let (number, table) = match location {
        "header" => (1, HEADER_OR_PATH_PARAMETER),
        "formData" => (2, QUERY_OR_FORM_PARAMETER),
        "query" => (3, QUERY_OR_FORM_PARAMETER),
        "path" => (4, HEADER_OR_PATH_PARAMETER),
        _ => return None,
    };
    let mut non_body = Vec::new();
    put_len(&mut non_body, number, &fields(m, table));
    put_len(&mut out, 2, &non_body);
    Some(out)
}

const BODY_PARAMETER: &[Field] = &[
    ("description", 1, Kind::Str),
    ("name", 2, Kind::Str),
    ("in", 3, Kind::Str),
    ("required", 4, Kind::Bool),
    ("schema", 5, Kind::Msg(schema)),
    (EXT, 6, Kind::Any),
];

/// HeaderParameterSubSchema and PathParameterSubSchema (the same layout).
const HEADER_OR_PATH_PARAMETER: &[Field] = &[
    ("required", 1, Kind::Bool),
    ("in", 2, Kind::Str),
    ("description", 3, Kind::Str),
    ("name", 4, Kind::Str),
    ("type", 5, Kind::Str),
    ("format", 6, Kind::Str),
    ("items", 7, Kind::Msg(primitives_items)),
    ("collectionFormat", 8, Kind::Str),
    ("default", 9, Kind::Any),
    ("maximum", 10, Kind::Double),
    ("exclusiveMaximum", 11, Kind::Bool),
    ("minimum", 12, Kind::Double),
    ("exclusiveMinimum", 13, Kind::Bool),
    ("maxLength", 14, Kind::Int),
    ("minLength", 15, Kind::Int),
    ("pattern", 16, Kind::Str),
    ("maxItems", 17, Kind::Int),
    ("minItems", 18, Kind::Int),
    ("uniqueItems", 19, Kind::Bool),
    ("enum", 20, Kind::Anys),
    ("multipleOf", 21, Kind::Double),
    (EXT, 22, Kind::Any),
];

/// QueryParameterSubSchema and FormDataParameterSubSchema (the same layout).
const QUERY_OR_FORM_PARAMETER: &[Field] = &[
    ("required", 1, Kind::Bool),
    ("in", 2, Kind::Str),
    ("description", 3, Kind::Str),
    ("name", 4, Kind::Str),
    ("allowEmptyValue", 5, Kind::Bool),
    ("type", 6, Kind::Str),
    ("format", 7, Kind::Str),
    ("items", 8, Kind::Msg(primitives_items)),
    ("collectionFormat", 9, Kind::Str),
    ("default", 10, Kind::Any),
    ("maximum", 11, Kind::Double),
    ("exclusiveMaximum", 12, Kind::Bool),
    ("minimum", 13, Kind::Double),
    ("exclusiveMinimum", 14, Kind::Bool),
    ("maxLength", 15, Kind::Int),
    ("minLength", 16, Kind::Int),
    ("pattern", 17, Kind::Str),
    ("maxItems", 18, Kind::Int),
    ("minItems", 19, Kind::Int),
    ("uniqueItems", 20, Kind::Bool),
    ("enum", 21, Kind::Anys),
    ("multipleOf", 22, Kind::Double),
    (EXT, 23, Kind::Any),
];

/// The validation fields PrimitivesItems and Header share (numbers 1-17).
macro_rules! primitive_fields {
    ($($rest:expr),*) => {
        &[
            ("type", 1, Kind::Str),
            ("format", 2, Kind::Str),
            ("items", 3, Kind::Msg(primitives_items)),
            ("collectionFormat", 4, Kind::Str),
            ("default", 5, Kind::Any),
            ("maximum", 6, Kind::Double),
            ("exclusiveMaximum", 7, Kind::Bool),
            ("minimum", 8, Kind::Double),
            ("exclusiveMinimum", 9, Kind::Bool),
            ("maxLength", 10, Kind::Int),
            ("minLength", 11, Kind::Int),
            ("pattern", 12, Kind::Str),
            ("maxItems", 13, Kind::Int),
            ("minItems", 14, Kind::Int),
            ("uniqueItems", 15, Kind::Bool),
            ("enum", 16, Kind::Anys),
            ("multipleOf", 17, Kind::Double),
            $($rest),*
        ]
    };
}

table_encoder!(primitives_items, primitive_fields!((EXT, 18, Kind::Any)));
table_encoder!(header, primitive_fields!(("description", 18, Kind::Str), (EXT, 19, Kind::Any)));

/// `Responses {1: repeated NamedResponseValue (status codes and "default"),
/// 2: vendor_extension}`.
fn responses(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let mut out = Vec::new();
    let is_code = |k: &str| k == "default" || (k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit()));
    for (k, r) in m.iter().filter(|(k, _)| is_code(k)) {
        if let Some(b) = response_value(r) {
            put_len(&mut out, 1, &named(k, &b));
        }
    }
    out.extend(fields(m, &[(EXT, 2, Kind::Any)]));
    Some(out)
}

/// `ResponseValue`: oneof `{1: Response, 2: JsonReference}`.
fn response_value(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if v.get("$ref").is_some() {
        put_len(&mut out, 2, &json_reference(v)?);
    } else {
        put_len(&mut out, 1, &response(v)?);
    }
    Some(out)
}

table_encoder!(
    response,
    &[
        ("description", 1, Kind::Str),
        ("schema", 2, Kind::Msg(schema_item)),
        ("headers", 3, Kind::Msg(headers)),
        ("examples", 4, Kind::Msg(examples)),
        (EXT, 5, Kind::Any),
    ]
);

fn headers(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, header)
}

fn examples(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, |x| Some(any(x)))
}

/// `SchemaItem`: oneof `{1: Schema, 2: FileSchema}` (a file schema has `type: file`).
fn schema_item(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if v.get("type").and_then(Value::as_str) == Some("file") {
        put_len(&mut out, 2, &file_schema(v)?);
    } else {
        put_len(&mut out, 1, &schema(v)?);
    }
    Some(out)
}

table_encoder!(
    file_schema,
    &[
        ("format", 1, Kind::Str),
        ("title", 2, Kind::Str),
        ("description", 3, Kind::Str),
        ("default", 4, Kind::Any),
        ("required", 5, Kind::Strings),
        ("type", 6, Kind::Str),
        ("readOnly", 7, Kind::Bool),
        ("externalDocs", 8, Kind::Msg(external_docs)),
        ("example", 9, Kind::Any),
        (EXT, 10, Kind::Any),
    ]
);

table_encoder!(
    schema,
    &[
        ("$ref", 1, Kind::Str),
        ("format", 2, Kind::Str),
        ("title", 3, Kind::Str),
        ("description", 4, Kind::Str),
        ("default", 5, Kind::Any),
        ("multipleOf", 6, Kind::Double),
        ("maximum", 7, Kind::Double),
        ("exclusiveMaximum", 8, Kind::Bool),
        ("minimum", 9, Kind::Double),
        ("exclusiveMinimum", 10, Kind::Bool),
        ("maxLength", 11, Kind::Int),
        ("minLength", 12, Kind::Int),
        ("pattern", 13, Kind::Str),
        ("maxItems", 14, Kind::Int),
        ("minItems", 15, Kind::Int),
        ("uniqueItems", 16, Kind::Bool),
        ("maxProperties", 17, Kind::Int),
        ("minProperties", 18, Kind::Int),
        ("required", 19, Kind::Strings),
        ("enum", 20, Kind::Anys),
        ("additionalProperties", 21, Kind::Msg(additional_properties)),
        ("type", 22, Kind::Msg(type_item)),
        ("items", 23, Kind::Msg(items_item)),
        ("allOf", 24, Kind::Msgs(schema)),
        ("properties", 25, Kind::Msg(properties)),
        ("discriminator", 26, Kind::Str),
        ("readOnly", 27, Kind::Bool),
        ("xml", 28, Kind::Msg(xml)),
        ("externalDocs", 29, Kind::Msg(external_docs)),
        ("example", 30, Kind::Any),
        (EXT, 31, Kind::Any),
    ]
);

/// `AdditionalPropertiesItem`: oneof `{1: Schema, 2: bool}` (the boolean is
/// written even when false, as a set oneof member is).
fn additional_properties(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        Value::Bool(b) => put_varint_field(&mut out, 2, u64::from(*b)),
        Value::Object(_) => put_len(&mut out, 1, &schema(v)?),
        _ => return None,
    }
    Some(out)
}

/// `TypeItem {1: repeated string}` from a type name or a list of them.
fn type_item(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        Value::String(s) => put_len(&mut out, 1, s.as_bytes()),
        Value::Array(a) => {
            for s in a.iter().filter_map(Value::as_str) {
                put_len(&mut out, 1, s.as_bytes());
            }
        }
        _ => return None,
    }
    Some(out)
}

/// `ItemsItem {1: repeated Schema}`: the one items schema (or each of a list).
fn items_item(v: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match v {
        Value::Object(_) => put_len(&mut out, 1, &schema(v)?),
        Value::Array(a) => {
            for b in a.iter().filter_map(schema) {
                put_len(&mut out, 1, &b);
            }
        }
        _ => return None,
    }
    Some(out)
}

fn properties(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, schema)
}

table_encoder!(
    xml,
    &[
        ("name", 1, Kind::Str),
        ("namespace", 2, Kind::Str),
        ("prefix", 3, Kind::Str),
        ("attribute", 4, Kind::Bool),
        ("wrapped", 5, Kind::Bool),
        (EXT, 6, Kind::Any),
    ]
);

fn definitions(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, schema)
}

fn parameter_definitions(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, parameter)
}

fn response_definitions(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, response)
}

/// `SecurityRequirement {1: repeated NamedStringArray}`; `StringArray {1: repeated string}`.
fn security_requirement(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, |scopes| {
        let mut out = Vec::new();
        put_field(&mut out, 1, Kind::Strings, scopes);
        Some(out)
    })
}

fn security_definitions(v: &Value) -> Option<Vec<u8>> {
    named_map(v, 1, security_definitions_item)
}

/// `SecurityDefinitionsItem`: oneof by `type` (and `flow` for oauth2).
fn security_definitions_item(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let flow = m.get("flow").and_then(Value::as_str);
    let (number, table): (u32, &[Field]) = match m.get("type").and_then(Value::as_str)? {
        "basic" => (1, &[("type", 1, Kind::Str), ("description", 2, Kind::Str), (EXT, 3, Kind::Any)]),
        "apiKey" => (
            2,
            &[
                ("type", 1, Kind::Str),
                ("name", 2, Kind::Str),
                ("in", 3, Kind::Str),
                ("description", 4, Kind::Str),
                (EXT, 5, Kind::Any),
            ],
        ),
        "oauth2" => match flow? {
            "implicit" => (
                3,
                &[
                    ("type", 1, Kind::Str),
                    ("flow", 2, Kind::Str),
                    ("scopes", 3, Kind::Msg(oauth2_scopes)),
                    ("authorizationUrl", 4, Kind::Str),
                    ("description", 5, Kind::Str),
                    (EXT, 6, Kind::Any),
                ],
            ),
            f @ ("password" | "application") => (
                if f == "password" { 4 } else { 5 },
                &[
                    ("type", 1, Kind::Str),
                    ("flow", 2, Kind::Str),
                    ("scopes", 3, Kind::Msg(oauth2_scopes)),
                    ("tokenUrl", 4, Kind::Str),
                    ("description", 5, Kind::Str),
                    (EXT, 6, Kind::Any),
                ],
            ),
            "accessCode" => (
                6,
                &[
                    ("type", 1, Kind::Str),
                    ("flow", 2, Kind::Str),
                    ("scopes", 3, Kind::Msg(oauth2_scopes)),
                    ("authorizationUrl", 4, Kind::Str),
                    ("tokenUrl", 5, Kind::Str),
                    ("description", 6, Kind::Str),
                    (EXT, 7, Kind::Any),
                ],
            ),
            _ => return None,
        },
        _ => return None,
    };
    let mut out = Vec::new();
    put_len(&mut out, number, &fields(m, table));
    Some(out)
}

/// `Oauth2Scopes {1: repeated NamedString}`.
fn oauth2_scopes(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let mut out = Vec::new();
    for (k, s) in m {
        let mut pair = Vec::new();
        put_field(&mut pair, 1, Kind::Str, &Value::String(k.clone()));
        put_field(&mut pair, 2, Kind::Str, s);
        put_len(&mut out, 1, &pair);
    }
    Some(out)
}

// --- YAML for `Any.yaml` ---------------------------------------------------

/// A JSON value as a YAML document, in the block style gnostic's YAML
/// marshaling produces ("merge\n", "- name\n", "group: apps\nkind: ...\n").
/// Readers parse it with YAML 1.1 rules (go-yaml v2), so any string that would
/// read back as something else (true, yes, on, null, numbers, ...) or needs
/// escaping is double-quoted.
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => block(v, 0, &mut out),
        _ => {
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
    out
}

/// A scalar or an empty collection on one line.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// A non-empty collection, every line indented by `indent` spaces.
fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push_str(&pad);
                out.push_str(&scalar_string(k));
                out.push(':');
                if is_block(x) {
                    out.push('\n');
                    block(x, indent + 4, out);
                } else {
                    out.push(' ');
                    out.push_str(&inline(x));
                    out.push('\n');
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                if is_block(x) {
                    // The item's first line goes after "- ", the rest stay
                    // aligned two columns in.
                    let mut item = String::new();
                    block(x, indent + 2, &mut item);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(item.get(indent + 2..).unwrap_or_default());
                } else {
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&inline(x));
                    out.push('\n');
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

/// A string as a plain YAML scalar when that reads back as the same string
/// under YAML 1.1, otherwise double-quoted (JSON string escapes are valid
/// YAML double-quoted escapes).
fn scalar_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !s.ends_with(' ')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{builtin_definitions, builtin_schemas, schema_to_v2, v2_document};
    use super::*;
    use crate::protobuf::wire::{Reader, WireValue};
    use crate::registry::{ResourceInfo, ScalePaths, Subresource};
    use serde_json::json;

    /// Every field of a message: (number, value) with length-delimited values as bytes.
    fn decode(b: &[u8]) -> Vec<(u32, Raw)> {
        let mut r = Reader::new(b);
        let mut out = Vec::new();
        while !r.is_empty() {
            let (n, v) = r.field().expect("valid wire format");
            out.push((
                n,
                match v {
                    WireValue::Varint(x) => Raw::Varint(x),
                    WireValue::I64(x) => Raw::Double(f64::from_le_bytes(x)),
                    WireValue::Len(x) => Raw::Bytes(x.to_vec()),
                    WireValue::I32 => panic!("no fixed32 fields in openapi.v2"),
                },
            ));
        }
        out
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Raw {
        Varint(u64),
        Double(f64),
        Bytes(Vec<u8>),
    }

    /// The values of field `n`, as bytes.
    fn all(b: &[u8], n: u32) -> Vec<Vec<u8>> {
        decode(b)
            .into_iter()
            .filter(|(k, _)| *k == n)
            .filter_map(|(_, v)| match v {
                Raw::Bytes(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    /// Follows a path of field numbers (first occurrence at each step).
    fn at(b: &[u8], path: &[u32]) -> Vec<u8> {
        let mut cur = b.to_vec();
        for &n in path {
            cur = all(&cur, n).into_iter().next().unwrap_or_else(|| panic!("field {n} missing on {path:?}"));
        }
        cur
    }

    fn text(b: &[u8], path: &[u32]) -> String {
        String::from_utf8(at(b, path)).expect("utf-8")
    }

    /// The value of the `Named*` entry `name` in the repeated field `n`.
    fn named_entry(b: &[u8], n: u32, name: &str) -> Vec<u8> {
        all(b, n)
            .into_iter()
            .find(|e| all(e, 1).first().map(|x| x.as_slice()) == Some(name.as_bytes()))
            .map(|e| at(&e, &[2]))
            .unwrap_or_else(|| panic!("no entry {name} in field {n}"))
    }

    fn names(b: &[u8], n: u32) -> Vec<String> {
        all(b, n).iter().map(|e| text(e, &[1])).collect()
    }

    fn small_doc() -> Value {
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {
                "/api/v1/namespaces/{namespace}/configmaps/{name}": {
                    "patch": {
                        "consumes": ["application/json-patch+json", "application/strategic-merge-patch+json"],
                        "description": "partially update the specified ConfigMap",
                        "operationId": "patchCoreV1NamespacedConfigMap",
                        "produces": ["application/json"],
                        "schemes": ["https"],
                        "tags": ["core_v1"],
                        "parameters": [
                            {"in": "body", "name": "body", "required": true,
                             "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                            {"in": "query", "name": "force", "type": "boolean", "uniqueItems": true,
                             "description": "Force."},
                            {"$ref": "#/parameters/pretty"}
                        ],
                        "responses": {
                            "200": {"description": "OK", "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"}},
                            "401": {"description": "Unauthorized"}
                        },
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": {"group": "", "kind": "ConfigMap", "version": "v1"}
                    },
                    "parameters": [
                        {"in": "path", "name": "name", "required": true, "type": "string", "uniqueItems": true}
                    ]
                }
            },
            "definitions": {
                "io.k8s.api.core.v1.ConfigMap": {
                    "description": "ConfigMap holds configuration data.",
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {"type": "object", "additionalProperties": {"type": "string"}},
                        "immutable": {"type": "boolean", "default": false},
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                        "ports": {
                            "type": "array",
                            "items": {"type": "integer", "format": "int32", "minimum": 1.5, "maxLength": 3},
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-patch-merge-key": "port",
                            "x-kubernetes-patch-strategy": "merge"
                        },
                        "mode": {"type": "string", "enum": ["Always", "yes"]},
                        "closed": {"type": "object", "additionalProperties": false},
                        "both": {"allOf": [{"type": "object"}, {"$ref": "#/definitions/x"}]}
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}]
                }
            },
            "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header",
                                                   "description": "Bearer Token authentication"}},
            "security": [{"BearerToken": []}]
        })
    }

    #[test]
    fn document_fields_have_gnostic_numbers() {
        let b = encode_document(&small_doc()).expect("encodes");
        assert_eq!(text(&b, &[1]), "2.0");
        assert_eq!(text(&b, &[2, 1]), "Kubernetes");
        assert_eq!(text(&b, &[2, 2]), "v1.33.0");

        // Paths {2: NamedPathItem}; PathItem {8: patch}.
        let paths = at(&b, &[8]);
        assert_eq!(names(&paths, 2), vec!["/api/v1/namespaces/{namespace}/configmaps/{name}"]);
        let item = at(&paths, &[2, 2]);
        let patch = at(&item, &[8]);
        assert!(all(&item, 2).is_empty(), "no get");
        assert_eq!(text(&patch, &[5]), "patchCoreV1NamespacedConfigMap");
        assert_eq!(text(&patch, &[3]), "partially update the specified ConfigMap");
        assert_eq!(all(&patch, 1), vec![b"core_v1".to_vec()]);
        assert_eq!(all(&patch, 6), vec![b"application/json".to_vec()]);
        assert_eq!(all(&patch, 7).len(), 2);
        assert_eq!(all(&patch, 10), vec![b"https".to_vec()]);

        // Parameters: body (ParametersItem.1 -> Parameter.1 -> BodyParameter),
        // query (Parameter.2 -> NonBodyParameter.3), $ref (ParametersItem.2).
        let params = all(&patch, 8);
        assert_eq!(params.len(), 3);
        let body = at(&params[0], &[1, 1]);
        assert_eq!(text(&body, &[2]), "body");
        assert_eq!(text(&body, &[3]), "body");
        assert!(decode(&body).contains(&(4, Raw::Varint(1))));
        assert_eq!(text(&body, &[5, 1]), "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
        let query = at(&params[1], &[1, 2, 3]);
        assert_eq!(text(&query, &[2]), "query");
        assert_eq!(text(&query, &[4]), "force");
        assert_eq!(text(&query, &[6]), "boolean");
        assert!(decode(&query).contains(&(20, Raw::Varint(1))), "uniqueItems");
        assert_eq!(text(&params[2], &[2, 1]), "#/parameters/pretty");
        let path_param = at(&item, &[9, 1, 2, 4]);
        assert_eq!(text(&path_param, &[4]), "name");
        assert_eq!(text(&path_param, &[5]), "string");

        // Responses {1: NamedResponseValue}; ResponseValue.1 -> Response {2: SchemaItem.1 -> Schema}.
        let responses = at(&patch, &[9]);
        assert_eq!(names(&responses, 1), vec!["200", "401"]);
        let ok = named_entry(&responses, 1, "200");
        assert_eq!(text(&ok, &[1, 1]), "OK");
        assert_eq!(text(&ok, &[1, 2, 1, 1]), "#/definitions/io.k8s.api.core.v1.ConfigMap");

        // Operation vendor extensions (13) as NamedAny with YAML.
        assert_eq!(names(&patch, 13), vec!["x-kubernetes-action", "x-kubernetes-group-version-kind"]);
        assert_eq!(text(&named_entry(&patch, 13, "x-kubernetes-action"), &[2]), "patch\n");
        assert_eq!(
            text(&named_entry(&patch, 13, "x-kubernetes-group-version-kind"), &[2]),
            "group: \"\"\nkind: ConfigMap\nversion: v1\n"
        );

        // Definitions {1: NamedSchema}.
        let defs = at(&b, &[9]);
        assert_eq!(names(&defs, 1), vec!["io.k8s.api.core.v1.ConfigMap"]);
        let cm = named_entry(&defs, 1, "io.k8s.api.core.v1.ConfigMap");
        assert_eq!(text(&cm, &[4]), "ConfigMap holds configuration data.");
        assert_eq!(
            all(&cm, 22),
            vec![{
                let mut t = Vec::new();
                put_len(&mut t, 1, b"object");
                t
            }]
        );
        assert_eq!(all(&cm, 19), vec![b"data".to_vec()]);
        assert_eq!(
            text(&named_entry(&cm, 31, "x-kubernetes-group-version-kind"), &[2]),
            "- group: \"\"\n  kind: ConfigMap\n  version: v1\n"
        );
        let props = at(&cm, &[25]);
        assert_eq!(names(&props, 1), vec!["data", "immutable", "metadata", "ports", "mode", "closed", "both"]);
        let data = named_entry(&props, 1, "data");
        assert_eq!(text(&data, &[21, 1, 22, 1]), "string");
        let closed = named_entry(&props, 1, "closed");
        assert_eq!(decode(&at(&closed, &[21])), vec![(2, Raw::Varint(0))], "additionalProperties: false");
        assert_eq!(text(&named_entry(&props, 1, "immutable"), &[5, 2]), "false\n");
        assert_eq!(
            text(&named_entry(&props, 1, "metadata"), &[1]),
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let ports = named_entry(&props, 1, "ports");
        let item_schema = at(&ports, &[23, 1]);
        assert_eq!(text(&item_schema, &[22, 1]), "integer");
        assert_eq!(text(&item_schema, &[2]), "int32");
        assert!(decode(&item_schema).contains(&(9, Raw::Double(1.5))));
        assert!(decode(&item_schema).contains(&(11, Raw::Varint(3))));
        assert_eq!(text(&named_entry(&ports, 31, "x-kubernetes-patch-strategy"), &[2]), "merge\n");
        assert_eq!(text(&named_entry(&ports, 31, "x-kubernetes-list-map-keys"), &[2]), "- port\n- protocol\n");
        let mode = named_entry(&props, 1, "mode");
        let enums: Vec<String> = all(&mode, 20).iter().map(|a| text(a, &[2])).collect();
        assert_eq!(enums, vec!["Always\n", "\"yes\"\n"]);
        let both = named_entry(&props, 1, "both");
        let all_of = all(&both, 24);
        assert_eq!(all_of.len(), 2);
        assert_eq!(text(&all_of[1], &[1]), "#/definitions/x");

        // Security: definitions {1: NamedSecurityDefinitionsItem} (apiKey = 2),
        // requirements {1: NamedStringArray}.
        let sec = at(&b, &[13]);
        let bearer = named_entry(&sec, 1, "BearerToken");
        assert_eq!(text(&bearer, &[2, 1]), "apiKey");
        assert_eq!(text(&bearer, &[2, 2]), "authorization");
        assert_eq!(text(&bearer, &[2, 3]), "header");
        let req = at(&b, &[12]);
        assert_eq!(names(&req, 1), vec!["BearerToken"]);

        // Fields come in number order.
        let numbers: Vec<u32> = decode(&b).iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![1, 2, 8, 9, 12, 13]);
    }

    #[test]
    fn yaml_reads_back_as_the_same_values() {
        assert_eq!(yaml(&json!("merge")), "merge\n");
        assert_eq!(yaml(&json!("retainKeys,merge")), "\"retainKeys,merge\"\n");
        assert_eq!(yaml(&json!("")), "\"\"\n");
        for s in ["true", "Yes", "on", "null", "1", "1.5", "-x", "a: b", "a #b", "x\ny", "trailing "] {
            assert!(yaml(&json!(s)).starts_with('"'), "{s} must be quoted");
        }
        assert_eq!(yaml(&json!(true)), "true\n");
        assert_eq!(yaml(&json!(null)), "null\n");
        assert_eq!(yaml(&json!(3)), "3\n");
        assert_eq!(yaml(&json!({})), "{}\n");
        assert_eq!(yaml(&json!([])), "[]\n");
        assert_eq!(
            yaml(&json!({"a": {"b": [1, {"c": "d", "e": []}]}, "f": [["g", "h"]]})),
            "a:\n    b:\n        - 1\n        - c: d\n          e: []\nf:\n    - - g\n      - h\n"
        );
        assert_eq!(
            yaml(&json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])),
            "- group: apps\n  kind: Deployment\n  version: v1\n"
        );
    }

    #[test]
    fn wrong_shapes_are_skipped_not_fatal() {
        assert!(encode_document(&json!([])).is_err());
        let b = encode_document(&json!({
            "swagger": 2,
            "paths": {"/x": {"get": "nope", "parameters": [{"in": "cookie", "name": "c"}, 7]}},
            "definitions": {"a": {"type": 5, "items": true, "additionalProperties": "no", "required": "x"}}
        }))
        .expect("encodes");
        let numbers: Vec<u32> = decode(&b).iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![8, 9]);
        assert!(decode(&at(&b, &[8, 2, 2])).is_empty());
        assert!(decode(&named_entry(&at(&b, &[9]), 1, "a")).is_empty());
    }

    fn resource(group: &str, kind: &str, plural: &str, subresources: Vec<Subresource>) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            key_root: format!("/registry/{plural}"),
            subresources,
            verbs: crate::discovery::VERBS,
            storage_version_hash: String::new(),
        }
    }

    #[test]
    fn the_built_in_document_encodes() {
        let scale = ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        };
        let served = vec![
            resource("", "ConfigMap", "configmaps", vec![]),
            resource("", "Pod", "pods", vec![Subresource::Status]),
            resource("apps", "Deployment", "deployments", vec![Subresource::Status, Subresource::Scale(scale)]),
        ];
        let mut doc = v2_document(&builtin_schemas(&served));
        // Every built-in definition, not only those the served resources reach.
        if let Some(Value::Object(defs)) = doc.get_mut("definitions") {
            for (name, s) in builtin_definitions() {
                defs.entry(name.clone()).or_insert_with(|| schema_to_v2(s));
            }
        }
        let b = encode_document(&doc).expect("encodes");
        let defs = at(&b, &[9]);
        let def_names = names(&defs, 1);
        let json_defs: Vec<&String> = doc["definitions"].as_object().expect("definitions").keys().collect();
        assert_eq!(def_names.iter().collect::<Vec<_>>(), json_defs);
        let paths = at(&b, &[8]);
        assert_eq!(all(&paths, 2).len(), doc["paths"].as_object().map_or(0, |p| p.len()));
        // Strategic merge metadata kubectl needs.
        let pod_spec = named_entry(&defs, 1, "io.k8s.api.core.v1.PodSpec");
        let containers = named_entry(&at(&pod_spec, &[25]), 1, "containers");
        assert_eq!(text(&named_entry(&containers, 31, "x-kubernetes-patch-merge-key"), &[2]), "name\n");
        let deployment = named_entry(&defs, 1, "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            text(&named_entry(&deployment, 31, "x-kubernetes-group-version-kind"), &[2]),
            "- group: apps\n  kind: Deployment\n  version: v1\n"
        );
    }
}
