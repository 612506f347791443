//! Parsing a request path and method into upstream's RequestInfo: what is being
//! asked (verb) of which resource. Authorization, admission and routing all read
//! this one value rather than re-parsing paths.

use std::borrow::Cow;

/// A RequestInfo field: a name, namespace or verb is held inline (up to 24
/// bytes), so parsing a request's path allocates nothing for most requests.
pub type Text = compact_str::CompactString;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    pub path: Text,
    /// Upstream's verbs: get, list, watch, create, update, patch, delete,
    /// deletecollection; for non-resource requests the lower-cased method.
    pub verb: Text,
    /// "api" or "apis"
    pub api_prefix: &'static str,
    pub api_group: Text,
    pub api_version: Text,
    pub namespace: Text,
    pub resource: Text,
    pub subresource: Text,
    pub name: Text,
    /// How many segments the path has from the resource on (upstream's
    /// Parts): resource, name, subresource, and anything after.
    pub parts_len: usize,
    /// The segments after the subresource, which only a subresource that
    /// takes a path serves (a proxy's).
    pub rest: Vec<String>,
    /// Whether the resource was addressed under `namespaces/{namespace}/`
    /// (the namespace object's own path `namespaces/{name}` is not).
    pub namespace_in_path: bool,
    /// Whether the path used the deprecated `watch/` prefix.
    pub watch_prefix: bool,
    /// The `fieldSelector` of a list, watch or deletecollection, which
    /// authorizers may consult (upstream's AuthorizeWithSelectors, on in 1.33).
    pub field_selector: String,
}

impl RequestInfo {
    pub fn group_version(&self) -> String {
        if self.api_group.is_empty() {
            self.api_version.to_string()
        } else {
            format!("{}/{}", self.api_group, self.api_version)
        }
    }
}

/// Subresources of a namespace that stay on the namespace resource itself.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// The `key=value` pairs of a query as sent (still escaped), in order; a
/// pair without '=' has an empty value.
pub(crate) fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    pieces(query.unwrap_or(""), b'&').map(|p| match p.bytes().position(|b| b == b'=') {
        // '=' is ASCII: both sides of it are character boundaries.
        Some(eq) => (&p[..eq], &p[eq + 1..]),
        None => (p, ""),
    })
}

/// The non-empty pieces of `s` between occurrences of the ASCII byte `sep`.
/// Found byte by byte: for a path's or a query's few short pieces that is
/// cheaper than `str::split`'s searcher, and every request is split so.
fn pieces(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < s.len() {
            let end = s.as_bytes()[start..].iter().position(|b| *b == sep).map_or(s.len(), |i| start + i);
            // `sep` is ASCII, so both ends are character boundaries.
            let piece = &s[start..end];
            start = end + 1;
            if !piece.is_empty() {
                return Some(piece);
            }
        }
        None
    })
}

/// Every parameter of a query, decoded, in order: what a reader of each
/// key's first value (Go's Values.Get) searches. A parameter without
/// escapes is borrowed from the query.
pub fn query_params<'q, C: FromIterator<(Cow<'q, str>, Cow<'q, str>)>>(query: Option<&'q str>) -> C {
    // One look at the whole query spares most queries one per key and value.
    if !query.is_some_and(|q| escaped(q, true)) {
        return query_pairs(query).map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v))).collect();
    }
    query_pairs(query).map(|(k, v)| (unescape(k, true), unescape(v, true))).collect()
}

/// Every value of `key` in `query`, unescaped, in order (Go's
/// `URL.Query()[key]`); only the values of `key` are unescaped.
pub fn query_values<'a>(query: Option<&'a str>, key: &'a str) -> impl Iterator<Item = String> + 'a {
    // Keys are compared as sent unless the query escapes something.
    let escapes = query.is_some_and(|q| escaped(q, true));
    query_pairs(query)
        .filter(move |(k, _)| *k == key || (escapes && escaped(k, true) && query_unescape(k) == key))
        .map(|(_, v)| query_unescape(v))
}

/// The first value of `key` in `query`, unescaped, as Go's
/// `URL.Query().Get`; None when absent. Reads one parameter without
/// building the map of all of them.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query_values(query, key).next()
}

/// Go's url.QueryUnescape: `%XX` escapes, and '+' is a space.
pub fn query_unescape(s: &str) -> String {
    unescape(s, true).into_owned()
}

/// Go's url.PathUnescape: `%XX` escapes; '+' is itself (a name may hold one).
pub fn path_unescape(s: &str) -> String {
    unescape(s, false).into_owned()
}

/// Whether `s` has anything [`unescape`] would change.
fn escaped(s: &str, plus_is_space: bool) -> bool {
    // A plain scan: memchr's setup costs more than a key or value is long.
    s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+'))
}

