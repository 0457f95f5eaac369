//! CEL spelled from Rust values: string and JSON literals, label selectors,
//! globs. Every literal goes through here, so nothing a template holds can
//! break out of the expression it is placed in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

/// A single-quoted CEL string literal, which YAML shows without escapes.
pub(super) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list of string literals.
pub(super) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(string).collect();
    format!("[{}]", items.join(", "))
}

/// `value` as a CEL literal: objects become maps, which a JSONPatch value
/// may be, so the template's JSON reaches the pod as written.
///
/// The API server type-checks aggregate literals as homogeneous: every
/// value of a map, or element of a list, of one type. A container's fields
/// are not, so map values are wrapped in `dyn()`, and so are the elements of
/// any list but one of strings.
pub(super) fn literal(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        // CEL has no implicit conversion between int, uint and double: a
        // number keeps the kind JSON gave it.
        Value::Number(n) if n.is_i64() || n.is_f64() => n.to_string(),
        Value::Number(n) => format!("{n}u"),
        Value::String(s) => string(s),
        Value::Array(items) => {
            // Strings are one type; anything else may not be (an int and a
            // double, two lists of different elements), so it is `dyn`.
            let strings = items.iter().all(Value::is_string);
            let items: Vec<String> = items
                .iter()
                .map(|v| if strings { literal(v) } else { dynamic(v) })
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", string(k), dynamic(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn dynamic(value: &Value) -> String {
    format!("dyn({})", literal(value))
}

/// Whether `key` is among the labels at `labels` (`object.metadata.labels`).
fn has_label(labels: &str, key: &str) -> String {
    format!("(has({labels}) && {} in {labels})", string(key))
}

/// Kubernetes label-selector semantics over the labels at `labels`, as
/// `engine::selector_matches` decides them: an empty selector matches
/// everything, an unknown operator nothing.
pub(super) fn selector(sel: &LabelSelector, labels: &str) -> String {
    let mut terms = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        terms.push(format!(
            "({} && {labels}[{}] == {})",
            has_label(labels, k),
            string(k),
            string(v)
        ));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = strings(e.values.iter().flatten().map(String::as_str));
        let present = has_label(labels, &e.key);
        let value_in = format!("({present} && {labels}[{}] in {values})", string(&e.key));
        terms.push(match e.operator.as_str() {
            "In" => value_in,
            "NotIn" => format!("!{value_in}"),
            "Exists" => present,
            "DoesNotExist" => format!("!{present}"),
            _ => "false".into(),
        });
    }
    if terms.is_empty() {
        return "true".into();
    }
    terms.join(" && ")
}

/// An anchored RE2 pattern matching what the shell-style glob (`*`, `?`)
/// of `app.containers` matches.
pub(super) fn glob(pattern: &str) -> String {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => push_escaped(&mut re, c),
        }
    }
    re.push('$');
    re
}

fn push_escaped(re: &mut String, c: char) {
    if "\\.+*?()|[]{}^$".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_keep_kinds_and_escape_strings() {
        let v = json!({"a": [1, -2, 1.5, true, null], "b\"": "x\\y\n"});
        assert_eq!(
            literal(&v),
            r#"{'a': dyn([dyn(1), dyn(-2), dyn(1.5), dyn(true), dyn(null)]), 'b"': dyn('x\\y\n')}"#
        );
        assert_eq!(literal(&json!(["a", "b"])), "['a', 'b']");
        assert_eq!(literal(&json!([1, 1.5])), "[dyn(1), dyn(1.5)]");
        assert_eq!(string("it's\u{7}"), r"'it\'s\u0007'");
        assert_eq!(literal(&json!(u64::MAX)), "18446744073709551615u");
    }

    #[test]
    fn globs_are_anchored_and_escaped() {
        assert_eq!(glob("app-*"), "^app-.*$");
        assert_eq!(glob("a.b?"), "^a\\.b.$");
    }
}
