//! The paths of a group-version document: one path item per URL a resource is
//! served at, with upstream's operations, operation ids, actions,
//! group-version-kinds and query parameters. Built as a small model, then
//! written out as OpenAPI v3 or Swagger 2.0.

use serde_json::{json, Map, Value};

use crate::registry::{ResourceInfo, Subresource};

#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub location: &'static str,
    pub ty: &'static str,
    pub required: bool,
    pub description: String,
}

fn query(name: &'static str, ty: &'static str, description: &str) -> Param {
    Param { name, location: "query", ty, required: false, description: description.to_string() }
}

fn path_param(name: &'static str, description: String) -> Param {
    Param { name, location: "path", ty: "string", required: true, description }
}

fn p_pretty() -> Param {
    query("pretty", "string", "If 'true', the output is indented.")
}
fn p_dry_run() -> Param {
    query("dryRun", "string", "When present, the change is validated but not persisted. The only valid value is All.")
}
fn p_field_manager(patch: bool) -> Param {
    let extra = if patch { " Required for apply patches, optional otherwise." } else { "" };
    query(
        "fieldManager",
        "string",
        &format!("The name of the actor making the change, for field ownership tracking.{extra}"),
    )
}
fn p_field_validation() -> Param {
    query(
        "fieldValidation",
        "string",
        "How the server treats unknown or duplicate fields in the request body: Ignore drops them, Warn (the default) drops them with a warning, Strict rejects the request.",
    )
}
fn p_force() -> Param {
    query("force", "boolean", "Forces an apply patch to take ownership of conflicting fields. Only for apply patches.")
}

fn list_params() -> Vec<Param> {
    vec![
        query("allowWatchBookmarks", "boolean", "Asks for BOOKMARK events in a watch."),
        query("continue", "string", "The continue token of a previous paged list response."),
        query("fieldSelector", "string", "Restricts the result to objects whose fields match."),
        query("labelSelector", "string", "Restricts the result to objects whose labels match."),
        query("limit", "integer", "The maximum number of items to return in one page."),
        query("resourceVersion", "string", "The resource version the result must be at least as new as."),
        query("resourceVersionMatch", "string", "How resourceVersion applies to a list: Exact or NotOlderThan."),
        query("sendInitialEvents", "boolean", "Starts a watch with synthetic events for the current state."),
        query("timeoutSeconds", "integer", "Bounds the duration of the call."),
        query("watch", "boolean", "Watches for changes instead of listing."),
    ]
}

fn delete_params() -> Vec<Param> {
    vec![
        p_dry_run(),
        query("gracePeriodSeconds", "integer", "Seconds before the object should be deleted; zero means now."),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "Deletes an object that cannot be read from storage, bypassing finalizers and preconditions.",
        ),
        query("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
        query("propagationPolicy", "string", "Garbage collection of dependents: Orphan, Background or Foreground."),
    ]
}

fn delete_collection_params() -> Vec<Param> {
    let mut p = delete_params();
    p.extend(list_params().into_iter().filter(|q| q.name != "watch" && q.name != "allowWatchBookmarks"));
    p.sort_by_key(|q| q.name);
    p
}

