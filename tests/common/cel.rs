//! Admission-policy CEL evaluated under the API server's rules, not a
//! library's: each expression site binds the variables the API server binds
//! there *at evaluation time*, errors are worded as cel-go words them, and
//! `failurePolicy` turns an evaluation error into what the API server makes
//! of it.
//!
//! | site | `object` | `namespaceObject` | `variables` |
//! |---|---|---|---|
//! | match condition | the pod | **null** | undeclared |
//! | variable, validation, messageExpression, mutation | the pod | the Namespace | earlier variables, lazily |
//!
//! The `JSONPatch` type is declared only in a mutation's expression.
//! | CRD `x-kubernetes-validations` rule | `self` only (the schema node) | undeclared | undeclared |
//!
//! The API server *declares* `namespaceObject` for match conditions, so an
//! expression reading it compiles and the policy is accepted; its matcher
//! binds null, and `namespaceObject.metadata` fails with "no such key".
//! `tests/cel_sites.rs` holds this module to what a real kube-apiserver
//! v1.36.2 did (`tests/fixtures/apiserver-v1.36/`), wrong verdicts included.
//!
//! Objects are bound as the API server serializes them: `labels` and
//! `annotations` that are empty are absent (`omitempty`), and a Namespace
//! always carries `kubernetes.io/metadata.name` ([`stored_namespace`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::ExecutionError;
use cel::common::types::{CelInt, CelStruct, DYN_TYPE, LIST_TYPE, Type};
use cel::common::value::{CowVal, Val};
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingAdmissionPolicySpec, ValidatingAdmissionPolicySpec, Variable,
};
use serde_json::{Value, json};

/// Where an expression runs in an admission policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    MatchCondition,
    Variable,
    Validation,
    MessageExpression,
    Mutation,
}

impl Site {
    /// Whether `namespaceObject` is the Namespace here (else null).
    pub fn sees_namespace(self) -> bool {
        self != Site::MatchCondition
    }

    /// Whether `variables` is declared here.
    pub fn sees_variables(self) -> bool {
        self != Site::MatchCondition
    }
}

/// An expression that failed to evaluate, worded as the API server words it.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub site: Site,
    pub expression: String,
    /// cel-go's text, e.g. `no such key: metadata`.
    pub error: String,
}

impl Failure {
    /// The API server's text: `expression '…' resulted in error: …`.
    pub fn message(&self) -> String {
        format!(
            "expression '{}' resulted in error: {}",
            self.expression, self.error
        )
    }
}

/// cel-go's wording of an evaluation error, as the API server reports it.
/// Selecting a field of null is "no such key" there, as is a missing map key.
fn go_text(e: &ExecutionError, expression: &str) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        // Selecting a field of null: cel-go says "no such key: <field>";
        // this library names only the types. The nulls bound here are
        // `namespaceObject` (match conditions), `oldObject` and `params`,
        // so the field is the one the expression selects of them.
        ExecutionError::NoSuchOverload(o)
            if o.function() == "_._"
                && o.argument_types().first().is_some_and(|t| t == "null_type") =>
        {
            let field = ["namespaceObject.", "oldObject.", "params."]
                .iter()
                .filter_map(|root| {
                    let at = expression.find(root)? + root.len();
                    let rest = &expression[at..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    Some((at, &rest[..end]))
                })
                .min()
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            format!("no such key: {field}")
        }
        ExecutionError::UndeclaredReference(name) => {
            format!("undeclared reference to '{name}' (in container '')")
        }
        other => other.to_string(),
    }
}

/// Kubernetes' `list.indexOf(value)`: the first index, or -1.
fn list_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, needle] = <[CowVal; 2]>::try_from(args)
        .map_err(|_| ExecutionError::function_error("indexOf", "takes one argument"))?;
    let list = cel::Value::try_from(list.as_ref())?;
    let needle = cel::Value::try_from(needle.as_ref())?;
    let cel::Value::List(items) = list else {
        return Err(ExecutionError::function_error("indexOf", "not a list"));
    };
    let at = items
        .iter()
        .position(|x| *x == needle)
        .map_or(-1, |i| i as i64);
    Ok(CowVal::Owned(Box::new(CelInt::from(at))))
}

