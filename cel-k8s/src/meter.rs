//! Upstream's runtime cost budget (cel-go's cost tracking under
//! celconfig.PerCallLimit and RuntimeCELCostBudget) for the `cel` crate,
//! which counts nothing itself.
//!
//! A program's expression is rewritten once, when it is compiled, so that
//! the work that grows with the input charges a meter while it happens:
//! every iteration of a comprehension (`all`, `exists`, `exists_one`, `map`,
//! `filter`) is charged its step's size in nodes before the step runs, and
//! every string or list a function traverses or builds is charged a tenth
//! of its length, as upstream's traversal cost factor does. The charges are
//! calls of two functions registered in [`crate::context`]; they keep the
//! shapes the crate's comprehension fast paths look for, so metering does
//! not turn a linear `map` quadratic.
//!
//! Once the meter passes its limit every charge fails, so a loop stops doing
//! work, and the evaluation's outcome is [`Outcome::Exceeded`] whatever the
//! expression made of the failure (CEL's `&&` and `||` may absorb an error).
//! The expression's other nodes count one each once it has run, so a
//! budget shared by several expressions is spent as upstream spends it.

use std::cell::Cell;

use cel::common::ast::{operators as op, CallExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, ListExpr};
use cel::common::types::{CelBool, CelInt};
use cel::common::value::CowVal;
use cel::functions::FunctionContext;
use cel::objects::Value as CelValue;
use cel::{Context, ExecutionError, Program};

/// cel-go's error when the limit is passed.
pub const COST_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

const CHARGE: &str = "__k8s_cost_charge";
const CHARGE_SIZE: &str = "__k8s_cost_size";
/// Upstream's common.StringTraversalCostFactor, in thousandths.
const TRAVERSAL_PER_MILLE: i64 = 100;
/// Functions whose cost grows with the string or list they are called on.
const TRAVERSING: &[&str] = &[
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "find",
    "findAll",
    "indexOf",
    "lastIndexOf",
    "replace",
    "split",
    "substring",
    "lowerAscii",
    "upperAscii",
    "trim",
    "join",
    "reverse",
    "isSorted",
    "sum",
    "min",
    "max",
    "format",
];

thread_local! {
    /// (spent, limit) of the evaluation running on this thread, if metered.
    static METER: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Adds `cost` to the running meter; an error once it is over its limit.
fn charge(cost: u64) -> Result<(), ExecutionError> {
    METER.with(|m| match m.get() {
        Some((spent, limit)) => {
            let spent = spent.saturating_add(cost);
            m.set(Some((spent, limit)));
            if spent > limit {
                Err(ExecutionError::function_error(CHARGE, COST_EXCEEDED))
            } else {
                Ok(())
            }
        }
        None => Ok(()),
    })
}

fn int_arg(ftx: &FunctionContext<'_, '_>, i: usize) -> u64 {
    ftx.args.get(i).and_then(|v| v.downcast_ref::<CelInt>().map(|n| *n.inner())).unwrap_or(0).max(0) as u64
}

/// The crate's native function type (what `add_function` takes as is).
type Native =
    Box<dyn for<'c, 'l> Fn(&mut FunctionContext<'c, 'l>) -> Result<CowVal<'c, 'l>, ExecutionError> + Send + Sync>;

/// Registers the charging functions on a context.
pub(crate) fn register(ctx: &mut Context) {
    let charge_fn: Native = Box::new(|ftx: &mut FunctionContext<'_, '_>| {
        charge(int_arg(ftx, 0))?;
        static TRUE: CelBool = CelBool::TRUE;
        Ok(CowVal::Borrowed(&TRUE))
    });
    let size_fn: Native = Box::new(|ftx: &mut FunctionContext<'_, '_>| {
        let value =
            ftx.args.get(1).cloned().ok_or_else(|| ExecutionError::invalid_argument_count(2, ftx.args.len()))?;
        let size = value.as_sizer().map(|s| (*s.size().inner()).max(0) as u64).unwrap_or(1);
        charge((size.saturating_mul(int_arg(ftx, 0))).div_ceil(1000))?;
        Ok(value)
    });
    let _ = ctx.add_function(CHARGE, charge_fn);
    let _ = ctx.add_function(CHARGE_SIZE, size_fn);
}

/// How an evaluation ended against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It stayed within: what it cost.
    Within(u64),
    /// It passed the limit and was stopped.
    Exceeded,
}

