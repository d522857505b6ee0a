//! From parsed sites to ops-table definitions: maps positional elements to member names, digs
//! embedded tables out of the structs that contain them (written in the initialiser or not),
//! applies what functions do to them (`x.open = f;`, `x = y;`), and decides whether the member
//! is there.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::parse::{Init, InitList, Layout, Site, SiteKind, Value, Write, WriteKind};
use crate::preprocess::{Cond, Prepared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefKind {
    /// `struct X name = { ... }`.
    Variable,
    /// One element of `struct X name[] = { {...}, {...} }`.
    ArrayElement,
    /// `(struct X){ ... }`.
    CompoundLiteral,
    /// `.fops = { ... }` inside the initialiser of a struct that holds an `X` by value.
    Embedded,
}

/// One initialised member.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    /// The value when it is a plain identifier (a function name, usually).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ident: Option<String>,
    /// The member is set only under this `#if`: counted as present in any configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip)]
    pub fn_ptr: Option<bool>,
    /// Set by code rather than by the initialiser: the audit read it from an assignment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_at_run_time: Option<RunTime>,
}

/// Where code sets a member: `x.read = f;`, or `x = y;` which copies every member of `y`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunTime {
    /// The function holding the statement.
    pub function: String,
    pub line: u32,
    /// The object copied, when the member came with a whole-object copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
}

/// One ops-table definition and the audit's verdict on it.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    /// Path as shown (`./fs/ext4/file.c`: relative to the tree root).
    pub file: Arc<Path>,
    pub line: u32,
    pub end_line: u32,
    /// `foo_fops`, `foo_fops[2]`, `outer.fops`, or `(compound literal)`.
    pub name: String,
    pub kind: DefKind,
    /// Declared outside any function: a data symbol of its own.
    pub file_scope: bool,
    /// The macro whose expansion at `line` wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_macro: Option<String>,
    pub members: Vec<Member>,
    /// Written with an initialiser (a brace list or a copy). Without one a static object is
    /// all zeroes until code fills it: it lacks every member the code does not set.
    pub initialised: bool,
    /// Positional elements that could not be mapped to names (the struct's layout was not found).
    pub positional: usize,
    /// Elements the audit could not read (a macro it could not expand, or unparsable text).
    pub unreadable: Vec<String>,
    /// Whether the audited member is set.
    pub has_member: bool,
}

/// Everything resolution needs from one file.
pub struct FileSites<'a> {
    pub display: &'a Arc<Path>,
    pub prepared: &'a Prepared,
    pub sites: &'a [Site],
    pub writes: &'a [Write],
}

/// What code does to a definition after its initialiser, in source order. Applied by
/// [`fill`] once every definition of the tree is known, as a copy's source may be anywhere.
#[derive(Debug, Clone)]
pub enum Fill {
    /// `x = y;` (or `T x = y;`): every member becomes `y`'s.
    Copy { from: String, at: RunTime },
    /// `x = <expression>;`: a copy of something the audit cannot name.
    Unknown { value: String, at: RunTime },
    /// `x.member = value;`; `NULL` or `0` takes the member away.
    Set {
        member: String,
        value: String,
        ident: bool,
        at: RunTime,
    },
    /// `f(&x)`, for an object without initialiser: `f` may fill it.
    AddressTo { callee: String, at: RunTime },
}

/// Resolves the sites of all files against the layouts found anywhere.
pub struct Resolver<'a> {
    pub target: &'a str,
    pub op: &'a str,
    pub layouts: &'a HashMap<String, Layout>,
}