#[derive(Debug, Clone)]
pub struct Body {
    pub definition: String,
    pub media_types: Vec<&'static str>,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    pub action: &'static str,
    pub operation_id: String,
    pub description: String,
    pub params: Vec<Param>,
    pub body: Option<Body>,
    /// (code, description, definition)
    pub responses: Vec<(u16, &'static str, String)>,
    pub produces: Vec<&'static str>,
    pub gvk: (String, String, String),
}

#[derive(Debug, Clone)]
pub struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

const PRODUCES: &[&str] = &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
const PRODUCES_WATCH: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

/// "rbac.authorization.k8s.io" -> ["rbac", "authorization"]; "" -> ["core"].
fn group_words(group: &str) -> Vec<String> {
    if group.is_empty() {
        return vec!["core".into()];
    }
    let g = group.strip_suffix(".k8s.io").unwrap_or(group);
    g.split(['.', '-']).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Upstream's tag: "core_v1", "apps_v1", "rbacAuthorization_v1".
pub fn tag(group: &str, version: &str) -> String {
    let words = group_words(group);
    let mut s = words.first().cloned().unwrap_or_default();
    for w in words.iter().skip(1) {
        s.push_str(&capitalize(w));
    }
    format!("{s}_{version}")
}

/// "CoreV1", "AppsV1", "RbacAuthorizationV1".
fn id_infix(group: &str, version: &str) -> String {
    let mut s: String = group_words(group).iter().map(|w| capitalize(w)).collect();
    s.push_str(&capitalize(version));
    s
}

/// The path items of one resource. `definition` and `list_definition` are
/// the component names of its kind and list kind; `smp` says whether
/// strategic merge patch is offered.
pub fn resource_paths(r: &ResourceInfo, definition: &str, list_definition: &str, smp: bool) -> Vec<PathItem> {
    let prefix = format!("/{}", super::schemas::gv_path(&r.group, &r.version));
    let infix = id_infix(&r.group, &r.version);
    let kind = &r.kind;
    let gvk = (r.group.clone(), r.version.clone(), r.kind.clone());
    let (ns_seg, ns_word) = if r.namespaced { ("/namespaces/{namespace}", "Namespaced") } else { ("", "") };
    let ns_param = || path_param("namespace", "object name and auth scope, such as for teams and projects".into());
    let name_param = |what: &str| path_param("name", format!("name of the {what}"));
    let status = super::schemas::STATUS.to_string();
    let del_opts = super::schemas::DELETE_OPTIONS.to_string();
    let watch_event = super::schemas::WATCH_EVENT.to_string();

    let mut patch_types = vec!["application/json-patch+json", "application/merge-patch+json"];
    if smp {
        patch_types.push("application/strategic-merge-patch+json");
    }
    patch_types.push("application/apply-patch+yaml");
    // Upstream lists the media types sorted.
    patch_types.sort_unstable();

    let op = |method: &'static str,
              action: &'static str,
              id: String,
              description: String,
              params: Vec<Param>,
              body: Option<Body>,
              responses: Vec<(u16, &'static str, String)>,
              produces: &[&'static str],
              gvk: &(String, String, String)| Operation {
        method,
        action,
        operation_id: id,
        description,
        params,
        body,
        responses,
        produces: produces.to_vec(),
        gvk: gvk.clone(),
    };
    let body = |def: &str, media: Vec<&'static str>, required: bool| {
        Some(Body { definition: def.to_string(), media_types: media, required })
    };

    let mut items = Vec::new();

    // The collection.
    let mut collection_params = vec![];
    if r.namespaced {
        collection_params.push(ns_param());
    }
    collection_params.push(p_pretty());
    let mut ops = vec![op(
        "get",
        "list",
        format!("list{infix}{ns_word}{kind}"),
        format!("list or watch objects of kind {kind}"),
        list_params(),
        None,
        vec![(200, "OK", list_definition.to_string())],
        PRODUCES_WATCH,
        &gvk,
    )];
    ops.push(op(
        "post",
        "post",
        format!("create{infix}{ns_word}{kind}"),
        format!("create a {kind}"),
        vec![p_dry_run(), p_field_manager(false), p_field_validation()],
        body(definition, vec!["*/*"], true),
        vec![
            (200, "OK", definition.to_string()),
            (201, "Created", definition.to_string()),
            (202, "Accepted", definition.to_string()),
        ],
        PRODUCES,
        &gvk,
    ));
    ops.push(op(
        "delete",
        "deletecollection",
        format!("delete{infix}Collection{ns_word}{kind}"),
        format!("delete collection of {kind}"),
        delete_collection_params(),
        body(&del_opts, vec!["*/*"], false),
        vec![(200, "OK", status.clone())],
        PRODUCES,
        &gvk,
    ));
    items.push(PathItem { path: format!("{prefix}{ns_seg}/{}", r.plural), params: collection_params, operations: ops });

    // One object.
    let mut object_params = vec![name_param(kind)];
    if r.namespaced {
        object_params.push(ns_param());
    }
    object_params.push(p_pretty());
    let object_ops = |suffix: &str, what: &str, def: &str, op_gvk: &(String, String, String), with_delete: bool| {
        let mut ops = vec![
            op(
                "get",
                "get",
                format!("read{infix}{ns_word}{kind}{suffix}"),
                format!("read {what} of the specified {kind}"),
                vec![],
                None,
                vec![(200, "OK", def.to_string())],
                PRODUCES,
                op_gvk,
            ),
            op(
                "put",
                "put",
                format!("replace{infix}{ns_word}{kind}{suffix}"),
                format!("replace {what} of the specified {kind}"),
                vec![p_dry_run(), p_field_manager(false), p_field_validation()],
                body(def, vec!["*/*"], true),
                vec![(200, "OK", def.to_string()), (201, "Created", def.to_string())],
                PRODUCES,
                op_gvk,
            ),
            op(
                "patch",
                "patch",
                format!("patch{infix}{ns_word}{kind}{suffix}"),
                format!("partially update {what} of the specified {kind}"),
                vec![p_dry_run(), p_field_manager(true), p_field_validation(), p_force()],
                body(super::schemas::PATCH, patch_types.clone(), true),
                vec![(200, "OK", def.to_string()), (201, "Created", def.to_string())],
                PRODUCES,
                op_gvk,
            ),
        ];
        if with_delete {
            ops.push(op(
                "delete",
                "delete",
                format!("delete{infix}{ns_word}{kind}"),
                format!("delete a {kind}"),
                delete_params(),
                body(&del_opts, vec!["*/*"], false),
                vec![(200, "OK", status.clone()), (202, "Accepted", status.clone())],
                PRODUCES,
                op_gvk,
            ));
        }
        ops
    };
    let object_path = format!("{prefix}{ns_seg}/{}/{{name}}", r.plural);
    items.push(PathItem {
        path: object_path.clone(),
        params: object_params.clone(),
        operations: object_ops("", "the", definition, &gvk, true),
    });
    for s in &r.subresources {
        match s {
            Subresource::Status => items.push(PathItem {
                path: format!("{object_path}/status"),
                params: object_params.clone(),
                operations: object_ops("Status", "status", definition, &gvk, false),
            }),
            Subresource::Scale(_) => {
                let scale_gvk = ("autoscaling".to_string(), "v1".to_string(), "Scale".to_string());
                let mut params = object_params.clone();
                params[0] = name_param("Scale");
                items.push(PathItem {
                    path: format!("{object_path}/scale"),
                    params,
                    operations: object_ops("Scale", "scale", super::schemas::SCALE, &scale_gvk, false),
                });
            }
            Subresource::Part(part) => {
                let title: String =
                    part.chars().take(1).flat_map(char::to_uppercase).chain(part.chars().skip(1)).collect();
                items.push(PathItem {
                    path: format!("{object_path}/{part}"),
                    params: object_params.clone(),
                    operations: object_ops(&title, part, definition, &gvk, false),
                })
            }
            // Only the namespace controller writes it; clients neither read
            // nor patch it, so it adds nothing a client needs here.
            Subresource::Finalize | Subresource::Handler(_) => {}
        }
    }

    // All namespaces.
    if r.namespaced {
        let mut params = list_params();
        params.push(p_pretty());
        params.sort_by_key(|p| p.name);
        items.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            params,
            operations: vec![op(
                "get",
                "list",
                format!("list{infix}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                vec![],
                None,
                vec![(200, "OK", list_definition.to_string())],
                PRODUCES_WATCH,
                &gvk,
            )],
        });
    }

    // Watch paths (deprecated upstream, still listed).
    let watch_params = |extra: Vec<Param>| {
        let mut p = extra;
        p.extend(list_params());
        p.push(p_pretty());
        p
    };
    let watch_op = |action: &'static str, id: String, description: String| {
        op("get", action, id, description, vec![], None, vec![(200, "OK", watch_event.clone())], PRODUCES_WATCH, &gvk)
    };
    let mut ns_params = vec![];
    if r.namespaced {
        ns_params.push(ns_param());
    }
    items.push(PathItem {
        path: format!("{prefix}/watch{ns_seg}/{}", r.plural),
        params: watch_params(ns_params.clone()),
        operations: vec![watch_op(
            "watchlist",
            format!("watch{infix}{ns_word}{kind}List"),
            format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
        )],
    });
    let mut named = vec![name_param(kind)];
    named.extend(ns_params);
    items.push(PathItem {
        path: format!("{prefix}/watch{ns_seg}/{}/{{name}}", r.plural),
        params: watch_params(named),
        operations: vec![watch_op(
            "watch",
            format!("watch{infix}{ns_word}{kind}"),
            format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
        )],
    });
    if r.namespaced {
        items.push(PathItem {
            path: format!("{prefix}/watch/{}", r.plural),
            params: watch_params(vec![]),
            operations: vec![watch_op(
                "watchlist",
                format!("watch{infix}{kind}ListForAllNamespaces"),
                format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
            )],
        });
    }
    items
}

/// The "get available resources" path of a group-version.
pub fn resources_path(group: &str, version: &str) -> (String, Value, Value) {
    let prefix = format!("/{}/", super::schemas::gv_path(group, version));
    let id = format!("get{}APIResources", id_infix(group, version));
    let tag = tag(group, version);
    let list_ref_v3 =
        json!({"$ref": format!("{}{}", super::schemas::REF_PREFIX_V3, super::schemas::API_RESOURCE_LIST)});
    let mut content = Map::new();
    for m in PRODUCES {
        content.insert(m.to_string(), json!({"schema": list_ref_v3}));
    }
    let v3 = json!({"get": {
        "description": "get available resources",
        "operationId": id,
        "responses": {"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}},
        "tags": [tag],
    }});
    let v2 = json!({"get": {
        "description": "get available resources",
        "operationId": id,
        "consumes": PRODUCES,
        "produces": PRODUCES,
        "schemes": ["https"],
        "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{}", super::schemas::API_RESOURCE_LIST)}}, "401": {"description": "Unauthorized"}},
        "tags": [tag],
    }});
    (prefix, v3, v2)
}