/// `s` unescaped, or `s` as it is when its escaping is not valid (Go's
/// unescapers refuse it; upstream then keeps the raw text).
fn unescape(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    // Most segments and parameters have nothing to unescape.
    if !escaped(s, plus_is_space) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                match hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => return Cow::Borrowed(s),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_or(Cow::Borrowed(s), Cow::Owned)
}

pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
    let mut info = RequestInfo { path: path.into(), ..Default::default() };
    let non_resource = |mut info: RequestInfo| {
        info.verb = Text::from(method.as_str()).to_ascii_lowercase();
        info
    };
    // On the stack: a resource path has at most eight segments but for a
    // proxy's tail, and this runs for every request.
    let segments = pieces(path, b'/');
    // Most paths have nothing escaped: their segments are borrowed unchecked.
    let parts: smallvec::SmallVec<[Cow<'_, str>; 8]> = match escaped(path, false) {
        false => segments.map(Cow::Borrowed).collect(),
        true => segments.map(|s| unescape(s, false)).collect(),
    };
    let mut parts = parts.as_slice();
    let next = |parts: &mut &[Cow<'_, str>]| {
        let (first, rest) = parts.split_first()?;
        *parts = rest;
        Some(Text::from(first.as_ref()))
    };
    match parts.first().map(|p| p.as_ref()) {
        Some("api") => info.api_prefix = "api",
        Some("apis") => info.api_prefix = "apis",
        _ => return non_resource(info),
    }
    parts = &parts[1..];
    if info.api_prefix == "apis" {
        let Some(group) = next(&mut parts) else { return non_resource(info) };
        info.api_group = group;
    }
    let Some(version) = next(&mut parts) else { return non_resource(info) };
    info.api_version = version;
    if parts.is_empty() {
        return non_resource(info);
    }
    if parts[0] == "watch" {
        info.watch_prefix = true;
        parts = &parts[1..];
        if parts.is_empty() {
            return non_resource(info);
        }
    }
    info.is_resource_request = true;
    info.verb = match *method {
        _ if info.watch_prefix => "watch",
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
    .into();

    if parts[0] == "namespaces" && parts.len() > 1 {
        info.namespace = parts[1].as_ref().into();
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2].as_ref()) {
            parts = &parts[2..];
            info.namespace_in_path = true;
        }
    }
    info.parts_len = parts.len();
    let field = |i: usize| parts.get(i).map(|p| Text::from(p.as_ref())).unwrap_or_default();
    (info.resource, info.name, info.subresource) = (field(0), field(1), field(2));
    info.rest = parts.get(3..).unwrap_or_default().iter().map(|p| p.to_string()).collect();

    if info.name.is_empty() && info.verb == "get" {
        let watching = matches!(query_param(query, "watch").as_deref(), Some("1" | "true"));
        info.verb = if watching { "watch".into() } else { "list".into() };
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    if matches!(info.verb.as_str(), "list" | "watch" | "deletecollection") {
        info.field_selector = query_param(query, "fieldSelector").unwrap_or_default();
    }
    // As upstream: a list or watch of one object by `metadata.name` names it,
    // so authorizers may allow it by name (RBAC's resourceNames, the Node
    // authorizer's single-object watches).
    if info.name.is_empty() && matches!(info.verb.as_str(), "list" | "watch") {
        if let Some(name) = exact_name(&info.field_selector) {
            info.name = name;
        }
    }
    // `?watch=` turns only a collection GET into a watch: a GET of one object
    // stays a get, as upstream's.
    info
}

