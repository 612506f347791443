//! Content negotiation: which media type a request body is in, and which form a
//! response should take (JSON, YAML, Table, PartialObjectMetadata, aggregated
//! discovery).

/// The forms a response can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Protobuf,
    /// meta.k8s.io Table in the given version (v1 or v1beta1).
    Table(String),
    /// PartialObjectMetadata(List) in the given meta.k8s.io version.
    PartialObjectMetadata(String),
    /// apidiscovery.k8s.io APIGroupDiscoveryList in the given version.
    AggregatedDiscovery(String),
}

/// One entry of an Accept header, as munnerz/goautoneg parses it: type and
/// subtype as written, `q` apart (1 when absent, 0 when unreadable), other
/// parameters trimmed of spaces. It borrows the header: every request with
/// an Accept header other than plain JSON is parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange<'a> {
    pub kind: &'a str,
    pub subtype: &'a str,
    pub q: f64,
    pub params: smallvec::SmallVec<[(&'a str, &'a str); 3]>,
}

impl<'a> MediaRange<'a> {
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// The entries of an Accept header in goautoneg's order: by q, higher first,
/// and before a wildcard at equal footing; ill-formed entries are dropped.
pub fn parse_accept(header: &str) -> smallvec::SmallVec<[MediaRange<'_>; 3]> {
    let mut out = smallvec::SmallVec::<[MediaRange<'_>; 3]>::new();
    for part in header.split(',') {
        let mut pieces = part.trim_matches(' ').split(';');
        let range = pieces.next().unwrap_or("");
        let mut halves = range.split('/');
        let kind = halves.next().unwrap_or("").trim_matches(' ');
        let subtype = match (halves.next(), halves.next()) {
            (None, _) if kind == "*" => "*",
            (Some(sub), None) => sub.trim_matches(' '),
            _ => continue,
        };
        let mut m = MediaRange { kind, subtype, q: 1.0, params: smallvec::SmallVec::new() };
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else { continue };
            let k = k.trim_matches(' ');
            if k == "q" {
                m.q = v.parse().unwrap_or(0.0);
            } else {
                m.params.push((k, v.trim_matches(' ')));
            }
        }
        out.push(m);
    }
    // goautoneg's comparison is not a strict order (a more specific range goes
    // first even at a lower q); Go sorts a short slice by insertion, which is
    // what this replays.
    let goes_before = |a: &MediaRange, b: &MediaRange| {
        a.q > b.q || (a.kind != "*" && b.kind == "*") || (a.subtype != "*" && b.subtype == "*")
    };
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && goes_before(&out[j], &out[j - 1]) {
            out.swap(j, j - 1);
            j -= 1;
        }
    }
    out
}

/// What an endpoint can answer with besides JSON and YAML.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer {
    /// Tables and PartialObjectMetadata: endpoints that return objects.
    pub table: bool,
    /// Aggregated discovery documents.
    pub discovery: bool,
    /// Protobuf: every typed response (custom resources have no protobuf form).
    pub protobuf: bool,
}

/// The media types served, in upstream's order of preference for a wildcard.
const SERVED: [&str; 3] = ["json", "yaml", "vnd.kubernetes.protobuf"];

/// What the client asked for, as upstream's NegotiateMediaTypeOptions picks
/// it: the first Accept entry (in goautoneg's order) that names a served media
/// type whose parameters this endpoint can honour. `None` is 406.
pub fn negotiate_offer(accept: Option<&str>, offer: Offer) -> Option<Output> {
    // What most clients send (and curl's default), answered without parsing it.
    let Some(accept) = accept.filter(|a| !matches!(*a, "" | "application/json" | "*/*")) else {
        return Some(Output::Json);
    };
    for m in parse_accept(accept) {
        for subtype in SERVED {
            let matches = (m.kind == "application" && (m.subtype == subtype || m.subtype == "*"))
                || (m.kind == "*" && m.subtype == "*");
            if let Some(o) = matches.then(|| accept_clause(&m, subtype, offer)).flatten() {
                return Some(o);
            }
        }
    }
    None
}

/// [`negotiate_offer`] for an endpoint that answers protobuf for typed values.
pub fn negotiate(accept: Option<&str>, allow_table: bool, allow_discovery: bool) -> Option<Output> {
    negotiate_offer(accept, Offer { table: allow_table, discovery: allow_discovery, protobuf: true })
}

