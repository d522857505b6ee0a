//! Finds the C files under the given paths (a parallel walk that ignores no source for being
//! listed in a `.gitignore`), the kernel tree they belong to, and how to show their paths.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::AuditError;

/// A file to scan.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The path as reported: `./` + the path below the tree root.
    pub display: Arc<Path>,
    /// Only read for its macros: a header of the tree outside the audited paths.
    pub macros_only: bool,
}

#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<SourceFile>,
    /// Kernel tree roots found above the paths (a directory whose Makefile sets VERSION).
    pub kernel_roots: Vec<PathBuf>,
    pub errors: Vec<AuditError>,
    /// How many of the given paths exist.
    pub existing: usize,
}

pub fn is_c(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("c" | "h"))
}

/// The kernel version in `root/Makefile` (`6.12.117`), if it is a kernel tree's root.
pub fn kernel_version(root: &Path) -> Option<String> {
    let mk = std::fs::read_to_string(root.join("Makefile")).ok()?;
    let var = |name: &str| {
        mk.lines().take(20).find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let (v, p) = (var("VERSION")?, var("PATCHLEVEL")?);
    let mut s = format!("{v}.{p}");
    if let Some(sub) = var("SUBLEVEL").filter(|s| !s.is_empty()) {
        s = format!("{s}.{sub}");
    }
    Some(s + &var("EXTRAVERSION").unwrap_or_default())
}

/// The root paths are shown relative to: the kernel tree above `p`, else `p` itself (its
/// directory for a file).
fn root_of(p: &Path) -> (PathBuf, bool) {
    if let Some(k) = p.ancestors().find(|a| kernel_version(a).is_some()) {
        return (k.to_path_buf(), true);
    }
    let base = if p.is_dir() {
        p
    } else {
        p.parent().unwrap_or(p)
    };
    (base.to_path_buf(), false)
}

fn display(root: &Path, p: &Path) -> Arc<Path> {
    let rel = p.strip_prefix(root).unwrap_or(p);
    Arc::from(Path::new(".").join(rel).as_path())
}

/// Walks every path; a missing or unreadable one is reported and skipped.
pub fn walk(paths: &[PathBuf]) -> Walked {
    let mut w = Walked::default();
    let mut seen = std::collections::HashSet::new();
    for given in paths {
        let Ok(abs) = std::fs::canonicalize(given) else {
            w.errors.push(AuditError::NoSuchPath {
                path: given.clone(),
            });
            continue;
        };
        w.existing += 1;
        let (root, kernel) = root_of(&abs);
        if kernel && !w.kernel_roots.contains(&root) {
            w.kernel_roots.push(root.clone());
        }
        if abs.is_file() {
            if !is_c(&abs) {
                w.errors.push(AuditError::NotC {
                    path: given.clone(),
                });
            } else if seen.insert(abs.clone()) {
                w.files.push(SourceFile {
                    display: display(&root, &abs),
                    path: abs,
                    macros_only: false,
                });
            }
            continue;
        }
        let (files, errors) = walk_dir(&abs, &root);
        w.errors.extend(errors);
        w.files
            .extend(files.into_iter().filter(|f| seen.insert(f.path.clone())));
    }
    // A subdirectory's ops macros live in the tree's include/: read those headers too.
    for root in w.kernel_roots.clone() {
        let (headers, errors) = walk_dir(&root.join("include"), &root);
        w.errors.extend(errors);
        for mut h in headers
            .into_iter()
            .filter(|h| h.path.extension().is_some_and(|e| e == "h"))
        {
            if seen.insert(h.path.clone()) {
                h.macros_only = true;
                w.files.push(h);
            }
        }
    }
    // The parallel walk's order is arbitrary; reports and macro choices must not be.
    w.files.sort_by(|a, b| a.path.cmp(&b.path));
    w
}

fn walk_dir(dir: &Path, root: &Path) -> (Vec<SourceFile>, Vec<AuditError>) {
    let found = Mutex::new((Vec::new(), Vec::new()));
    ignore::WalkBuilder::new(dir)
        // Kernel .gitignore files list generated sources, never hand-written ones; but a user's
        // tree may ignore anything, so no ignore file is honoured. Hidden entries (.git) are skipped.
        .standard_filters(false)
        .hidden(true)
        .build_parallel()
        .run(|| {
            let found = &found;
            Box::new(move |entry| {
                match entry {
                    Ok(e) if e.file_type().is_some_and(|t| t.is_file()) && is_c(e.path()) => {
                        let f = SourceFile {
                            display: display(root, e.path()),
                            path: e.into_path(),
                            macros_only: false,
                        };
                        found.lock().unwrap_or_else(|p| p.into_inner()).0.push(f);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let path = err_path(&err).unwrap_or_else(|| dir.to_path_buf());
                        let e = AuditError::Walk {
                            path,
                            message: err.to_string(),
                        };
                        found.lock().unwrap_or_else(|p| p.into_inner()).1.push(e);
                    }
                }
                ignore::WalkState::Continue
            })
        });
    found.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn err_path(e: &ignore::Error) -> Option<PathBuf> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            err_path(err)
        }
        _ => None,
    }
}