fn gvk_json(gvk: &(String, String, String)) -> Value {
    json!({"group": gvk.0, "kind": gvk.2, "version": gvk.1})
}

fn param_v3(p: &Param) -> Value {
    let mut v = json!({"description": p.description, "in": p.location, "name": p.name,
                       "schema": {"type": p.ty, "uniqueItems": true}});
    if p.required {
        v["required"] = json!(true);
    }
    v
}

fn param_v2(p: &Param) -> Value {
    let mut v =
        json!({"description": p.description, "in": p.location, "name": p.name, "type": p.ty, "uniqueItems": true});
    if p.required {
        v["required"] = json!(true);
    }
    v
}

/// The path item as OpenAPI v3.
pub fn path_item_v3(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        let mut o = json!({
            "description": op.description,
            "operationId": op.operation_id,
            "tags": [tag],
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": gvk_json(&op.gvk),
        });
        if !op.params.is_empty() {
            o["parameters"] = Value::Array(op.params.iter().map(param_v3).collect());
        }
        if let Some(b) = &op.body {
            let mut content = Map::new();
            for m in &b.media_types {
                content.insert(
                    m.to_string(),
                    json!({"schema": {"$ref": format!("{}{}", super::schemas::REF_PREFIX_V3, b.definition)}}),
                );
            }
            let mut rb = json!({"content": content});
            if b.required {
                rb["required"] = json!(true);
            }
            o["requestBody"] = rb;
        }
        let mut responses = Map::new();
        for (code, desc, def) in &op.responses {
            let mut content = Map::new();
            for m in &op.produces {
                content.insert(
                    m.to_string(),
                    json!({"schema": {"$ref": format!("{}{def}", super::schemas::REF_PREFIX_V3)}}),
                );
            }
            responses.insert(code.to_string(), json!({"content": content, "description": desc}));
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        o["responses"] = Value::Object(responses);
        out.insert(op.method.to_string(), o);
    }
    if !item.params.is_empty() {
        out.insert("parameters".into(), Value::Array(item.params.iter().map(param_v3).collect()));
    }
    Value::Object(out)
}

