//! The layers of `src/` import one way: each layer only from those before it
//! in `LAYERS`, the order `src/lib.rs` declares and documents. A new import
//! against the grain fails here, naming the file and the line.

use std::path::{Path, PathBuf};

/// Bottom first. Layers on one rank (`admission`, `install`) may not import
/// each other.
const LAYERS: &[(&str, u8)] = &[
    ("facts", 0),
    ("template", 1),
    ("engine", 2),
    ("admission", 3),
    ("install", 3),
    ("cluster", 4),
    ("server", 5),
    ("cli", 6),
];

fn rank(layer: &str) -> Option<u8> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

/// What the pure layers may not touch: the engine and the facts decide from
/// their inputs alone (no I/O, no clock, no client, no logging), and the
/// templates too, but for the loader, which reads files.
const IMPURE_CRATES: [&str; 4] = ["tokio", "tracing", "hyper", "axum"];
const IMPURE_STD: [&str; 6] = ["fs", "net", "time", "env", "process", "thread"];
const KUBE_CLIENT: [&str; 5] = ["Client", "Api", "api", "client", "runtime"];
const IMPURE_MACROS: [&str; 4] = ["println!", "eprintln!", "print!", "eprint!"];

/// The impure things `code` names, with the line of each.
fn impurities(code: &str, may_read_files: bool) -> Vec<(usize, String)> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    let words = code.match_indices(|c: char| c.is_alphanumeric() || c == '_');
    let mut at = 0;
    for (i, _) in words {
        if i < at {
            continue;
        }
        let word: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        at = i + word.len();
        let starts_word = code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if starts_word && IMPURE_CRATES.contains(&word.as_str()) {
            found.push((line_of(i), word.clone()));
        }
        if starts_word
            && IMPURE_MACROS
                .iter()
                .any(|m| m.strip_suffix('!') == Some(word.as_str()))
            && code[at..].starts_with('!')
        {
            found.push((line_of(i), format!("{word}!")));
        }
    }
    for (i, module) in paths_under(code, "std") {
        let allowed = may_read_files && module == "fs";
        if IMPURE_STD.contains(&module.as_str()) && !allowed {
            found.push((line_of(i), format!("std::{module}")));
        }
    }
    for (i, item) in paths_under(code, "kube") {
        if KUBE_CLIENT.contains(&item.as_str()) {
            found.push((line_of(i), format!("kube::{item}")));
        }
    }
    found
}

/// Comments stripped, lines kept, so offsets still give line numbers.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate-level modules named through `crate::` in `code`, with the
/// byte offset of each: `crate::engine::decide` and every member of
/// `crate::{engine, facts::Policy}`, groups spanning lines included.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    paths_under(code, "crate")
}

/// The first segments named under `root::` in `code` (`std::fs::read` and
/// `std::{fs, io::Write}` give `fs`, `fs` and `io`), with byte offsets.
fn paths_under(code: &str, root: &str) -> Vec<(usize, String)> {
    let prefix = format!("{root}::");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices(&prefix) {
        // `root::` itself, not the end of a longer path (`kube_std::`).
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = &code[at + prefix.len()..];
        let Some(group) = after.strip_prefix('{') else {
            out.push((at, ident(after)));
            continue;
        };
        // Members at depth 0 of the group, up to its closing brace.
        let (mut depth, mut member_start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.push((at, ident(&group[member_start..i])));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push((at, ident(&group[member_start..i])));
                    member_start = i + 1;
                }
                _ => {}
            }
        }
    }
    out.retain(|(_, name)| !name.is_empty());
    out
}

#[test]
fn every_layer_imports_only_from_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let top = parts.next().unwrap();
        if top == "lib.rs" || top == "main.rs" {
            continue;
        }
        let layer = top.trim_end_matches(".rs").to_string();
        let Some(own) = rank(&layer) else {
            wrong.push(format!(
                "{}: not in a layer; add it to LAYERS and lib.rs",
                relative.display()
            ));
            continue;
        };
        let is_layer_root = relative.file_name().is_some_and(|f| f == "mod.rs");
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let line_of = |at: usize| code[..at].matches('\n').count() + 1;
        for (n, line) in code.lines().enumerate() {
            // A layer's root reaching `super::` reaches the crate root.
            if line.contains("super::super::") || (is_layer_root && line.contains("super::")) {
                wrong.push(format!(
                    "{}:{}: leaves its layer through super::",
                    relative.display(),
                    n + 1
                ));
            }
        }
        for (at, used) in crate_paths(&code) {
            if used == layer {
                continue;
            }
            let line = line_of(at);
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: layer {layer} imports {used}, which is not below it",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{}:{line}: crate::{used} is not a layer",
                    relative.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn lib_declares_the_layers_in_order() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let layers: Vec<&str> = LAYERS.iter().map(|(l, _)| *l).collect();
    let mut sorted_decl = declared.clone();
    sorted_decl.sort();
    let mut sorted_layers = layers.clone();
    sorted_layers.sort();
    assert_eq!(sorted_decl, sorted_layers, "lib.rs and LAYERS disagree");
    for (layer, _) in LAYERS {
        assert!(
            lib.contains(&format!("[`{layer}`]")),
            "lib.rs's layer list does not name {layer}"
        );
    }
}

#[test]
fn the_checker_sees_what_it_must_refuse() {
    let names =
        |code: &str| -> Vec<String> { crate_paths(code).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(
        names("use crate::server::AppState; let x = crate::engine::decide;"),
        ["server", "engine"]
    );
    assert_eq!(
        names("use crate::{\n    engine::{self, Decision},\n    facts::Policy,\n};"),
        ["engine", "facts"]
    );
    assert!(rank("engine") > rank("template"));
    assert_eq!(rank("admission"), rank("install"));
}

/// The engine and the facts are pure, and the templates but for the loader:
/// no I/O, no clock, no environment, no logging, no cluster client.
#[test]
fn the_pure_layers_touch_nothing_outside() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for layer in ["engine", "facts", "template"] {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let loader = relative == Path::new("template/load.rs");
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for (line, what) in impurities(&code, loader) {
                wrong.push(format!("{}:{line}: uses {what}", relative.display()));
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} files");
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_purity_check_sees_what_it_must_refuse() {
    let found = |code: &str, files: bool| -> Vec<String> {
        impurities(code, files)
            .into_iter()
            .map(|(_, w)| w)
            .collect()
    };
    assert_eq!(
        found(
            "use std::{collections::BTreeMap, fs, time::Instant};",
            false
        ),
        ["std::fs", "std::time"]
    );
    assert_eq!(
        found("let t = std::time::SystemTime::now();", false),
        ["std::time"]
    );
    assert_eq!(found("std::fs::read(p)", true), Vec::<String>::new());
    assert_eq!(found("std::env::var(\"X\")", true), ["std::env"]);
    assert_eq!(
        found(
            "tracing::info!(x); tokio::spawn(f); my_tokio_thing();",
            false
        ),
        ["tracing", "tokio"]
    );
    assert_eq!(
        found(
            "use kube::{Client, CustomResource}; kube::api::Api::all(c)",
            false
        ),
        ["kube::Client", "kube::api"]
    );
    assert_eq!(
        found("println!(\"x\"); let println = 1;", false),
        ["println!"]
    );
}