/// A compiled expression that charges a meter as it runs.
pub struct Metered {
    expr: IdedExpr,
    /// The cost of its nodes outside any loop.
    base: u64,
}

impl Metered {
    pub fn new(program: &Program) -> Self {
        let mut rw = Rewriter { next_id: max_id(program.expression()) + 1 };
        let expr = rw.rewrite(program.expression());
        Metered { expr, base: nodes(program.expression()) }
    }

    /// Evaluates in `ctx`, stopping once the cost passes `limit`.
    pub fn execute(&self, ctx: &Context, limit: u64) -> (Result<CelValue, ExecutionError>, Outcome) {
        let outer = METER.with(|m| m.replace(Some((0, limit))));
        let result = CelValue::resolve(&self.expr, ctx);
        let spent = METER.with(|m| m.replace(outer)).map(|(spent, _)| spent).unwrap_or(0);
        let total = spent.saturating_add(self.base);
        if total > limit {
            (Err(ExecutionError::function_error(CHARGE, COST_EXCEEDED)), Outcome::Exceeded)
        } else {
            (result, Outcome::Within(total))
        }
    }
}

/// Upstream's error once an evaluation's runtime budget is spent.
pub const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

/// What is left of one evaluation's runtime cost budget (upstream's
/// RuntimeCELCostBudget): a CRD write's rules, a policy's expressions, a
/// webhook's matchConditions.
pub struct Budget(u64);

impl Default for Budget {
    fn default() -> Self {
        Budget(crate::cost::RUNTIME_BUDGET)
    }
}

/// How one expression ran against a [`Budget`].
pub enum Spent {
    /// It ran; its cost is charged.
    Ran(Result<CelValue, ExecutionError>),
    /// It was stopped at the per-call limit, which is charged.
    CallLimitExceeded,
    /// It cost more than was left: nothing further runs.
    OutOfBudget,
}

impl Budget {
    /// Runs `m` within the per-call limit and charges what it cost, checked
    /// against what is left before its result is looked at, as upstream does.
    pub fn run(&mut self, m: &Metered, ctx: &Context) -> Spent {
        let (result, outcome) = m.execute(ctx, crate::cost::PER_CALL_LIMIT);
        let spent = match outcome {
            Outcome::Within(c) => c,
            Outcome::Exceeded => crate::cost::PER_CALL_LIMIT,
        };
        if spent > self.0 {
            return Spent::OutOfBudget;
        }
        self.0 -= spent;
        match outcome {
            Outcome::Within(_) => Spent::Ran(result),
            Outcome::Exceeded => Spent::CallLimitExceeded,
        }
    }

    /// Runs `m` within what is left (and the per-call limit), charging it
    /// only if it finished: None if it did not.
    pub fn run_if_affordable(&mut self, m: &Metered, ctx: &Context) -> Option<Result<CelValue, ExecutionError>> {
        match m.execute(ctx, crate::cost::PER_CALL_LIMIT.min(self.0)) {
            (result, Outcome::Within(c)) => {
                self.0 -= c;
                Some(result)
            }
            (_, Outcome::Exceeded) => None,
        }
    }
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.iter().map(|t| t.as_ref()).chain(c.args.iter()).collect(),
        Expr::Select(s) => vec![s.operand.as_ref()],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(entry_children).collect(),
        Expr::Struct(s) => s.entries.iter().flat_map(entry_children).collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        _ => Vec::new(),
    }
}

