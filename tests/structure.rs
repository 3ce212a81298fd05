//! The code's shape, as issue 27 left it: src/main.rs stays glue (at most 500 lines), no module of
//! the library imports one that imports it back (the house reads top-down: commands -> training,
//! bench, tune, check -> model -> kernels -> gpu), and no code outside a family's declaration table
//! tells kernel variants apart by their names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dlsvm::kernels::registry::Family;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code without comments and without its unit tests (`#[cfg(test)] mod tests` to the
/// end of the file, as every file here places them).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The module path of a file under src/ (`kernels::gemm`), `""` for lib.rs.
fn module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// `module` cut to its first `depth` segments.
fn cut(module: &str, depth: usize) -> String {
    module.split("::").take(depth).collect::<Vec<_>>().join("::")
}

/// The modules each module uses (`crate::a::b` and `super::b` paths), at `depth` segments.
fn imports(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| cut(&module(f), depth)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let me = module(f);
        // `super::` of kernels/gemm.rs and of check/mod.rs alike: the module above.
        let parent = me.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string());
        let code = code(f);
        let mut used = BTreeSet::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
            for (i, _) in code.match_indices(prefix) {
                let rest = &code[i + prefix.len()..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let full = if base.is_empty() { path } else { format!("{base}::{path}") };
                // The longest prefix (of at most `depth` segments) that is a module: the path
                // may end in an item (`crate::kernels::Epilogue`).
                let full = full.trim_end_matches(':');
                if let Some(target) = (1..=depth).rev().map(|d| cut(full, d)).find(|t| modules.contains(t)) {
                    used.insert(target);
                }
            }
        }
        let me = cut(&me, depth);
        used.remove(&me);
        graph.entry(me).or_default().extend(used);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(path[i..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

#[test]
fn main_rs_is_glue() {
    let lines = std::fs::read_to_string(src().join("main.rs")).unwrap().lines().count();
    assert!(lines <= 500, "src/main.rs has {lines} lines: move logic into the library (at most 500)");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for depth in [1, 2] {
        let graph = imports(depth);
        assert!(graph.len() > 10, "the scan found no modules: {graph:?}");
        // The scan sees real imports: the tuner uses the timing module, which uses the kernels.
        assert!(graph["tune"].contains("measure") && graph["measure"].contains("kernels"), "{graph:?}");
        if let Some(c) = cycle(&graph) {
            panic!("an import circle (at depth {depth}): {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g).map(|c| c.len()), Some(3));
}

/// No code outside a family's declaration file tells variants apart by name: a variant's name as a
/// string literal is never compared, matched or searched for elsewhere (`== "rows"`,
/// `contains("subgroup")`, a match arm `"naive" =>`); names are parsed once, by the registry.
/// (The same word as plain text, `"rows"` in a message, is no variant's name.)
#[test]
fn no_code_outside_a_family_file_matches_a_variant_by_name() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let texts: Vec<(PathBuf, String)> = files.iter().map(|f| (f.clone(), code(f))).collect();
    let home = |f: Family| match f {
        Family::Gemm => "kernels/gemm.rs",
        Family::ConvFwd | Family::ConvData | Family::ConvWeight => "kernels/conv.rs",
        Family::PoolFwd | Family::PoolBwd => "kernels/pool.rs",
    };
    let mut homes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in Family::ALL {
        for d in f.decls() {
            homes.entry(d.name).or_default().insert(home(f));
        }
    }
    assert!(homes.len() >= 20, "{homes:?}");
    let matches_by_name = |text: &str, quoted: &str| {
        text.match_indices(quoted).any(|(i, _)| {
            let before = text[..i].trim_end();
            let after = text[i + quoted.len()..].trim_start();
            ["==", "!=", "contains(", "starts_with(", "ends_with(", "Some(", "matches!(", "|"]
                .iter()
                .any(|p| before.ends_with(p))
                || after.starts_with("=>")
                || (after.starts_with('|') && !after.starts_with("||"))
        })
    };
    // The check of the check: a line written as the issue found them is caught.
    assert!(matches_by_name("if variant.contains(\"subgroup\") {", "\"subgroup\""));
    assert!(matches_by_name("    \"naive\" | \"gather\" => true,", "\"naive\""));
    assert!(!matches_by_name("to_u32(op, \"rows\", n)?", "\"rows\""));
    for (name, allowed) in &homes {
        let quoted = format!("\"{name}\"");
        for (path, text) in &texts {
            let rel = path.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/");
            if !allowed.contains(rel.as_str()) && matches_by_name(text, &quoted) {
                panic!("src/{rel} tells variants apart by the name {quoted}: parse it through the registry");
            }
        }
    }
}
