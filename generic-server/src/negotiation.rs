//! Content negotiation: which media type a request body is in, and which form a
//! response should take (JSON, YAML, Table, PartialObjectMetadata, aggregated
//! discovery).

/// The forms a response can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// meta.k8s.io Table in the given version (v1 or v1beta1).
    Table(String),
    /// PartialObjectMetadata(List) in the given meta.k8s.io version.
    PartialObjectMetadata(String),
    /// apidiscovery.k8s.io APIGroupDiscoveryList in the given version.
    AggregatedDiscovery(String),
}

/// One entry of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub fn parse_accept(header: &str) -> Vec<MediaRange> {
    header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let essence = pieces.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = pieces
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

/// What the client asked for; `None` means nothing offered is acceptable.
/// `allow_table` is false for requests that return no object (discovery).
pub fn negotiate(accept: Option<&str>, allow_table: bool, allow_discovery: bool) -> Option<Output> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Output::Json);
    };
    for m in parse_accept(accept) {
        let json_like = matches!(m.essence.as_str(), "application/json" | "*/*" | "application/*");
        match (m.param("as"), m.param("g")) {
            (Some("Table"), Some("meta.k8s.io")) if allow_table && json_like => {
                return Some(Output::Table(m.param("v").unwrap_or("v1").to_string()));
            }
            (Some("PartialObjectMetadata") | Some("PartialObjectMetadataList"), Some("meta.k8s.io"))
                if allow_table && json_like =>
            {
                return Some(Output::PartialObjectMetadata(m.param("v").unwrap_or("v1").to_string()));
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io")) | (None, Some("apidiscovery.k8s.io"))
                if allow_discovery && json_like =>
            {
                let v = m.param("v").unwrap_or("v2");
                if v == "v2" || v == "v2beta1" {
                    return Some(Output::AggregatedDiscovery(v.to_string()));
                }
            }
            (Some(_), _) | (None, Some(_)) => continue,
            (None, None) => {}
        }
        match m.essence.as_str() {
            "application/json" | "*/*" | "application/*" => return Some(Output::Json),
            "application/yaml" => return Some(Output::Yaml),
            _ => continue,
        }
    }
    None
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
    }

    #[test]
    fn discovery_and_protobuf() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(a), false, true), Some(Output::AggregatedDiscovery("v2".into())));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, */*"), true, false), Some(Output::Json));
        assert_eq!(negotiate(Some("text/html"), true, false), None);
        assert_eq!(negotiate(Some("application/yaml"), true, false), Some(Output::Yaml));
    }
}