/// The `JSONPatch` type of a MutatingAdmissionPolicy: `op`, `path`, `from`
/// and a `value` of any type.
struct JsonPatchType(Type);

impl cel::StructType for JsonPatchType {
    fn get_type(&self) -> &Type {
        &self.0
    }

    fn new_value<'b, 'v>(
        &self,
        fields: BTreeMap<String, CowVal<'b, 'v>>,
    ) -> Result<Box<dyn Val + 'v>, ExecutionError> {
        let mut s = CelStruct::new("JSONPatch".into());
        for (name, value) in fields {
            if !["op", "path", "from", "value"].contains(&name.as_str()) {
                return Err(ExecutionError::function_error(
                    "JSONPatch",
                    format!("no field {name}"),
                ));
            }
            s.add_field_value(name, value);
        }
        Ok(Box::new(s))
    }
}

/// The parts of the API server's CEL environment that Tandem's expressions
/// use: the standard library, the strings extension, Kubernetes' list
/// `indexOf` and (mutating policies) the `JSONPatch` type.
pub fn env() -> Arc<cel::Env> {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings).unwrap();
    env.add_type(JsonPatchType(Type::new_struct("JSONPatch".into())))
        .unwrap();
    env.add_member_overload(
        "indexOf",
        "list_indexOf_dyn",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )
    .unwrap();
    Arc::new(env)
}

/// `metadata.labels` and `metadata.annotations` as the API server serializes
/// them: absent when empty.
pub fn stored(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["labels", "annotations"] {
            if meta
                .get(key)
                .is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()) || m.is_null())
            {
                meta.remove(key);
            }
        }
    }
    object
}

/// A Namespace as the API server stores it: the name label it always sets,
/// and no empty maps.
pub fn stored_namespace(
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Value {
    let mut labels = labels.clone();
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    stored(&json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": name, "labels": labels, "annotations": annotations },
    }))
}

/// One expression, compiled once, with the site it runs at.
pub struct Expr {
    pub site: Site,
    pub text: String,
    program: cel::Program,
    /// The variables it reads (`variables.<name>`): all that is bound, as
    /// the API server's activation resolves only what is read.
    reads: Vec<String>,
}