/// The name a field selector requires exactly (upstream's
/// RequiresExactMatch("metadata.name")), when it is a valid path segment.
fn exact_name(field_selector: &str) -> Option<Text> {
    let selector = crate::selectors::FieldSelector::parse(field_selector).ok()?;
    let name = selector.required_value("metadata.name")?;
    let valid = !matches!(name, "" | "." | "..") && !name.contains(['/', '%']);
    valid.then(|| name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: &str, path: &str) -> RequestInfo {
        let (path, q) = path.split_once('?').map(|(a, b)| (a, Some(b))).unwrap_or((path, None));
        parse(&m.parse().unwrap(), path, q)
    }

    #[test]
    fn core_namespaced() {
        let i = p("GET", "/api/v1/namespaces/default/pods/web");
        assert!(i.is_resource_request);
        assert_eq!(
            (i.verb.as_str(), i.namespace.as_str(), i.resource.as_str(), i.name.as_str()),
            ("get", "default", "pods", "web")
        );
        let i = p("GET", "/api/v1/namespaces/default/pods?watch=true");
        assert_eq!((i.verb.as_str(), i.namespace_in_path), ("watch", true));
        // A GET of one object ignores `watch`, as upstream's.
        let i = p("GET", "/api/v1/namespaces/default/pods/web?watch=true");
        assert_eq!(i.verb, "get");
        let i = p("GET", "/api/v1/pods");
        assert_eq!((i.verb.as_str(), i.namespace_in_path, i.parts_len), ("list", false, 1));
        let i = p("DELETE", "/api/v1/namespaces/default/pods");
        assert_eq!(i.verb, "deletecollection");
        let i = p("GET", "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ds1&watch=1");
        assert_eq!((i.verb.as_str(), i.name.as_str(), i.field_selector.as_str()), ("watch", "s1", "metadata.name=s1"));
        let i = p("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,metadata.name!%3Dx");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("list", ""));
        let i = p("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3D..");
        assert_eq!(i.name, "");
        let i = p("PUT", "/api/v1/namespaces/default/pods/web/status");
        assert_eq!((i.verb.as_str(), i.subresource.as_str()), ("update", "status"));
    }

    #[test]
    fn namespaces_themselves() {
        let i = p("GET", "/api/v1/namespaces/foo");
        assert_eq!((i.resource.as_str(), i.name.as_str(), i.namespace.as_str()), ("namespaces", "foo", "foo"));
        assert!(!i.namespace_in_path);
        let i = p("GET", "/api/v1/namespaces/foo/namespaces/foo");
        assert_eq!((i.resource.as_str(), i.name.as_str(), i.namespace_in_path), ("namespaces", "foo", true));
        let i = p("PUT", "/api/v1/namespaces/foo/finalize");
        assert_eq!((i.resource.as_str(), i.subresource.as_str()), ("namespaces", "finalize"));
        let i = p("GET", "/api/v1/namespaces");
        assert_eq!((i.verb.as_str(), i.resource.as_str()), ("list", "namespaces"));
    }

    #[test]
    fn groups_and_non_resource() {
        let i = p("POST", "/apis/apps/v1/namespaces/ns/deployments");
        assert_eq!((i.api_group.as_str(), i.api_version.as_str(), i.verb.as_str()), ("apps", "v1", "create"));
        let i = p("GET", "/apis/apps/v1");
        assert!(!i.is_resource_request);
        let i = p("GET", "/healthz");
        assert!(!i.is_resource_request);
        assert_eq!(i.verb, "get");
        let i = p("GET", "/api/v1/watch/namespaces/ns/pods");
        assert_eq!((i.verb.as_str(), i.namespace.as_str(), i.resource.as_str()), ("watch", "ns", "pods"));
        assert!(i.watch_prefix);
    }

    #[test]
    fn decoding() {
        assert_eq!(query_unescape("a%3Db%2Cc+d"), "a=b,c d");
        assert_eq!(path_unescape("a%3Ab+c"), "a:b+c", "'+' is a space only in a query");
        for invalid in ["%", "%4", "a%zz", "%+4", "%4%41", "%ff"] {
            assert_eq!(query_unescape(invalid), invalid, "kept as sent");
        }
        assert_eq!(path_unescape("example.com%2fkey"), "example.com/key");
        let i = p("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/a+b");
        assert_eq!(i.name, "a+b");
        let i = p("GET", "/api/v1/namespaces/ns/configmaps/a%2Bb");
        assert_eq!(i.name, "a+b");
        let q: Vec<_> = query_params(Some("labelSelector=app%3Dweb&limit=5&limit=6"));
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(q, [("labelSelector", "app=web"), ("limit", "5"), ("limit", "6")]);
        let q = Some("limit=5&label%53elector=app%3Dweb&limit=6&watch");
        assert_eq!(query_param(q, "labelSelector").as_deref(), Some("app=web"), "a key unescaped");
        assert_eq!(query_param(q, "limit").as_deref(), Some("5"), "the first value, as Go's Get");
        assert_eq!(query_param(q, "watch").as_deref(), Some(""));
        assert_eq!(query_param(q, "continue"), None);
    }

    #[test]
    fn pieces_skip_empty_ones() {
        let split = |s, sep| pieces(s, sep).collect::<Vec<_>>();
        assert_eq!(split("/api//v1/pods/", b'/'), ["api", "v1", "pods"]);
        assert_eq!(split("//", b'/'), Vec::<&str>::new());
        assert_eq!(split("", b'/'), Vec::<&str>::new());
        assert_eq!(split("é/ü", b'/'), ["é", "ü"]);
        let pairs: Vec<_> = query_pairs(Some("&a=1&&b&c=&=d&e=f=g")).collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", ""), ("", "d"), ("e", "f=g")]);
        let i = p("GET", "//api//v1/namespaces//ns/pods/web/");
        assert_eq!((i.namespace.as_str(), i.resource.as_str(), i.name.as_str()), ("ns", "pods", "web"));
    }
}
