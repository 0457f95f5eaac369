//! The API server's CEL cost, estimated: what one admission of a pod of
//! given size can cost a policy at most, expression by expression, with
//! the charges cel-go's runtime makes (Kubernetes' `PerCallLimit` and
//! `RuntimeCELCostBudget` are counted in them): one unit per identifier,
//! field selection and function call, each comprehension's body once per
//! element, string functions by the length they scan, a conditional by its
//! dearer branch, and every variable once (the API server caches it).
//!
//! The sizes are bounds the test picks (`Bounds`): lists by their field
//! name, strings by one length. An estimate, not cel-go's number: the test
//! keeps the compiled output a wide margin inside the budgets with it, and
//! holds that it grows with what the pod and the set hold.

use std::collections::HashMap;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::parser::Parser;

/// The largest pod the estimate is for.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub containers: u64,
    pub init_containers: u64,
    pub volumes: u64,
    /// Per container: env vars, mounts, envFrom sources, ports.
    pub env: u64,
    pub mounts: u64,
    pub env_from: u64,
    pub ports: u64,
    /// Labels or annotations per object.
    pub map_entries: u64,
    /// Names in a `tandem.dev/inject` list.
    pub names: u64,
    /// Any one string: a name, an annotation's value.
    pub string: u64,
}

/// cel-go charges string traversal at 0.1 per character.
fn scan(len: u64) -> u64 {
    1 + len.div_ceil(10)
}

struct Estimator<'a> {
    b: Bounds,
    /// Sizes of the variables estimated so far.
    variables: &'a HashMap<String, u64>,
    /// Comprehension variables in scope, with the size of one element.
    locals: Vec<(String, u64)>,
}