/// Compiles `text` for `site`; `Err` is the compiler's message.
pub fn compile(env: &cel::Env, site: Site, text: &str) -> Result<Expr, String> {
    // The API server declares the JSONPatch type for a mutation's
    // expression only: anywhere else it is an undeclared reference.
    if site != Site::Mutation && text.contains("JSONPatch{") {
        return Err(format!(
            "does not compile: undeclared reference to 'JSONPatch' (it is declared only in mutations)\n{text}"
        ));
    }
    let program = env
        .compile(text)
        .map_err(|e| format!("does not compile: {e}\n{text}"))?;
    let mut reads: Vec<String> = text
        .match_indices("variables.")
        .map(|(at, needle)| {
            text[at + needle.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    reads.sort();
    reads.dedup();
    Ok(Expr {
        site,
        text: text.to_string(),
        program,
        reads,
    })
}

/// What an admission request gives the policies: the object being created
/// and its Namespace, converted once as the API server serializes them.
pub struct Request {
    pub object: Value,
    object_value: cel::Value,
    namespace: cel::Value,
    attributes: cel::Value,
}

impl Request {
    /// A CREATE of `object` in `namespace`, both as the API server
    /// serializes them.
    pub fn create(object: &Value, namespace: &Value) -> Request {
        Request::create_as_is(&stored(object), &stored(namespace))
    }

    /// A CREATE of `object` in `namespace` exactly as given, empty maps and
    /// all: shapes the API server does not send, for robustness checks.
    pub fn create_as_is(object: &Value, namespace: &Value) -> Request {
        let object = object.clone();
        let attributes = json!({
            "operation": "CREATE",
            "namespace": namespace["metadata"]["name"],
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "dryRun": false,
        });
        Request {
            object_value: cel::to_value(&object).unwrap(),
            object,
            namespace: cel::to_value(namespace).unwrap(),
            attributes: cel::to_value(&attributes).unwrap(),
        }
    }
}

/// The variables evaluated so far: values, and the errors of those that
/// failed. The API server evaluates a variable only when an expression
/// reads it, so a failed one matters only where it is read.
#[derive(Default, Clone)]
pub struct Variables {
    pub values: HashMap<String, cel::Value>,
    failed: HashMap<String, Failure>,
    /// How many expressions were evaluated for the request: match
    /// conditions, variables (each once, when first read), validations,
    /// messages and mutations. The proxy for what the API server pays.
    pub evaluated: usize,
    /// Variables being evaluated: a "no such key" naming one is the
    /// object's field of that name, not a read of the variable.
    evaluating: Vec<String>,
}

/// Evaluates `e` for `request`, binding what the API server binds at `e`'s
/// site (a CREATE: `oldObject` and `params` null).
pub fn eval(
    env: &Arc<cel::Env>,
    e: &Expr,
    request: &Request,
    variables: &Variables,
) -> Result<cel::Value, Failure> {
    let mut context = cel::Context::with_env(env.clone());
    context.add_variable_from_value("object", request.object_value.clone());
    context.add_variable_from_value("oldObject", cel::Value::Null);
    context.add_variable_from_value("params", cel::Value::Null);
    let namespace = if e.site.sees_namespace() {
        request.namespace.clone()
    } else {
        cel::Value::Null
    };
    context.add_variable_from_value("namespaceObject", namespace);
    context.add_variable_from_value("request", request.attributes.clone());
    if e.site.sees_variables() {
        let bound: HashMap<&str, cel::Value> = e
            .reads
            .iter()
            .filter_map(|n| Some((n.as_str(), variables.values.get(n)?.clone())))
            .collect();
        context.add_variable_from_value("variables", bound);
    }
    e.program.execute(&context).map_err(|err| {
        // A variable that failed is absent from the map: reading it is
        // that variable's error, as the API server's lazy evaluation gives.
        if let ExecutionError::NoSuchKey(k) = &err
            && let Some(f) = variables.failed.get(k.as_str())
        {
            return f.clone();
        }
        Failure {
            site: e.site,
            expression: e.text.clone(),
            error: go_text(&err, &e.text),
        }
    })
}

/// `failurePolicy`: what an evaluation error does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The request is denied with the error.
    Fail,
    /// The policy is skipped as if it did not match.
    Ignore,
}

impl FailurePolicy {
    /// The field as written; Kubernetes' default is `Fail`.
    pub fn of(field: Option<&str>) -> FailurePolicy {
        match field {
            Some("Ignore") => FailurePolicy::Ignore,
            None | Some("Fail") => FailurePolicy::Fail,
            Some(other) => panic!("failurePolicy {other} is not Fail or Ignore"),
        }
    }
}

/// Match conditions as the API server evaluates them: any `false` means no
/// match, even if another failed; otherwise a failure is the result.
fn matches(
    env: &Arc<cel::Env>,
    conditions: &[(String, Expr)],
    request: &Request,
) -> Result<Option<String>, Failure> {
    let mut failure = None;
    for (name, e) in conditions {
        match eval(env, e, request, &Variables::default()) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(Some(name.clone())),
            Ok(other) => {
                failure.get_or_insert(Failure {
                    site: e.site,
                    expression: e.text.clone(),
                    error: format!("expected bool, got {other:?}"),
                });
            }
            Err(f) => {
                failure.get_or_insert(f);
            }
        }
    }
    failure.map_or(Ok(None), Err)
}

/// Whether `text` reads `variables.<name>`.
fn reads(e: &Expr, name: &str) -> bool {
    e.reads.iter().any(|n| n == name)
}

/// Evaluates `e` as the API server does, variables lazily: a variable is
/// evaluated the first time an evaluation reads it (here: the evaluation
/// stops at the unknown name, the variable is evaluated, and it runs
/// again), then kept for the rest of the request.
fn eval_lazy(
    env: &Arc<cel::Env>,
    e: &Expr,
    request: &Request,
    declared: &[(String, Expr)],
    vars: &mut Variables,
) -> Result<cel::Value, Failure> {
    vars.evaluated += 1;
    loop {
        let result = eval(env, e, request, vars);
        let Err(f) = &result else { return result };
        let is_pending = |n: &str| {
            !vars.values.contains_key(n)
                && !vars.failed.contains_key(n)
                && !vars.evaluating.iter().any(|x| x == n)
        };
        // The variable the error names; else, when an error elsewhere
        // hides the read (`variables.a && x` with both failing), the first
        // variable the expression reads that is not evaluated yet.
        let named = f.error.strip_prefix("no such key: ");
        let pending = declared
            .iter()
            .find(|(n, _)| Some(n.as_str()) == named && is_pending(n))
            .or_else(|| declared.iter().find(|(n, _)| is_pending(n) && reads(e, n)));
        let Some((name, expr)) = pending else {
            return result;
        };
        vars.evaluating.push(name.clone());
        let value = eval_lazy(env, expr, request, declared, vars);
        vars.evaluating.pop();
        match value {
            Ok(v) => {
                vars.values.insert(name.clone(), v);
            }
            Err(f) => {
                vars.failed.insert(name.clone(), f);
            }
        }
    }
}

/// What one policy did to one request.
#[derive(Debug)]
pub enum Run {
    /// A match condition (named) was false: the policy does not apply.
    NotMatched(String),
    /// An expression failed; `failurePolicy` decides what that means.
    Failed(Failure),
    /// A validating policy's verdict: the first validation that did not
    /// hold, with its reason and message, or none.
    Validated(Option<Denial>),
    /// A mutating policy's result: the object after its patch (unchanged
    /// when the mutation gave no operations), and its variables.
    Mutated {
        object: Value,
        variables: HashMap<String, cel::Value>,
        /// Expressions evaluated, match conditions included.
        evaluated: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// `Invalid` unless the validation says otherwise.
    pub reason: String,
    pub message: String,
}

/// A ValidatingAdmissionPolicy, compiled.
pub struct Validating {
    pub failure_policy: FailurePolicy,
    conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
    /// `auditAnnotations`: key and value expression.
    audit: Vec<(String, Expr)>,
}

struct Validation {
    expr: Expr,
    message: Option<String>,
    message_expression: Option<Expr>,
    reason: Option<String>,
}

fn compile_named<'a>(
    env: &cel::Env,
    site: Site,
    named: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<(String, Expr)>, String> {
    named
        .map(|(name, text)| Ok((name.clone(), compile(env, site, text)?)))
        .collect()
}

/// Expressions by name, in order: match conditions or variables.
type Named = Vec<(String, Expr)>;

/// A policy's match conditions and variables, each at its site.
fn conditions_and_variables(
    env: &cel::Env,
    conditions: &Option<Vec<MatchCondition>>,
    variables: &Option<Vec<Variable>>,
) -> Result<(Named, Named), String> {
    let conditions = compile_named(
        env,
        Site::MatchCondition,
        conditions
            .iter()
            .flatten()
            .map(|c| (&c.name, &c.expression)),
    )?;
    let variables = compile_named(
        env,
        Site::Variable,
        variables.iter().flatten().map(|v| (&v.name, &v.expression)),
    )?;
    Ok((conditions, variables))
}

impl Validating {
    pub fn new(env: &cel::Env, spec: &ValidatingAdmissionPolicySpec) -> Result<Self, String> {
        let (conditions, variables) =
            conditions_and_variables(env, &spec.match_conditions, &spec.variables)?;
        let validations = spec
            .validations
            .iter()
            .flatten()
            .map(|v| {
                Ok(Validation {
                    expr: compile(env, Site::Validation, &v.expression)?,
                    message: v.message.clone(),
                    message_expression: v
                        .message_expression
                        .as_deref()
                        .map(|m| compile(env, Site::MessageExpression, m))
                        .transpose()?,
                    reason: v.reason.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        let audit = spec
            .audit_annotations
            .iter()
            .flatten()
            .map(|a| {
                Ok((
                    a.key.clone(),
                    compile(env, Site::Validation, &a.value_expression)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Validating {
            failure_policy: FailurePolicy::of(spec.failure_policy.as_deref()),
            conditions,
            variables,
            validations,
            audit,
        })
    }

    pub fn run(&self, env: &Arc<cel::Env>, request: &Request) -> Run {
        match matches(env, &self.conditions, request) {
            Ok(Some(name)) => return Run::NotMatched(name),
            Ok(None) => {}
            Err(f) => return Run::Failed(f),
        }
        let mut vars = Variables::default();
        for v in &self.validations {
            match eval_lazy(env, &v.expr, request, &self.variables, &mut vars) {
                Ok(cel::Value::Bool(true)) => continue,
                Ok(cel::Value::Bool(false)) => {}
                Ok(other) => {
                    return Run::Failed(Failure {
                        site: Site::Validation,
                        expression: v.expr.text.clone(),
                        error: format!("expected bool, got {other:?}"),
                    });
                }
                Err(f) => return Run::Failed(f),
            }
            return Run::Validated(Some(Denial {
                reason: v.reason.clone().unwrap_or_else(|| "Invalid".into()),
                message: self.message(env, v, request, &mut vars),
            }));
        }
        Run::Validated(None)
    }

    /// What a binding with `validationActions: [Warn]` gives: the message
    /// of every validation that does not hold, and the audit annotations
    /// whose value is not null. `Err` when an expression fails.
    pub fn warnings(
        &self,
        env: &Arc<cel::Env>,
        request: &Request,
    ) -> Result<(Vec<String>, BTreeMap<String, String>), Failure> {
        if matches(env, &self.conditions, request)?.is_some() {
            return Ok(Default::default());
        }
        let mut vars = Variables::default();
        let mut warnings = Vec::new();
        for v in &self.validations {
            if eval_lazy(env, &v.expr, request, &self.variables, &mut vars)?
                == cel::Value::Bool(false)
            {
                warnings.push(self.message(env, v, request, &mut vars));
            }
        }
        let mut audit = BTreeMap::new();
        for (key, e) in &self.audit {
            match eval_lazy(env, e, request, &self.variables, &mut vars)? {
                cel::Value::Null => {}
                cel::Value::String(s) => {
                    audit.insert(key.clone(), s.to_string());
                }
                other => panic!("audit annotation {key} gives {other:?}"),
            }
        }
        Ok((warnings, audit))
    }

    /// A failed validation's message: `messageExpression` when it gives a
    /// usable string; else `message`; else the API server's default. An
    /// error there never changes the verdict.
    fn message(
        &self,
        env: &Arc<cel::Env>,
        v: &Validation,
        request: &Request,
        vars: &mut Variables,
    ) -> String {
        if let Some(m) = &v.message_expression
            && let Ok(cel::Value::String(s)) = eval_lazy(env, m, request, &self.variables, vars)
            && !s.trim().is_empty()
            && !s.contains('\n')
        {
            return s.to_string();
        }
        v.message
            .clone()
            .unwrap_or_else(|| format!("failed expression: {}", v.expr.text))
    }

    /// The admission verdict: `None` admits, `Some` denies with the text the
    /// API server puts after "denied request: ".
    pub fn verdict(&self, env: &Arc<cel::Env>, request: &Request) -> Option<Denial> {
        match self.run(env, request) {
            Run::NotMatched(_) | Run::Validated(None) => None,
            Run::Validated(Some(d)) => Some(d),
            Run::Failed(f) => match self.failure_policy {
                FailurePolicy::Ignore => None,
                FailurePolicy::Fail => Some(Denial {
                    reason: "Invalid".into(),
                    message: f.message(),
                }),
            },
            Run::Mutated { .. } => unreachable!("a validating policy does not mutate"),
        }
    }
}

/// The API server's whole message for a pod `pod_name` denied by policy
/// `policy` through binding `binding`.
pub fn api_message(pod_name: &str, policy: &str, binding: &str, d: &Denial) -> String {
    let prefix = match d.reason.as_str() {
        "Forbidden" => format!("pods \"{pod_name}\" is forbidden: "),
        _ => format!("The pods \"{pod_name}\" is invalid: : "),
    };
    format!(
        "{prefix}ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        d.message
    )
}

/// A MutatingAdmissionPolicy with JSONPatch mutations, compiled.
pub struct Mutating {
    pub failure_policy: FailurePolicy,
    conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    mutations: Vec<Expr>,
}

impl Mutating {
    pub fn new(env: &cel::Env, spec: &MutatingAdmissionPolicySpec) -> Result<Self, String> {
        let (conditions, variables) =
            conditions_and_variables(env, &spec.match_conditions, &spec.variables)?;
        let mutations = spec
            .mutations
            .iter()
            .flatten()
            .map(|m| {
                let text = m
                    .json_patch
                    .as_ref()
                    .and_then(|j| j.expression.as_deref())
                    .ok_or("only JSONPatch mutations are modelled")?;
                compile(env, Site::Mutation, text)
            })
            .collect::<Result<_, String>>()?;
        Ok(Mutating {
            failure_policy: FailurePolicy::of(spec.failure_policy.as_deref()),
            conditions,
            variables,
            mutations,
        })
    }

    pub fn run(&self, env: &Arc<cel::Env>, request: &Request) -> Run {
        match matches(env, &self.conditions, request) {
            Ok(Some(name)) => return Run::NotMatched(name),
            Ok(None) => {}
            Err(f) => return Run::Failed(f),
        }
        let mut vars = Variables::default();
        let mut object = request.object.clone();
        for m in &self.mutations {
            let ops = match eval_lazy(env, m, request, &self.variables, &mut vars) {
                Ok(cel::Value::List(ops)) => ops,
                Ok(other) => {
                    return Run::Failed(Failure {
                        site: Site::Mutation,
                        expression: m.text.clone(),
                        error: format!("expected a list of JSONPatch, got {other:?}"),
                    });
                }
                Err(f) => return Run::Failed(f),
            };
            if ops.is_empty() {
                continue;
            }
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops.iter().map(operation).collect())).unwrap();
            if let Err(e) = json_patch::patch(&mut object, &patch) {
                return Run::Failed(Failure {
                    site: Site::Mutation,
                    expression: m.text.clone(),
                    error: format!("JSON Patch: {e}"),
                });
            }
        }
        Run::Mutated {
            object,
            evaluated: self.conditions.len() + vars.evaluated,
            variables: vars.values,
        }
    }

    /// How many expressions the API server evaluates for `request`: match
    /// conditions, the variables read, the mutation.
    pub fn evaluated(&self, env: &Arc<cel::Env>, request: &Request) -> usize {
        match self.run(env, request) {
            Run::Mutated { evaluated, .. } => evaluated,
            _ => self.conditions.len(),
        }
    }

    /// The variables a lazy evaluation of `request` reads, by index: what
    /// the API server evaluates for it.
    pub fn needed(&self, env: &Arc<cel::Env>, request: &Request) -> Vec<usize> {
        let Run::Mutated { variables, .. } = self.run(env, request) else {
            return Vec::new();
        };
        (0..self.variables.len())
            .filter(|&i| variables.contains_key(&self.variables[i].0))
            .collect()
    }

    /// The evaluation the API server makes: the match conditions, the
    /// `needed` variables once each, the mutation, the patch applied; no
    /// evaluation repeated, as the lazy one here repeats them. For timing.
    pub fn evaluate(&self, env: &Arc<cel::Env>, request: &Request, needed: &[usize]) -> Value {
        if matches(env, &self.conditions, request)
            .ok()
            .flatten()
            .is_some()
        {
            return request.object.clone();
        }
        let mut vars = Variables::default();
        for &i in needed {
            let (name, e) = &self.variables[i];
            if let Ok(v) = eval(env, e, request, &vars) {
                vars.values.insert(name.clone(), v);
            }
        }
        let mut object = request.object.clone();
        for m in &self.mutations {
            if let Ok(cel::Value::List(ops)) = eval(env, m, request, &vars)
                && !ops.is_empty()
            {
                let patch: json_patch::Patch =
                    serde_json::from_value(Value::Array(ops.iter().map(operation).collect()))
                        .unwrap();
                json_patch::patch(&mut object, &patch).unwrap();
            }
        }
        object
    }

    /// The object after this policy, as admission continues with it: an
    /// error under `Ignore` leaves it unchanged; under `Fail` it is `Err`.
    pub fn admit(&self, env: &Arc<cel::Env>, request: &Request) -> Result<Value, Failure> {
        match self.run(env, request) {
            Run::Mutated { object, .. } => Ok(object),
            Run::NotMatched(_) => Ok(request.object.clone()),
            Run::Failed(f) => match self.failure_policy {
                FailurePolicy::Ignore => Ok(request.object.clone()),
                FailurePolicy::Fail => Err(f),
            },
            Run::Validated(_) => unreachable!("a mutating policy does not validate"),
        }
    }
}

/// A JSONPatch struct as the operation it stands for.
fn operation(v: &cel::Value) -> Value {
    let cel::Value::Struct(s) = v else {
        panic!("not a JSONPatch: {v:?}")
    };
    assert_eq!(s.name(), "JSONPatch");
    let field = |name: &str| {
        s.field_value(name)
            .map(|value| cel::Value::try_from(value).unwrap().json().unwrap())
    };
    let mut op = json!({ "op": field("op").expect("op"), "path": field("path").expect("path") });
    for name in ["value", "from"] {
        if let Some(v) = field(name) {
            op[name] = v;
        }
    }
    op
}

/// A CRD's `x-kubernetes-validations` rule: `self` is the schema node the
/// rule sits on, and nothing else is bound (no `oldSelf`: Tandem's rules are
/// not transition rules).
pub fn crd_rule(env: &Arc<cel::Env>, rule: &str, node: &Value) -> Result<bool, String> {
    let program = env
        .compile(rule)
        .map_err(|e| format!("does not compile: {e}"))?;
    let mut context = cel::Context::with_env(env.clone());
    context.add_variable_from_value("self", cel::to_value(node).unwrap());
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("gives {other:?}, not a bool")),
        Err(e) => Err(go_text(&e, rule)),
    }
}

/// Admission as the API server runs it for a CREATE: the mutating policies
/// in order (again once if any changed the pod: Tandem's are all
/// `reinvocationPolicy: IfNeeded`), then the validating ones on the result.
/// `Ok` is the pod admitted; `Err` the denial (a validation, or an error
/// under `failurePolicy: Fail`).
pub fn admit(
    env: &Arc<cel::Env>,
    mutating: &[Mutating],
    validating: &[Validating],
    pod: &Value,
    namespace: &Value,
) -> Result<Value, Denial> {
    let mut object = stored(pod);
    for round in 0..2 {
        let before = object.clone();
        for m in mutating {
            object = m
                .admit(env, &Request::create(&object, namespace))
                .map_err(|f| Denial {
                    reason: "Invalid".into(),
                    message: f.message(),
                })?;
        }
        if round == 0 && object == before {
            break;
        }
    }
    for v in validating {
        if let Some(d) = v.verdict(env, &Request::create(&object, namespace)) {
            return Err(d);
        }
    }
    Ok(object)
}
