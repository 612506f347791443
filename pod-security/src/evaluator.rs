//! Which checks a level and version run, and their results together
//! (upstream's policy/registry.go and AggregateCheckResults): baseline
//! checks, then restricted ones; a restricted check replaces the baseline
//! checks it overrides at the versions it exists; a version newer than every
//! check's newest (and `latest`) runs the newest implementations.

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{Level, LevelVersion, Version};
use crate::checks::{Check, CheckFn, Violation, CHECKS};

/// The violations of one pod at one level and version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub violations: Vec<Violation>,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The reasons alone, comma-separated (the namespace relabel warnings).
    pub fn reasons(&self) -> String {
        self.violations.iter().map(|v| v.reason).collect::<Vec<_>>().join(", ")
    }

    /// `reason (detail), reason (detail)` (upstream's ForbiddenDetail).
    pub fn details(&self) -> String {
        let parts: Vec<String> = self
            .violations
            .iter()
            .map(|v| if v.detail.is_empty() { v.reason.to_string() } else { format!("{} ({})", v.reason, v.detail) })
            .collect();
        parts.join(", ")
    }
}

/// The newest minor version any check changes at.
fn max_minor() -> u32 {
    CHECKS.iter().filter_map(|c| c.versions.last().map(|v| v.0)).max().unwrap_or(0)
}

/// The implementation of `check` at minor version `v`, if it exists there.
fn at(check: &Check, v: u32) -> Option<CheckFn> {
    check.versions.iter().rev().find(|(min, _)| *min <= v).map(|(_, f)| *f)
}

/// The checks `lv` runs, in reporting order.
pub fn checks_for(lv: LevelVersion) -> Vec<CheckFn> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let max = max_minor();
    let v = match lv.version {
        Version::Minor(m) => m.min(max),
        Version::Latest => max,
    };
    let overridden: Vec<&str> = if lv.level == Level::Restricted {
        CHECKS
            .iter()
            .filter(|c| c.level == Level::Restricted && at(c, v).is_some())
            .flat_map(|c| c.overrides.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    CHECKS.iter().filter(|c| c.level <= lv.level && !overridden.contains(&c.id)).filter_map(|c| at(c, v)).collect()
}

/// Evaluates a pod (or pod template) against `lv`.
pub fn evaluate(lv: LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Outcome {
    Outcome { violations: checks_for(lv).into_iter().filter_map(|check| check(meta, spec)).collect() }
}