/// Upstream's acceptMediaTypeOptions and the endpoint's restrictions: a
/// conversion (`as`, `g`, `v`) must be one the endpoint serves in this media
/// type; `stream` only `watch` in a streaming form; `sv` only v1.
fn accept_clause(m: &MediaRange, subtype: &str, offer: Offer) -> Option<Output> {
    match m.param("stream") {
        Some(s) if !s.is_empty() && (s != "watch" || subtype == "yaml") => return None,
        _ => {}
    }
    if m.param("sv").is_some_and(|v| !v.is_empty() && v != "v1") {
        return None;
    }
    let json = subtype == "json";
    let (kind, group, version) = (m.param("as"), m.param("g"), m.param("v"));
    if kind.is_none() && group.is_none() && version.is_none() {
        return match subtype {
            "json" => Some(Output::Json),
            "yaml" => Some(Output::Yaml),
            _ => offer.protobuf.then_some(Output::Protobuf),
        };
    }
    let version = version.unwrap_or("");
    match (group, kind) {
        (Some("meta.k8s.io"), Some(k)) if matches!(version, "v1" | "v1beta1") && offer.table && json => match k {
            "Table" => Some(Output::Table(version.into())),
            "PartialObjectMetadata" | "PartialObjectMetadataList" => {
                Some(Output::PartialObjectMetadata(version.into()))
            }
            _ => None,
        },
        (Some("apidiscovery.k8s.io"), None | Some("APIGroupDiscoveryList")) if offer.discovery && json => {
            let v = if version.is_empty() { "v2" } else { version };
            matches!(v, "v2" | "v2beta1").then(|| Output::AggregatedDiscovery(v.into()))
        }
        _ => None,
    }
}

/// The media type a request body is declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    Protobuf,
}

pub fn body_format(content_type: Option<&str>) -> Option<BodyFormat> {
    let ct = content_type.unwrap_or("application/json");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "" | "application/json" | "*/*" => Some(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Some(BodyFormat::Yaml),
        "application/vnd.kubernetes.protobuf" => Some(BodyFormat::Protobuf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_tables() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(a), true, false), Some(Output::Table("v1".into())));
        assert_eq!(negotiate(Some(a), false, false), Some(Output::Json));
        // A conversion without a version is none upstream serves.
        assert_eq!(negotiate(Some("application/json;as=Table;g=meta.k8s.io"), true, false), None);
    }

    #[test]
    fn discovery() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(a), false, true), Some(Output::AggregatedDiscovery("v2".into())));
        assert_eq!(negotiate(Some("text/html"), true, false), None);
        assert_eq!(negotiate(Some("application/yaml"), true, false), Some(Output::Yaml));
        assert_eq!(negotiate(Some("*/*"), true, false), Some(Output::Json));
        assert_eq!(negotiate(Some("application/*"), true, false), Some(Output::Json));
    }

    #[test]
    fn protobuf_and_quality() {
        let pb = "application/vnd.kubernetes.protobuf";
        assert_eq!(negotiate(Some(pb), true, false), Some(Output::Protobuf));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, */*"), true, false), Some(Output::Protobuf));
        assert_eq!(
            negotiate(Some("application/json;q=0.5, application/vnd.kubernetes.protobuf"), true, false),
            Some(Output::Protobuf)
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf;q=0.1, application/json"), true, false),
            Some(Output::Json)
        );
        // Custom resources have no protobuf form: 406, or the next choice.
        let cr = Offer { table: true, ..Offer::default() };
        assert_eq!(negotiate_offer(Some(pb), cr), None);
        assert_eq!(
            negotiate_offer(Some("application/vnd.kubernetes.protobuf,application/json"), cr),
            Some(Output::Json)
        );
        // goautoneg puts a specific range before a wildcard whatever its q.
        assert_eq!(negotiate(Some("*/*;q=1, application/yaml;q=0.5"), true, false), Some(Output::Yaml));
        // Unreadable q is 0, still acceptable (upstream does not drop q=0).
        assert_eq!(negotiate(Some("application/yaml;q=x"), true, false), Some(Output::Yaml));
        assert_eq!(negotiate(Some("application/json;stream=watch"), true, false), Some(Output::Json));
        assert_eq!(negotiate(Some("application/yaml;stream=watch"), true, false), None);
    }
}