impl Estimator<'_> {
    fn field_size(&self, field: &str) -> u64 {
        match field {
            "containers" => self.b.containers,
            "initContainers" => self.b.init_containers,
            "volumes" => self.b.volumes,
            "env" => self.b.env,
            "volumeMounts" => self.b.mounts,
            "envFrom" => self.b.env_from,
            "ports" => self.b.ports,
            "labels" | "annotations" => self.b.map_entries,
            _ => self.b.string,
        }
    }

    /// (cost, size): size is a list's length, a string's, else 1.
    fn estimate(&mut self, e: &IdedExpr) -> (u64, u64) {
        match &e.expr {
            Expr::Unspecified => (0, 1),
            Expr::Literal(LiteralValue::String(s)) => (0, s.len() as u64),
            Expr::Literal(_) => (0, 1),
            Expr::Ident(name) => {
                let local = self.locals.iter().rev().find(|(n, _)| n == name);
                (1, local.map_or(1, |(_, size)| *size))
            }
            Expr::Select(s) => {
                let (cost, _) = self.estimate(&s.operand);
                let size = match &s.operand.expr {
                    Expr::Ident(root) if root == "variables" => {
                        self.variables.get(&s.field).copied().unwrap_or(1)
                    }
                    _ => self.field_size(&s.field),
                };
                (cost + 1, size)
            }
            Expr::List(l) => {
                let cost = l.elements.iter().map(|x| self.estimate(x).0).sum::<u64>();
                (cost + 1, l.elements.len() as u64)
            }
            Expr::Map(m) => (1 + self.entries(&m.entries), 1),
            Expr::Struct(s) => (1 + self.entries(&s.entries), 1),
            Expr::Comprehension(c) => {
                let (range_cost, range_size) = self.estimate(&c.iter_range);
                let (init, _) = self.estimate(&c.accu_init);
                // An element is an object or a string: sized as a string,
                // the dearer to compare.
                let element = self.b.string;
                self.locals.push((c.iter_var.clone(), element));
                self.locals.push((c.accu_var.clone(), range_size));
                let (cond, _) = self.estimate(&c.loop_cond);
                let (step, _) = self.estimate(&c.loop_step);
                let (result, result_size) = self.estimate(&c.result);
                self.locals.truncate(self.locals.len() - 2);
                let cost = range_cost + init + range_size * (cond + step + 1) + result;
                (cost, result_size.max(1).min(range_size.max(1)))
            }
            Expr::Call(call) => self.call(&call.func_name, call.target.as_deref(), &call.args),
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr]) -> u64 {
        entries
            .iter()
            .map(|x| match &x.expr {
                EntryExpr::MapEntry(m) => self.estimate(&m.key).0 + self.estimate(&m.value).0,
                EntryExpr::StructField(f) => self.estimate(&f.value).0,
            })
            .sum()
    }

    fn call(&mut self, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> (u64, u64) {
        let (target_cost, target_size) = target.map_or((0, 1), |t| self.estimate(t));
        let args: Vec<(u64, u64)> = args.iter().map(|a| self.estimate(a)).collect();
        let arg_cost: u64 = args.iter().map(|(c, _)| c).sum();
        let size = |i: usize| args.get(i).map_or(1, |(_, s)| *s);
        let base = target_cost + arg_cost;
        match name {
            "_?_:_" => {
                let (cond, a, b) = (args[0], args[1], args[2]);
                (cond.0 + a.0.max(b.0), a.1.max(b.1))
            }
            "_&&_" | "_||_" | "!_" | "@not_strictly_false" => (arg_cost, 1),
            "_+_" => (base + 1, size(0) + size(1)),
            "_[_]" => (base + 1, self.b.string),
            "@in" => (base + 1 + size(1), 1),
            "_==_" | "_!=_" => (base + 1 + size(0).min(size(1)) / 10, 1),
            "matches" => (base + scan(target_size) * scan(size(0)), 1),
            "trim" | "lowerAscii" | "contains" | "startsWith" | "endsWith" | "replace" => {
                (base + scan(target_size), target_size)
            }
            "split" => (base + scan(target_size), self.b.names),
            "join" => (
                base + 1 + target_size * self.b.string / 10,
                target_size * self.b.string,
            ),
            "indexOf" => (base + 1 + target_size, 1),
            "size" | "string" | "dyn" | "has" => (base + 1, 1),
            _ => (base + 1, 1),
        }
    }
}

/// What each expression of a policy may cost at most, in order: match
/// conditions, variables, then the rest (`mutations`, `validations`, …).
pub struct Estimate {
    pub expressions: Vec<(String, u64)>,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.expressions.iter().map(|(_, c)| c).sum()
    }

    pub fn largest(&self) -> (&str, u64) {
        self.expressions
            .iter()
            .max_by_key(|(_, c)| *c)
            .map(|(n, c)| (n.as_str(), *c))
            .unwrap_or(("", 0))
    }
}

/// Estimates `variables` (name, expression) in order, then `others`.
pub fn estimate(
    b: Bounds,
    conditions: &[(String, String)],
    variables: &[(String, String)],
    others: &[(String, String)],
) -> Estimate {
    let mut sizes = HashMap::new();
    let mut expressions = Vec::new();
    let parse = |text: &str| {
        Parser::default()
            .parse(text)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
    };
    for (name, text) in conditions {
        let mut est = Estimator {
            b,
            variables: &sizes,
            locals: Vec::new(),
        };
        expressions.push((
            format!("matchCondition {name}"),
            est.estimate(&parse(text)).0,
        ));
    }
    for (name, text) in variables {
        let (cost, size) = Estimator {
            b,
            variables: &sizes,
            locals: Vec::new(),
        }
        .estimate(&parse(text));
        sizes.insert(name.clone(), size);
        expressions.push((format!("variable {name}"), cost));
    }
    for (name, text) in others {
        let mut est = Estimator {
            b,
            variables: &sizes,
            locals: Vec::new(),
        };
        expressions.push((name.clone(), est.estimate(&parse(text)).0));
    }
    Estimate { expressions }
}
