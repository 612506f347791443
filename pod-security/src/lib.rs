//! Pod Security admission (upstream's k8s.io/pod-security-admission and
//! the PodSecurity plugin of kube-apiserver): the Pod Security Standards'
//! levels and versions (`api`), their checks (`checks`), which checks a
//! level and version runs (`evaluator`), the plugin's configuration
//! (`config`), the admission plugin itself (`plugin`) and what it records
//! in the server's metrics (`metrics`).

pub mod api;
pub mod checks;
pub mod config;
pub mod evaluator;
mod metrics;
pub mod plugin;

pub use config::Configuration;
pub use plugin::PodSecurity;

#[cfg(test)]
mod tests;
