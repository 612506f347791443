//! Levels, versions and the policy a namespace's labels select (upstream's
//! pod-security-admission/api): `pod-security.kubernetes.io/<mode>` names a
//! level, `<mode>-version` the version of the standard it is checked at.

use std::collections::BTreeMap;
use std::fmt;

use generic_server::status::Cause;
use serde_json::json;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// Upstream's ParseLevel: an unknown level reads as restricted (callers
    /// decide whether to fail open).
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A version of the standards: `v1.x`, or `latest` (newer than any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    /// Upstream's ParseVersion (`latest` or `v1.<minor>` without leading zeros).
    pub fn parse(s: &str) -> Result<Version, String> {
        const WHY: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let minor = s.strip_prefix("v1.").ok_or(WHY)?;
        let digits = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        if !digits || (minor.len() > 1 && minor.starts_with('0')) {
            return Err(WHY.into());
        }
        minor.parse().map(Version::Minor).map_err(|_| WHY.into())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED_LATEST: LevelVersion = LevelVersion { level: Level::Privileged, version: Version::Latest };

    fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The level and version of each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    fn default() -> Self {
        let p = LevelVersion::PRIVILEGED_LATEST;
        Policy { enforce: p, audit: p, warn: p }
    }
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn].iter().all(|lv| lv.level == Level::Privileged)
    }

    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }

    /// Upstream's PolicyToEvaluate: the policy `labels` select over
    /// `defaults`, and the labels that do not parse. An unparsable enforce
    /// level fails closed (restricted), audit and warn fail open
    /// (privileged); an enforce level above warn raises warn to it unless
    /// warn is labelled.
    pub fn from_labels(labels: &BTreeMap<String, String>, defaults: &Policy) -> (Policy, Vec<Cause>) {
        let mut p = *defaults;
        let mut errs = Vec::new();
        if labels.is_empty() {
            return (p, errs);
        }
        let mut bad = |label: &str, value: &str, why: String| {
            errs.push(Cause::invalid(format!("metadata.labels[{label}]"), &json!(value), &why));
        };
        let mut has_enforce_level = false;
        if let Some(v) = labels.get(ENFORCE_LEVEL_LABEL) {
            p.enforce.level = Level::parse(v).unwrap_or_else(|why| {
                bad(ENFORCE_LEVEL_LABEL, v, why);
                Level::Restricted
            });
            has_enforce_level = Level::parse(v).is_ok();
        }
        if let Some(v) = labels.get(ENFORCE_VERSION_LABEL) {
            p.enforce.version = parse_version(v, ENFORCE_VERSION_LABEL, &mut bad);
        }
        if let Some(v) = labels.get(AUDIT_LEVEL_LABEL) {
            p.audit.level = parse_level_open(v, AUDIT_LEVEL_LABEL, &mut bad);
        }
        if let Some(v) = labels.get(AUDIT_VERSION_LABEL) {
            p.audit.version = parse_version(v, AUDIT_VERSION_LABEL, &mut bad);
        }
        let has_warn_level = labels.contains_key(WARN_LEVEL_LABEL);
        if let Some(v) = labels.get(WARN_LEVEL_LABEL) {
            p.warn.level = parse_level_open(v, WARN_LEVEL_LABEL, &mut bad);
        }
        let has_warn_version = labels.contains_key(WARN_VERSION_LABEL);
        if let Some(v) = labels.get(WARN_VERSION_LABEL) {
            p.warn.version = parse_version(v, WARN_VERSION_LABEL, &mut bad);
        }
        if !has_warn_level && has_enforce_level && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !has_warn_version {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errs)
    }
}

fn parse_version(v: &str, label: &str, bad: &mut impl FnMut(&str, &str, String)) -> Version {
    Version::parse(v).unwrap_or_else(|why| {
        bad(label, v, why);
        Version::Latest
    })
}

fn parse_level_open(v: &str, label: &str, bad: &mut impl FnMut(&str, &str, String)) -> Level {
    Level::parse(v).unwrap_or_else(|why| {
        bad(label, v, why);
        Level::Privileged
    })
}

/// Upstream's field.ErrorList.ToAggregate().Error(): one error alone, more
/// in brackets.
pub fn aggregate(errs: &[Cause]) -> String {
    let parts: Vec<String> = errs.iter().map(Cause::full_message).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn versions_parse_as_upstream() {
        assert_eq!(Version::parse("latest"), Ok(Version::Latest));
        assert_eq!(Version::parse("v1.0"), Ok(Version::Minor(0)));
        assert_eq!(Version::parse("v1.25"), Ok(Version::Minor(25)));
        for bad in ["v1.01", "1.25", "v2.0", "v1.", "v1.x", ""] {
            assert_eq!(Version::parse(bad), Err(r#"must be "latest" or "v1.x""#.to_string()), "{bad}");
        }
        assert!(Version::Minor(99) < Version::Latest);
    }

    #[test]
    fn labels_select_the_policy() {
        let d = Policy::default();
        let (p, errs) = Policy::from_labels(&labels(&[(ENFORCE_LEVEL_LABEL, "baseline")]), &d);
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        // Warn follows an enforce level above it.
        assert_eq!(p.warn.to_string(), "baseline:latest");
        let (p, _) = Policy::from_labels(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.24"),
                (WARN_LEVEL_LABEL, "baseline"),
            ]),
            &d,
        );
        assert_eq!(p.enforce.to_string(), "restricted:v1.24");
        assert_eq!(p.warn.to_string(), "baseline:latest");
    }

    #[test]
    fn bad_labels_fail_closed_for_enforce_and_open_for_the_others() {
        let (p, errs) = Policy::from_labels(
            &labels(&[(ENFORCE_LEVEL_LABEL, "strict"), (AUDIT_LEVEL_LABEL, "x")]),
            &Policy::default(),
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.audit.level, Level::Privileged);
        assert_eq!(p.warn.level, Level::Privileged, "a bad enforce label does not raise warn");
        assert_eq!(
            aggregate(&errs),
            "[metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of \
             privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: \
             \"x\": must be one of privileged, baseline, restricted]"
        );
    }
}
