//! The CEL environment of Kubernetes expressions (upstream's
//! k8s.io/apiserver/pkg/cel): the standard library with upstream's string,
//! list and math extensions, and upstream's Kubernetes libraries for
//! quantities, URLs, IPs and CIDRs (`library`) and lists and regexes
//! ([`context`]). CRD validation rules, ValidatingAdmissionPolicy and webhook
//! matchConditions compile in this one environment, so an expression means
//! the same everywhere.
//!
//! [`bind`] binds JSON to an evaluation's variables without copying it.
//! [`authz`] is the authorization library behind a policy's `authorizer`
//! variable. [`cost`] is upstream's static cost estimate (what a CRD rule may cost at
//! most, refused when written if over budget); [`fields`] checks the fields
//! an expression selects against a schema (a policy's status.typeChecking).

pub mod authz;
pub mod bind;
pub mod cost;
pub mod fields;
mod library;
pub mod meter;
mod net;
pub mod quantity;
mod url;

use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use cel::{Context, Env, ExecutionError, Program, Value as CelValue};

/// The shared environment, built once.
pub fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        for ext in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
            if let Err(e) = env.add_extension(ext) {
                tracing::warn!("CEL extension unavailable: {e:?}");
            }
        }
        if let Err(e) = library::register(&mut env).and_then(|_| authz::register(&mut env)) {
            tracing::warn!("Kubernetes CEL libraries unavailable: {e:?}");
        }
        Arc::new(env)
    })
    .clone()
}

/// Compiles an expression in the shared environment; the error is
/// upstream's "compilation failed: ..." text.
pub fn compile(src: &str) -> Result<Program, String> {
    env().compile(src).map_err(|e| format!("compilation failed: {e}"))
}

/// A context with the Kubernetes functions the `cel` crate does not ship;
/// callers add their variables in an inner scope.
pub fn context<'p, 'v>() -> Context<'p, 'v> {
    let mut ctx = Context::with_env(env());
    add_kubernetes_library(&mut ctx);
    meter::register(&mut ctx);
    ctx
}

thread_local! {
    static CONTEXT: Context<'static, 'static> = context();
}

/// Runs `f` with this thread's [`context`], built once per thread rather
/// than once per evaluation (a request may evaluate dozens of expressions):
/// `f` binds its variables in an inner scope, for as long as `'v`.
pub fn with_context<'v, R>(f: impl FnOnce(&Context<'_, 'v>) -> R) -> R {
    CONTEXT.with(|root| f(root))
}

fn cmp_values(a: &CelValue, b: &CelValue) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (CelValue::Int(x), CelValue::Int(y)) => x.partial_cmp(y),
        (CelValue::UInt(x), CelValue::UInt(y)) => x.partial_cmp(y),
        (CelValue::Float(x), CelValue::Float(y)) => x.partial_cmp(y),
        (CelValue::Int(x), CelValue::Float(y)) => (*x as f64).partial_cmp(y),
        (CelValue::Float(x), CelValue::Int(y)) => x.partial_cmp(&(*y as f64)),
        (CelValue::String(x), CelValue::String(y)) => x.partial_cmp(y),
        (CelValue::Bool(x), CelValue::Bool(y)) => x.partial_cmp(y),
        _ => None,
    }
}

fn extreme(list: &[CelValue], want: std::cmp::Ordering, name: &str) -> Result<CelValue, ExecutionError> {
    let mut best: Option<&CelValue> = None;
    for v in list {
        best = match best {
            None => Some(v),
            Some(b) => match cmp_values(v, b) {
                Some(o) if o == want => Some(v),
                Some(_) => Some(b),
                None => return Err(ExecutionError::function_error(name, "incomparable values")),
            },
        };
    }
    best.cloned().ok_or_else(|| ExecutionError::function_error(name, "list is empty"))
}

fn regex_for(pattern: &str, name: &str) -> Result<regex::Regex, ExecutionError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ExecutionError::function_error(name, e.to_string()))
}

/// The Kubernetes CEL library functions the crate does not ship.
fn add_kubernetes_library(ctx: &mut Context) {
    let _ = ctx.add_function("isSorted", |This(list): This<Arc<Vec<CelValue>>>| -> bool {
        list.windows(2).all(|w| cmp_values(&w[0], &w[1]).is_some_and(|o| o != std::cmp::Ordering::Greater))
    });
    let _ = ctx.add_function("sum", |This(list): This<Arc<Vec<CelValue>>>| -> Result<CelValue, ExecutionError> {
        let mut int: i64 = 0;
        let mut float: Option<f64> = None;
        for v in list.iter() {
            match v {
                CelValue::Int(i) => {
                    int = int.checked_add(*i).ok_or_else(|| ExecutionError::function_error("sum", "overflow"))?
                }
                CelValue::UInt(u) => {
                    int = int.checked_add(*u as i64).ok_or_else(|| ExecutionError::function_error("sum", "overflow"))?
                }
                CelValue::Float(f) => float = Some(float.unwrap_or(0.0) + f),
                _ => return Err(ExecutionError::function_error("sum", "not a number")),
            }
        }
        Ok(match float {
            Some(f) => CelValue::Float(f + int as f64),
            None => CelValue::Int(int),
        })
    });
    let _ = ctx.add_function("min", |This(list): This<Arc<Vec<CelValue>>>| -> Result<CelValue, ExecutionError> {
        extreme(&list, std::cmp::Ordering::Less, "min")
    });
    let _ = ctx.add_function("max", |This(list): This<Arc<Vec<CelValue>>>| -> Result<CelValue, ExecutionError> {
        extreme(&list, std::cmp::Ordering::Greater, "max")
    });
    let _ =
        ctx.add_function("find", |This(s): This<Arc<String>>, re: Arc<String>| -> Result<CelValue, ExecutionError> {
            let r = regex_for(&re, "find")?;
            Ok(CelValue::String(Arc::new(r.find(&s).map(|m| m.as_str().to_string()).unwrap_or_default())))
        });
    let _ = ctx.add_function(
        "findAll",
        |This(s): This<Arc<String>>, re: Arc<String>| -> Result<CelValue, ExecutionError> {
            let r = regex_for(&re, "findAll")?;
            let all: Vec<CelValue> =
                r.find_iter(&s).map(|m| CelValue::String(Arc::new(m.as_str().to_string()))).collect();
            Ok(CelValue::List(Arc::new(all)))
        },
    );
    let _ = ctx.add_function("lowerAscii", |This(s): This<Arc<String>>| -> String { s.to_ascii_lowercase() });
    let _ = ctx.add_function("upperAscii", |This(s): This<Arc<String>>| -> String { s.to_ascii_uppercase() });
}
