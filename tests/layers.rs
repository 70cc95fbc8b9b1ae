//! The module layers, declared once and enforced.
//!
//! [`LAYERS`] is the one ordered list of the crate's top-level modules,
//! lowest first: a module may import (`crate::x`) only from its own module
//! or from a module of a lower layer. [`DEBT`] lists the upward imports that
//! exist today and are to be removed (issue 17); it may only shrink:
//!
//! - an upward import that is not in [`DEBT`] fails `no_module_imports_from_a_layer_above`;
//! - a [`DEBT`] entry that no longer exists fails `debt_only_lists_imports_that_still_exist`,
//!   so whoever removes an edge also strikes it here.
//!
//! With one module a layer and every edge pointing down (or listed as
//! debt), the modules outside [`DEBT`] form no cycle.
//!
//! Imports are read from the source text: every `crate::name` outside
//! comments and outside `#[cfg(test)]` modules and files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first, one top-level module a layer.
const LAYERS: &[&str] = &[
    "shutdown",    // the shutdown watch every loop waits on
    "net",         // client identity: PROXY protocol, CIDRs, X-Forwarded-For (pure)
    "config",      // YAML -> validated Config (data)
    "metrics",     // the Prometheus registry and typed handles
    "h1",          // the HTTP/1.1 codec: bytes and spans in, decisions and bytes out (pure)
    "resp",        // the RESP codec: commands, reply lengths, command classes (pure)
    "upstream", // reaching a backend: connect, TLS, pools, the HTTP/1.1 client loop, request bodies
    "backend",  // identity + live state
    "balance",  // pure policies over candidates
    "routing",  // classify, the immutable RoutingTable, tiers
    "health",   // probes, claims, leader, the monitor
    "discovery", // DNS and member lists -> desired backend sets
    "consistency", // sessions, freshness
    "proxy",    // the core: read, write, errors -> responses
    "tcp",      // raw TCP listeners: route, hold, copy, close on a leader change
    "tls",      // the listener's rustls config
    "h2_conn",  // an HTTP/2 client connection: open streams, its deadlines
    "server",   // listeners, workers, the HTTP/1.1 server loop, h2 via hyper
    "control",  // reload, config watch
    "admin",    // the admin API
    "app",      // assembly
];

/// Upward imports that exist today, `(from, to)`, each to be removed by
/// moving the type or function to the layer that owns it.
const DEBT: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> usize {
    LAYERS.iter().position(|m| *m == module).unwrap_or_else(|| {
        panic!("module `{module}` is in no layer: add it to LAYERS in tests/layers.rs")
    })
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

/// Names of the files a parent declares as `#[cfg(test)] mod name;`.
fn test_only_modules(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut after_cfg_test = false;
    for line in src.lines() {
        let t = line.trim();
        if t == "#[cfg(test)]" {
            after_cfg_test = true;
            continue;
        }
        if after_cfg_test {
            if let Some(rest) = t
                .strip_prefix("mod ")
                .or_else(|| t.strip_prefix("pub(crate) mod "))
            {
                if let Some(name) = rest.strip_suffix(';') {
                    names.insert(name.trim().to_string());
                }
            }
        }
        after_cfg_test = t.starts_with("#[");
    }
    names
}

/// The text of `src` without comments and without `#[cfg(test)]` blocks.
fn code_outside_tests(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            // Skip the item that follows: up to its matching closing brace,
            // or to its `;` when it has no body.
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                let code = l.split("//").next().unwrap_or("");
                for c in code.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The `.rs` files under `root` that are not test-only modules.
fn code_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut test_only = BTreeSet::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let dir = if f.file_name().unwrap() == "mod.rs" || f.parent() == Some(root) {
            f.parent().unwrap().to_path_buf()
        } else {
            f.with_extension("")
        };
        for name in test_only_modules(&src) {
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(name).join("mod.rs"));
        }
    }
    files.retain(|f| !test_only.contains(f));
    files
}

