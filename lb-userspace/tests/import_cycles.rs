//! The agent's modules import each other in one direction only: no import
//! cycle between its top-level modules (`check`, `vrrp`, `agent`, ...), nor
//! between the files of one folder (`vrrp/diff.rs` and `vrrp/instance.rs`).
//! A cycle means two modules cannot be understood or tested apart; shared
//! words go down into a leaf (`vocab.rs`) instead. Test code is left out:
//! a test may reach anywhere.
//!
//! Every path a file names is read with `syn` (use trees and paths in code),
//! resolved against the module tree, and the graph checked for cycles.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};
use syn::visit::Visit;

/// A module's path below the crate root, e.g. `["check", "runner"]`.
type ModPath = Vec<String>;

/// Every `.rs` file under `dir` with its module path.
fn modules(src: &Path, dir: &Path, out: &mut Vec<(ModPath, PathBuf)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(src, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap().with_extension("");
        let mut m: ModPath = rel.iter().map(|c| c.to_string_lossy().into()).collect();
        if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            m.pop();
        }
        out.push((m, path));
    }
}

/// Collects the absolute paths (below `crate`) a file names, outside test code.
struct Names<'a> {
    here: &'a ModPath,
    /// Module path of the inline module being visited (`mod x { .. }`).
    inner: ModPath,
    found: BTreeSet<ModPath>,
}

impl Names<'_> {
    /// `segments` as written at the current place, made absolute; `None`
    /// for paths not starting with `crate`, `super` or `self` (external
    /// crates, std, local names).
    fn absolute(&self, segments: &[String]) -> Option<ModPath> {
        let mut base: ModPath = self.here.iter().chain(&self.inner).cloned().collect();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("super" | "self") => {
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
            }
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn add(&mut self, segments: &[String]) {
        if let Some(p) = self.absolute(segments) {
            self.found.insert(p);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.add(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.add(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_test(&m.attrs) {
            return;
        }
        self.inner.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.inner.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test(&u.attrs) {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.add(&segments);
        syn::visit::visit_path(self, p);
    }
}

/// The module of `known` that `path` lands in: its longest prefix that is
/// a module (an item's path lands in the module defining it).
fn owner<'a>(known: &'a BTreeSet<ModPath>, path: &ModPath) -> Option<&'a ModPath> {
    (0..=path.len())
        .rev()
        .find_map(|n| known.get(&path[..n].to_vec()))
}

/// The edges between `level`-deep module groups: at level 1 the top-level
/// modules; deeper, the files of one folder among themselves (a folder's
/// `mod.rs` against its own files is left out: it declares them).
fn edges(
    graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    level: usize,
) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (from, tos) in graph {
        for to in tos {
            let (a, b) = if level == 1 {
                (&from[..1], &to[..1])
            } else if from.len() >= level && to.len() >= level {
                (&from[..level], &to[..level])
            } else {
                continue;
            };
            if a != b && a[..level - 1] == b[..level - 1] {
                out.entry(a.to_vec()).or_default().insert(b.to_vec());
            }
        }
    }
    out
}

/// One cycle in `g`, if any (depth-first search for a back edge).
fn cycle(g: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn dfs(
        g: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        v: &ModPath,
        stack: &mut Vec<ModPath>,
        done: &mut BTreeSet<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(i) = stack.iter().position(|s| s == v) {
            let mut c = stack[i..].to_vec();
            c.push(v.clone());
            return Some(c);
        }
        if done.contains(v) {
            return None;
        }
        stack.push(v.clone());
        for w in g.get(v).into_iter().flatten() {
            if let Some(c) = dfs(g, w, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(v.clone());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|v| dfs(g, v, &mut Vec::new(), &mut done))
}

fn graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    modules(src, src, &mut files);
    let known: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (m, path) in &files {
        if m.is_empty() {
            continue; // lib.rs and main.rs only declare and wire modules
        }
        let text = fs::read_to_string(path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut names = Names {
            here: m,
            inner: Vec::new(),
            found: BTreeSet::new(),
        };
        names.visit_file(&file);
        let targets: BTreeSet<ModPath> = names
            .found
            .iter()
            .filter_map(|p| owner(&known, p))
            .filter(|o| !o.is_empty() && *o != m)
            .cloned()
            .collect();
        graph.insert(m.clone(), targets);
    }
    graph
}

fn show(c: &[ModPath]) -> String {
    c.iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() > 50, "read too few modules: {}", g.len());
    if let Some(c) = cycle(&edges(&g, 1)) {
        panic!("import cycle between top-level modules: {}", show(&c));
    }
}

#[test]
fn no_import_cycle_between_files_of_a_folder() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for level in 2..=4 {
        if let Some(c) = cycle(&edges(&g, level)) {
            panic!("import cycle inside a folder: {}", show(&c));
        }
    }
}

/// The check itself finds a cycle when there is one (so a broken reader
/// cannot pass by seeing nothing).
#[test]
fn a_cycle_is_found() {
    let dir = std::env::temp_dir().join(format!("xlb-cycles-{}", std::process::id()));
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::write(dir.join("lib.rs"), "pub mod a; pub mod b;").unwrap();
    fs::write(dir.join("a/mod.rs"), "pub mod x; pub mod y;").unwrap();
    fs::write(dir.join("a/x.rs"), "use super::y::Y; pub struct X;").unwrap();
    fs::write(dir.join("a/y.rs"), "pub struct Y(crate::a::x::X);").unwrap();
    fs::write(dir.join("b.rs"), "fn f() { let _ = crate::a::x::X; }").unwrap();
    let g = graph(&dir);
    let inside = cycle(&edges(&g, 2)).map(|c| show(&c));
    let top = cycle(&edges(&g, 1));
    fs::write(dir.join("a/x.rs"), "pub struct X(crate::b::B);").unwrap();
    fs::write(
        dir.join("b.rs"),
        "pub struct B; fn f() { let _ = crate::a::y::Y; }",
    )
    .unwrap();
    let g2 = graph(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(inside.as_deref(), Some("a::x -> a::y -> a::x"));
    assert_eq!(top, None, "b imports a, a does not import b");
    assert_eq!(
        cycle(&edges(&g2, 1)).map(|c| show(&c)).as_deref(),
        Some("a -> b -> a")
    );
}