impl Resolver<'_> {
    /// Appends the definitions of one file to `out`, and to `fills` what the file's code does
    /// to them later (by index into `out`).
    pub fn definitions(
        &self,
        f: &FileSites,
        out: &mut Vec<Definition>,
        fills: &mut Vec<(usize, Fill)>,
    ) {
        let first = out.len();
        // The function (start byte) each new definition is local to.
        let mut scopes: Vec<Option<usize>> = Vec::new();
        // A static declaration without initialiser before the definition of the same name is
        // a forward declaration, not an object of its own.
        let defined: HashSet<&str> = f
            .sites
            .iter()
            .filter(|s| s.init != Init::None && s.function.is_none())
            .filter_map(|s| s.name.as_deref())
            .collect();
        for site in f.sites {
            if site.init == Init::None
                && site.function.is_none()
                && site.name.as_deref().is_some_and(|n| defined.contains(n))
            {
                continue;
            }
            let via_macro = f
                .prepared
                .expansion_at(site.byte)
                .map(|e| e.macro_name.clone());
            let name = match (&site.kind, &site.name) {
                (SiteKind::ArrayElement(i), Some(n)) => format!("{n}[{i}]"),
                (_, Some(n)) => n.clone(),
                (_, None) => "(compound literal)".to_string(),
            };
            let kind = match site.kind {
                SiteKind::Variable => DefKind::Variable,
                SiteKind::ArrayElement(_) => DefKind::ArrayElement,
                SiteKind::CompoundLiteral => DefKind::CompoundLiteral,
            };
            let base = Definition {
                file: f.display.clone(),
                line: site.lines.0,
                end_line: site.lines.1,
                name,
                kind,
                file_scope: site.file_scope,
                via_macro,
                members: Vec::new(),
                initialised: site.init != Init::None,
                positional: 0,
                unreadable: Vec::new(),
                has_member: false,
            };
            let before = out.len();
            let walk = Walk {
                layout: site.layout.as_ref(),
                conds: &f.prepared.conds,
            };
            self.walk(&site.ty, &site.list, base, &walk, out, 0);
            let scope = site.function.as_ref().map(|(start, _)| *start);
            scopes.resize(out.len() - first, scope);
            if let Init::Copy(value) = &site.init {
                let at = RunTime {
                    function: site
                        .function
                        .as_ref()
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default(),
                    line: site.lines.0,
                    copied_from: None,
                };
                for i in before..out.len() {
                    fills.push((i, copy(value, at.clone())));
                }
            }
        }
        for w in f.writes {
            let at = RunTime {
                function: w.function.clone(),
                line: w.line,
                copied_from: None,
            };
            // The object a write designates: a local of the same function first, then one
            // of the file scope. `arr[i].fops` names the elements of an array without
            // initialiser, defined once as `arr[]`.
            let find = |target: &str| {
                let generic = without_subscripts(target);
                let matches = |i: usize| {
                    let n = &out[first + i].name;
                    *n == target || (n.ends_with("[]") && without_subscripts(n) == generic)
                };
                let local =
                    (0..scopes.len()).find(|&i| scopes[i] == Some(w.function_start) && matches(i));
                local
                    .or_else(|| (0..scopes.len()).find(|&i| scopes[i].is_none() && matches(i)))
                    .map(|i| first + i)
            };
            match &w.what {
                WriteKind::Member { name, value, ident } => {
                    // `x.fops = y` copies a whole embedded table; `x.read = f` sets a member.
                    if let Some(i) = find(&format!("{}.{name}", w.target)) {
                        fills.push((i, copy(value, at)));
                    } else if let Some(i) = find(&w.target) {
                        let fill = Fill::Set {
                            member: name.clone(),
                            value: value.clone(),
                            ident: *ident,
                            at,
                        };
                        fills.push((i, fill));
                    }
                }
                WriteKind::Whole { value, .. } => {
                    if let Some(i) = find(&w.target) {
                        fills.push((i, copy(value, at)));
                    }
                }
                WriteKind::AddressTo { callee } => {
                    if let Some(i) = find(&w.target).filter(|&i| !out[i].initialised) {
                        let callee = callee.clone();
                        fills.push((i, Fill::AddressTo { callee, at }));
                    }
                }
            }
        }
    }

    /// Judges `list` as a `ty`: the audited struct itself, or a container to look inside.
    fn walk(
        &self,
        ty: &str,
        list: &InitList,
        mut def: Definition,
        w: &Walk,
        out: &mut Vec<Definition>,
        depth: usize,
    ) {
        let conds = w.conds;
        let layout = w
            .layout
            .filter(|l| l.key == ty)
            .or_else(|| self.layouts.get(ty));
        // Members of a container the initialiser sets.
        let mut covered: Vec<&str> = Vec::new();
        let mut position = 0usize;
        let is_target = ty == self.target;
        let designated = list.items.iter().any(|i| i.field.is_some());
        for item in &list.items {
            // Among designated members, a bare `FOO_MEMBERS` or `FOO(x)` is a macro the audit
            // could not expand, not the next positional member.
            if let (true, None, Value::Expr { text, .. }) = (designated, &item.field, &item.value)
                && looks_like_macro(text)
            {
                def.unreadable.push(text.clone());
                continue;
            }
            let field = match (&item.field, &item.index) {
                (Some(f), _) => {
                    position = layout
                        .and_then(|l| l.fields.iter().position(|x| x.name == *f))
                        .map_or(position, |p| p + 1);
                    Some(f.clone())
                }
                (None, Some(_)) => None,
                (None, None) => {
                    position += 1;
                    layout
                        .and_then(|l| l.fields.get(position - 1))
                        .map(|x| x.name.clone())
                }
            };
            let spec = field
                .as_ref()
                .and_then(|f| layout?.fields.iter().find(|x| x.name == *f));
            if !is_target {
                // A container: only members holding a struct by value can hold a table.
                if let Some(spec) = spec {
                    covered.push(&spec.name);
                }
                if let (Some(spec), Value::List(inner), Some(f)) = (spec, &item.value, &field)
                    && let Some(inner_ty) = &spec.by_value
                    && depth < 4
                {
                    let nested = Definition {
                        name: format!("{}.{f}", def.name),
                        kind: DefKind::Embedded,
                        line: item.line,
                        end_line: item.line.max(def.line),
                        file_scope: false,
                        ..def.clone()
                    };
                    self.walk(inner_ty, inner, nested, w, out, depth + 1);
                }
                continue;
            }
            match (field, &item.value) {
                // `.write = NULL` (often a macro argument: `.write = (_write)`) sets nothing.
                (Some(_), Value::Expr { text, .. }) if is_null(text) => {}
                (Some(name), v) => {
                    let ident = match v {
                        Value::Expr { text, ident: true } => Some(text.clone()),
                        _ => None,
                    };
                    let condition = conds
                        .iter()
                        .filter(|c| c.open >= def.line && c.open < item.line && item.line < c.close)
                        .max_by_key(|c| c.open)
                        .map(|c| c.text.clone());
                    def.members.push(Member {
                        name,
                        ident,
                        condition,
                        fn_ptr: spec.map(|s| s.fn_ptr),
                        set_at_run_time: None,
                    });
                }
                (None, _) if item.index.is_some() => {
                    def.unreadable.push("[index] designator".into())
                }
                (None, Value::Expr { text, .. }) if layout.is_some() => {
                    def.unreadable.push(text.clone())
                }
                (None, _) => def.positional += 1,
            }
        }
        if !is_target {
            // Every table the container holds is an object, set in the initialiser or not: one
            // it leaves out is zeroes, and lacks every member until code fills it.
            let uncovered = layout.into_iter().flat_map(|l| &l.fields).filter(|f| {
                f.by_value.is_some() && !f.name.is_empty() && !covered.contains(&f.name.as_str())
            });
            for f in uncovered.filter(|_| depth < 4) {
                let nested = Definition {
                    name: format!("{}.{}", def.name, f.name),
                    kind: DefKind::Embedded,
                    file_scope: false,
                    initialised: false,
                    ..def.clone()
                };
                let inner_ty = f.by_value.as_deref().unwrap_or_default();
                self.walk(inner_ty, &InitList::default(), nested, w, out, depth + 1);
            }
            return;
        }
        if list.has_error {
            def.unreadable.push("(unparsable text)".into());
        }
        def.has_member = def.members.iter().any(|m| m.name == self.op);
        out.push(def);
    }
}