fn entry_children(en: &IdedEntryExpr) -> Vec<&IdedExpr> {
    match &en.expr {
        EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

fn nodes(e: &IdedExpr) -> u64 {
    1 + children(e).into_iter().map(nodes).sum::<u64>()
}

fn max_id(e: &IdedExpr) -> u64 {
    children(e).into_iter().map(max_id).fold(e.id, u64::max)
}

struct Rewriter {
    next_id: u64,
}

impl Rewriter {
    fn node(&mut self, expr: Expr) -> IdedExpr {
        let id = self.next_id;
        self.next_id += 1;
        IdedExpr { id, expr }
    }

    fn int(&mut self, n: u64) -> IdedExpr {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.node(Expr::Literal(cel::common::ast::LiteralValue::Int(n.into())))
    }

    fn call(&mut self, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
        self.node(Expr::Call(CallExpr { func_name: name.into(), target: None, args }))
    }

    /// `e`, charged `cost` before it runs: `charge(cost) ? e : null` (a
    /// failed charge is the conditional's error, so `e` never runs).
    fn charged(&mut self, cost: u64, e: IdedExpr) -> IdedExpr {
        let k = self.int(cost);
        let cond = self.call(CHARGE, vec![k]);
        let null = self.node(Expr::Literal(cel::common::ast::LiteralValue::Null));
        self.call(op::CONDITIONAL, vec![cond, e, null])
    }

    /// `e`, charged a tenth of its size once it is made.
    fn sized(&mut self, e: IdedExpr) -> IdedExpr {
        let f = self.int(TRAVERSAL_PER_MILLE as u64);
        self.call(CHARGE_SIZE, vec![f, e])
    }

    fn rewrite(&mut self, e: &IdedExpr) -> IdedExpr {
        let expr = match &e.expr {
            Expr::Call(c) => {
                let target = c.target.as_ref().map(|t| Box::new(self.rewrite(t)));
                let args: Vec<IdedExpr> = c.args.iter().map(|a| self.rewrite(a)).collect();
                let traverses = TRAVERSING.contains(&c.func_name.as_str());
                let (target, mut args) = match (target, traverses) {
                    (Some(t), true) => (Some(Box::new(self.sized(*t))), args),
                    (None, true) if !args.is_empty() => {
                        let mut args = args;
                        let first = args.remove(0);
                        args.insert(0, self.sized(first));
                        (None, args)
                    }
                    (t, _) => (t, args),
                };
                if c.func_name == op::IN && args.len() == 2 {
                    let haystack = args.remove(1);
                    args.push(self.sized(haystack));
                }
                let call =
                    IdedExpr { id: e.id, expr: Expr::Call(CallExpr { func_name: c.func_name.clone(), target, args }) };
                // What `+` builds (strings and lists) is paid by its size.
                return if c.func_name == op::ADD { self.sized(call) } else { call };
            }
            Expr::Select(s) => {
                let mut s = s.clone();
                s.operand = Box::new(self.rewrite(&s.operand));
                Expr::Select(s)
            }
            Expr::List(l) => Expr::List(ListExpr {
                elements: l.elements.iter().map(|x| self.rewrite(x)).collect(),
                optional_indices: l.optional_indices.clone(),
            }),
            Expr::Map(m) => {
                let mut m = m.clone();
                for en in &mut m.entries {
                    self.rewrite_entry(en);
                }
                Expr::Map(m)
            }
            Expr::Struct(st) => {
                let mut st = st.clone();
                for en in &mut st.entries {
                    self.rewrite_entry(en);
                }
                Expr::Struct(st)
            }
            Expr::Comprehension(c) => {
                let mut c = c.clone();
                c.iter_range = self.rewrite(&c.iter_range);
                c.accu_init = self.rewrite(&c.accu_init);
                c.result = self.rewrite(&c.result);
                let per_iteration = nodes(&c.loop_step) + nodes(&c.loop_cond);
                let step = self.rewrite(&c.loop_step);
                c.loop_step = self.charge_step(&c.accu_var, step, per_iteration);
                Expr::Comprehension(c)
            }
            other => other.clone(),
        };
        IdedExpr { id: e.id, expr }
    }

    fn rewrite_entry(&mut self, en: &mut IdedEntryExpr) {
        match &mut en.expr {
            EntryExpr::MapEntry(me) => {
                me.key = self.rewrite(&me.key);
                me.value = self.rewrite(&me.value);
            }
            EntryExpr::StructField(f) => f.value = self.rewrite(&f.value),
        }
    }

    /// Charges a loop step per iteration where the user's expression sits,
    /// keeping the accumulator's plumbing as the macros wrote it: the
    /// predicate of `@result && p` / `@result || p`, the guard of
    /// `g ? ... : @result`, the element of `@result + [e]`; anything else
    /// is charged whole.
    fn charge_step(&mut self, accu: &str, step: IdedExpr, cost: u64) -> IdedExpr {
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == accu);
        let IdedExpr { id, expr } = step;
        match expr {
            Expr::Call(mut c)
                if c.target.is_none()
                    && c.args.len() == 2
                    && (c.func_name == op::LOGICAL_AND || c.func_name == op::LOGICAL_OR)
                    && is_accu(&c.args[0]) =>
            {
                let p = c.args.remove(1);
                c.args.push(self.charged(cost, p));
                IdedExpr { id, expr: Expr::Call(c) }
            }
            Expr::Call(mut c) if c.target.is_none() && c.args.len() == 3 && c.func_name == op::CONDITIONAL => {
                let guard = c.args.remove(0);
                c.args.insert(0, self.charged(cost, guard));
                IdedExpr { id, expr: Expr::Call(c) }
            }
            Expr::Call(mut c)
                if c.target.is_none()
                    && c.func_name == op::ADD
                    && c.args.len() == 2
                    && is_accu(&c.args[0])
                    && matches!(c.args[1].expr, Expr::List(_)) =>
            {
                if let Expr::List(l) = &mut c.args[1].expr {
                    let elements = std::mem::take(&mut l.elements);
                    l.elements = elements.into_iter().map(|x| self.charged(cost, x)).collect();
                }
                IdedExpr { id, expr: Expr::Call(c) }
            }
            other => {
                let whole = IdedExpr { id, expr: other };
                self.charged(cost, whole)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, limit: u64) -> (Result<CelValue, ExecutionError>, Outcome) {
        let program = crate::compile(src).unwrap();
        let mut ctx = crate::context();
        ctx.add_variable_from_value("big", (0..1_000).collect::<Vec<i64>>());
        ctx.add_variable_from_value("s", "x".repeat(100_000));
        Metered::new(&program).execute(&ctx, limit)
    }

    #[test]
    fn results_are_unchanged_within_the_limit() {
        for (src, want) in [
            ("big.all(x, x >= 0)", CelValue::Bool(true)),
            ("big.exists(x, x == 5)", CelValue::Bool(true)),
            ("big.exists_one(x, x == 5)", CelValue::Bool(true)),
            ("big.filter(x, x < 3).map(x, x * 2) == [0, 2, 4]", CelValue::Bool(true)),
            ("size(big.map(x, x)) == 1000", CelValue::Bool(true)),
            ("s.contains('y') || 'a' + 'b' == 'ab'", CelValue::Bool(true)),
        ] {
            let (got, outcome) = run(src, 10_000_000);
            assert_eq!(got.unwrap(), want, "{src}");
            assert!(matches!(outcome, Outcome::Within(n) if n > 0), "{src}: {outcome:?}");
        }
    }

    #[test]
    fn loops_and_traversals_are_charged_and_stopped() {
        let cost = |src: &str| match run(src, u64::MAX) {
            (_, Outcome::Within(n)) => n,
            other => panic!("{src}: {other:?}"),
        };
        // Each iteration costs its step; an early exit costs less.
        let all = cost("big.all(x, x >= 0)");
        assert!(all >= 1_000 * 3, "{all}");
        assert!(cost("big.exists(x, x == 1)") < 100, "exists stops at the second element");
        assert!(cost("big.map(x, big.exists(y, y == x))") > 1_000_000, "nested loops multiply");
        // A string function costs a tenth of the string.
        let contains = cost("s.contains('y')");
        assert!((10_000..10_100).contains(&contains), "{contains}");
        // Over the limit: stopped, whatever the expression made of the error.
        let (r, outcome) = run("big.map(x, big.exists(y, y == x)).size() > 0", 1_000_000);
        assert_eq!(outcome, Outcome::Exceeded);
        assert!(r.is_err_and(|e| e.to_string().contains(COST_EXCEEDED)));
        let (_, outcome) = run("big.all(x, x < 0 || big.all(y, y >= 0))", 1_000_000);
        assert_eq!(outcome, Outcome::Exceeded);
        // Unmetered evaluation (plain execute) is unaffected by the charges.
        let program = crate::compile("[1, 2].all(x, x > 0)").unwrap();
        assert_eq!(program.execute(&crate::context()).unwrap(), CelValue::Bool(true));
    }
}