/// `(from, to) -> files` for every import of another top-level module.
fn imports() -> BTreeMap<(String, String), BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in &code_files(&root) {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let from = first.trim_end_matches(".rs").to_string();
        if from == "main" || from == "lib" {
            continue;
        }
        let code = code_outside_tests(&std::fs::read_to_string(f).unwrap());
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !to.is_empty() && to != from {
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_from_a_layer_above() {
    let mut wrong = Vec::new();
    for ((from, to), files) in imports() {
        let upward = layer_of(&to) > layer_of(&from);
        if upward && !DEBT.contains(&(from.as_str(), to.as_str())) {
            wrong.push(format!(
                "{from} -> {to} (in {})",
                files.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from a layer above (see LAYERS in tests/layers.rs; move the item down instead):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn debt_only_lists_imports_that_still_exist() {
    let edges = imports();
    let gone: Vec<_> = DEBT
        .iter()
        .filter(|(from, to)| !edges.contains_key(&(from.to_string(), to.to_string())))
        .collect();
    assert!(
        gone.is_empty(),
        "these upward imports are gone: strike them from DEBT: {gone:?}"
    );
}

#[test]
fn every_module_has_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let module = name.trim_end_matches(".rs");
        if module != "main" && module != "lib" {
            layer_of(module);
        }
    }
}

#[test]
fn the_reader_sees_imports_and_skips_tests_and_comments() {
    let src = "use crate::a::X;\n// crate::b\n#[cfg(test)]\nmod tests {\n    use crate::c;\n}\nfn f() { crate::d::g() }\n";
    let code = code_outside_tests(src);
    assert!(code.contains("crate::a") && code.contains("crate::d"));
    assert!(!code.contains("crate::b") && !code.contains("crate::c"));
    assert_eq!(
        test_only_modules("#[cfg(test)]\nmod tests;\nmod real;\n"),
        BTreeSet::from(["tests".to_string()])
    );
}

/// Rooms of one concern (issue 17): no file under `src/` is over this many
/// lines of code. Tests do not count: files named `tests.rs` or
/// `*_tests.rs`, and a file's `#[cfg(test)] mod tests { .. }` block (only
/// the lines before it are counted).
const MAX_ROOM_LINES: usize = 600;

/// Files allowed past [`MAX_ROOM_LINES`], each with the reason. Keep short.
const BIG_ROOMS: &[&str] = &[
    // src/tcp/* is being written (issue 18); none is over today.
];

/// Whether `file` holds only tests (by its name).
fn is_test_file(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The lines of `src` before its inline `#[cfg(test)] mod .. {` block (all
/// of them when it has none).
fn room_lines(src: &str) -> usize {
    let lines: Vec<&str> = src.lines().collect();
    lines
        .windows(2)
        .position(|w| {
            let next = w[1].trim();
            w[0].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{')
        })
        .unwrap_or(lines.len())
}

#[test]
fn no_file_under_src_is_over_max_room_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let big: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .map(|f| (f.strip_prefix(&src).unwrap().display().to_string(), f))
        .filter(|(rel, _)| !BIG_ROOMS.contains(&rel.as_str()))
        .map(|(rel, f)| (rel, room_lines(&std::fs::read_to_string(f).unwrap())))
        .filter(|(_, n)| *n > MAX_ROOM_LINES)
        .map(|(rel, n)| format!("{rel} ({n} lines)"))
        .collect();
    assert!(
        big.is_empty(),
        "split these into rooms of one concern (move code, no behaviour change): {big:?}"
    );
}

#[test]
fn room_lines_stop_at_the_test_module() {
    assert_eq!(room_lines("a\nb\n#[cfg(test)]\nmod tests {\n  x\n}\n"), 2);
    assert_eq!(room_lines("a\nb\n#[cfg(test)]\nmod tests;\n"), 4);
    assert_eq!(room_lines("a\n"), 1);
    assert!(is_test_file(Path::new("src/config/preset_tests.rs")));
    assert!(is_test_file(Path::new("src/health/tests.rs")));
    assert!(!is_test_file(Path::new("src/health/monitor.rs")));
}

/// Each rule a newcomer asks about is decided in one file (issue 17):
/// `(what only that rule reads or defines, the files allowed to)`.
const RULE_ROOMS: &[(&str, &[&str])] = &[
    // When is a leader fenced: the fence flag is read by the fencing rule.
    ("is_fenced()", &["routing/fence.rs", "backend.rs"]),
    ("fn stale_claim(", &["routing/fence.rs"]),
    // Is this follower fresh enough, is it lagging: the freshness rule.
    ("leader_only", &["routing/freshness.rs"]),
    ("fn lag(", &["routing/freshness.rs"]),
    ("fn kept_position(", &["routing/freshness.rs"]),
];

#[test]
fn each_rule_is_decided_in_its_own_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for f in &code_files(&src) {
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let code = code_outside_tests(&std::fs::read_to_string(f).unwrap());
        for (needle, rooms) in RULE_ROOMS {
            if code.contains(needle) && !rooms.contains(&rel.as_str()) {
                wrong.push(format!("`{needle}` in {rel} (its rule lives in {rooms:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// README's `## Layout` section, up to the next `## ` heading.
fn layout_section() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("\n## Layout")
        .expect("README has a ## Layout section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// Every path under `src/` (files and directories), relative to the crate
/// root, with `/` separators.
fn src_tree() -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap();
            out.insert(rel.to_string_lossy().replace('\\', "/"));
            if path.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeSet::new();
    walk(&root.join("src"), root, &mut out);
    out
}

/// Whether `pattern` (a path; `*` matches within one segment) names `path`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == t.len()
        && p.iter().zip(&t).all(|(p, t)| match p.split_once('*') {
            Some((pre, post)) => {
                t.len() >= pre.len() + post.len() && t.starts_with(pre) && t.ends_with(post)
            }
            None => p == t,
        })
}

/// The `src/` paths a Layout text names: `(as written, the paths it may
/// mean)`. A line that starts with a `src/` path describes it; file names on
/// that line (`x.rs`, `dir/x.rs`, `dir/*.yaml`) are relative to the line's
/// directory (or to `src/`), and a full `src/..` path anywhere is itself.
fn layout_names(layout: &str) -> Vec<(String, Vec<String>)> {
    let mut names = Vec::new();
    for line in layout.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let base = match first.strip_prefix("src/") {
            Some(_) if first.ends_with('/') => Some(first.to_string()),
            Some(_) => Some(format!("{}/", first.rsplit_once('/').unwrap().0)),
            None => None,
        };
        let words = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || "_./*-".contains(c)))
            .map(|w| w.trim_end_matches('.'));
        for w in words {
            let w = w.trim_end_matches('/');
            if w.starts_with("src/") {
                names.push((w.to_string(), vec![w.to_string()]));
            } else if let Some(base) = &base {
                if w.ends_with(".rs") || w.ends_with(".yaml") {
                    names.push((
                        w.to_string(),
                        vec![format!("{base}{w}"), format!("src/{w}")],
                    ));
                }
            }
        }
    }
    names
}

#[test]
fn readme_layout_names_every_path_under_src_and_nothing_else() {
    let tree = src_tree();
    let mut named = BTreeSet::new();
    let mut gone = Vec::new();
    for (written, candidates) in layout_names(&layout_section()) {
        let hits: Vec<&String> = tree
            .iter()
            .filter(|p| candidates.iter().any(|c| path_matches(c, p)))
            .collect();
        if hits.is_empty() {
            gone.push(written);
        }
        for hit in hits {
            // A name with directories in it names those directories too.
            let mut p = hit.as_str();
            while p != "src" {
                named.insert(p.to_string());
                p = p.rsplit_once('/').unwrap().0;
            }
        }
    }
    let unnamed: Vec<&String> = tree.iter().filter(|p| !named.contains(*p)).collect();
    assert!(
        gone.is_empty() && unnamed.is_empty(),
        "README's Layout names paths that do not exist: {gone:?}\n\
         and does not name these paths under src/: {unnamed:?}"
    );
}

#[test]
fn the_layout_reader_resolves_names() {
    let names = layout_names(
        "src/h1/               codec: parse.rs (heads), presets/*.yaml; see src/x.rs.\n",
    );
    let written: Vec<&str> = names.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        written,
        ["src/h1", "parse.rs", "presets/*.yaml", "src/x.rs"]
    );
    assert_eq!(names[1].1, ["src/h1/parse.rs", "src/parse.rs"]);
    assert!(path_matches(
        "src/h1/presets/*.yaml",
        "src/h1/presets/etcd.yaml"
    ));
    assert!(!path_matches(
        "src/h1/presets/*.yaml",
        "src/h1/presets/etcd.yml"
    ));
    assert!(!path_matches("src/h1/*.rs", "src/h1/x/y.rs"));
}