/// What [`Resolver::walk`] carries down from a site.
struct Walk<'a> {
    /// The site's own layout (an anonymous struct type), preferred to the tree's.
    layout: Option<&'a Layout>,
    conds: &'a [Cond],
}

/// `x = y` as a fill: a copy of a named object, or of an expression the audit cannot follow.
fn copy(value: &str, at: RunTime) -> Fill {
    let named = value.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && value.bytes().all(crate::lex::is_ident_char);
    if named {
        Fill::Copy {
            from: value.to_string(),
            at,
        }
    } else {
        Fill::Unknown {
            value: value.split_whitespace().collect::<Vec<_>>().join(" "),
            at,
        }
    }
}

/// `NULL`, `0`, `(NULL)`: a member value that leaves the member unset.
fn is_null(value: &str) -> bool {
    let v = value.trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace());
    v == "NULL" || v == "0"
}

/// `arr[1].fops` → `arr[].fops`.
fn without_subscripts(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push('[');
                }
                depth += 1;
            }
            ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out.push(']');
                }
            }
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Applies what code does to the definitions (see [`Fill`]), in source order, and judges
/// them again. A copy takes its source's members as they are after the source's own
/// member assignments; the source is looked up by name: in the same file first, then the
/// same directory, then anywhere in the tree.
pub fn fill(defs: &mut [Definition], fills: Vec<(usize, Fill)>, op: &str) {
    let mut by_def: HashMap<usize, Vec<Fill>> = HashMap::new();
    for (i, f) in fills {
        by_def.entry(i).or_default().push(f);
    }
    // Those without copies first, so a copy sees its source complete.
    let mut order: Vec<(usize, Vec<Fill>)> = by_def.into_iter().collect();
    order.sort_by_key(|(i, fs)| (fs.iter().any(|f| matches!(f, Fill::Copy { .. })), *i));
    for (i, fs) in order {
        // Functions that wrote the object already: a call taking its address after that
        // registers a filled table rather than filling it.
        let mut filled_in: HashSet<String> = HashSet::new();
        for f in fs {
            if let Fill::Copy { at, .. } | Fill::Unknown { at, .. } | Fill::Set { at, .. } = &f {
                filled_in.insert(at.function.clone());
            }
            match f {
                Fill::Copy { from, at } => {
                    let Some(src) = source(defs, i, &from) else {
                        let what = format!("copy of {from} (not found) in {}()", at.function);
                        defs[i].unreadable.push(what);
                        continue;
                    };
                    let members = defs[src]
                        .members
                        .iter()
                        .map(|m| Member {
                            condition: None,
                            set_at_run_time: Some(RunTime {
                                copied_from: Some(from.clone()),
                                ..at.clone()
                            }),
                            ..m.clone()
                        })
                        .collect();
                    defs[i].members = members;
                }
                Fill::Unknown { value, at } => {
                    // The object becomes something the audit cannot see: what it had is gone.
                    defs[i].members.clear();
                    let what = format!("copy of `{value}` in {}()", at.function);
                    defs[i].unreadable.push(what);
                }
                Fill::Set {
                    member,
                    value,
                    ident,
                    at,
                } => {
                    let d = &mut defs[i];
                    d.members.retain(|m| m.name != member);
                    if !is_null(&value) {
                        d.members.push(Member {
                            name: member,
                            ident: ident.then_some(value),
                            condition: None,
                            fn_ptr: None,
                            set_at_run_time: Some(at),
                        });
                    }
                }
                Fill::AddressTo { callee, at } => {
                    if !filled_in.contains(&at.function) {
                        let what = format!("address passed to {callee}() in {}()", at.function);
                        defs[i].unreadable.push(what);
                    }
                }
            }
        }
        defs[i].has_member = defs[i].members.iter().any(|m| m.name == op);
    }
}

/// The definition `from` names, as seen from definition `i`.
fn source(defs: &[Definition], i: usize, from: &str) -> Option<usize> {
    let here = &defs[i].file;
    let candidates: Vec<usize> = (0..defs.len())
        .filter(|&j| j != i && defs[j].name == from && defs[j].kind == DefKind::Variable)
        .collect();
    let same = |j: &&usize| defs[**j].file == *here;
    let near = |j: &&usize| defs[**j].file.parent() == here.parent();
    candidates
        .iter()
        .find(same)
        .or_else(|| candidates.iter().find(near))
        .or_else(|| candidates.first())
        .copied()
}

/// `FOO_BAR` or `FOO_BAR(...)`: how kernel macros are spelt.
fn looks_like_macro(text: &str) -> bool {
    let head = text.split('(').next().unwrap_or_default().trim();
    !head.is_empty()
        && head
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