/// The path item as Swagger 2.0.
pub fn path_item_v2(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        let consumes: Vec<&str> = match &op.body {
            Some(b) if op.method == "patch" => b.media_types.clone(),
            _ => vec!["*/*"],
        };
        let mut params: Vec<Value> = Vec::new();
        if let Some(b) = &op.body {
            let mut bp =
                json!({"in": "body", "name": "body", "schema": {"$ref": format!("#/definitions/{}", b.definition)}});
            if b.required {
                bp["required"] = json!(true);
            }
            params.push(bp);
        }
        params.extend(op.params.iter().map(param_v2));
        let mut o = json!({
            "consumes": consumes,
            "description": op.description,
            "operationId": op.operation_id,
            "produces": op.produces,
            "schemes": ["https"],
            "tags": [tag],
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": gvk_json(&op.gvk),
        });
        if !params.is_empty() {
            o["parameters"] = Value::Array(params);
        }
        let mut responses = Map::new();
        for (code, desc, def) in &op.responses {
            responses.insert(
                code.to_string(),
                json!({"description": desc, "schema": {"$ref": format!("#/definitions/{def}")}}),
            );
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        o["responses"] = Value::Object(responses);
        out.insert(op.method.to_string(), o);
    }
    if !item.params.is_empty() {
        out.insert("parameters".into(), Value::Array(item.params.iter().map(param_v2).collect()));
    }
    Value::Object(out)
}
