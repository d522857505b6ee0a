//! Macro definitions: collected from the tree's headers in a first pass, classified (does the
//! macro produce an ops table, hide initialiser members, or only annotate a declaration?) and
//! expanded at call sites with argument substitution, `#`, `##` and nested calls.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::lex::{self, Kind, Lexer, Tok};

/// Nested expansion stops here: kernel ops macros nest three or four deep.
const MAX_DEPTH: usize = 12;

/// One `#define`.
#[derive(Debug, Clone)]
pub struct MacroDef {
    pub name: String,
    /// `None` for an object-like macro.
    pub params: Option<Vec<String>>,
    /// Name of the variadic parameter (`__VA_ARGS__` or a GNU named one), if any.
    pub variadic: Option<String>,
    pub body: String,
    pub file: Arc<Path>,
    pub line: u32,
}

/// What a macro means for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Mentions the audited struct or a container of it, or calls such a macro.
    Defines,
    /// Expands to designated initialiser members (`#define DRM_GEM_FOPS .open = drm_open, ...`).
    Members,
    /// A declaration annotation (`__read_mostly`, `__section(...)`) that confuses a C parser.
    Annotation,
    Other,
}

impl MacroDef {
    /// Parses the tokens of a `#define` directive (`toks[0]` is the macro name).
    pub fn from_directive(src: &[u8], toks: &[Tok], file: Arc<Path>, line: u32) -> Option<Self> {
        let name_tok = toks.first().filter(|t| t.kind == Kind::Ident)?;
        let name = String::from_utf8_lossy(name_tok.text(src)).into_owned();
        let mut i = 1;
        let mut params = None;
        let mut variadic = None;
        // Function-like only when `(` touches the name.
        if toks
            .get(1)
            .is_some_and(|t| t.text(src) == b"(" && !t.space_before)
        {
            let mut ps = Vec::new();
            i = 2;
            loop {
                let t = toks.get(i)?;
                i += 1;
                match t.text(src) {
                    b")" => break,
                    b"," => {}
                    b"..." => {
                        variadic = Some("__VA_ARGS__".to_string());
                        ps.push("__VA_ARGS__".to_string());
                    }
                    text if t.kind == Kind::Ident => {
                        let p = String::from_utf8_lossy(text).into_owned();
                        if toks.get(i).is_some_and(|n| n.text(src) == b"...") {
                            variadic = Some(p.clone());
                            i += 1;
                        }
                        ps.push(p);
                    }
                    _ => return None,
                }
            }
            params = Some(ps);
        }
        let body = match (toks.get(i), toks.last()) {
            (Some(first), Some(last)) => {
                String::from_utf8_lossy(&src[first.start..last.end]).into_owned()
            }
            _ => String::new(),
        };
        Some(MacroDef {
            name,
            params,
            variadic,
            body,
            file,
            line,
        })
    }

    /// The role of this definition judged by its own body; `Defines` through other macros is
    /// decided by [`MacroTable`].
    pub fn own_role(&self, targets: &HashSet<String>) -> Role {
        let b = self.body.as_bytes();
        let toks = lex::tokens(b);
        let text = |i: usize| toks.get(i).map_or(&b""[..], |t| t.text(b));
        let target_at = |i: usize| toks[i].kind == Kind::Ident && targets.contains(as_str(text(i)));
        // `struct X name = {`, `struct X name##_fops[] = {`, `(struct X){`, `foo_t name = {`:
        // the body writes an object of a type of interest. A name pasted from many parts
        // (`stsi_##fc##_##s1##_##s2##_fs_ops`) takes a dozen tokens before its `=`. So does
        // `struct X name;`: an object without initialiser, or a member of the struct an
        // X-macro builds (`#define X(n) struct file_operations n;` inside `struct { ... }`).
        let defines = (0..toks.len()).filter(|&i| target_at(i)).any(|i| {
            let end = toks.len().min(i + 40);
            let stop = (i + 1..end)
                .find(|&j| matches!(text(j), b";" | b")" | b"(" | b"*" | b"{" | b"}"))
                .unwrap_or(end);
            (text(i + 1) == b")" && text(i + 2) == b"{")
                || (i + 1..stop).any(|j| text(j) == b"=")
                || (stop > i + 1 && text(stop) == b";")
        });
        if defines {
            return Role::Defines;
        }
        let designator_at =
            |i: usize| text(i) == b"." && toks.get(i + 1).is_some_and(|t| t.kind == Kind::Ident);
        if designator_at(0) || (text(0) == b"{" && designator_at(1)) {
            return Role::Members;
        }
        let annotation = matches!(text(0), b"__attribute__" | b"__section" | b"__aligned");
        if self.name.starts_with("__") && (annotation || (toks.is_empty() && self.params.is_none()))
        {
            return Role::Annotation;
        }
        Role::Other
    }

    /// Identifiers the body uses: the edges of the "calls" graph.
    pub fn invoked(&self) -> impl Iterator<Item = &str> {
        let b = self.body.as_bytes();
        lex::tokens(b)
            .into_iter()
            .filter(|t| t.kind == Kind::Ident)
            .map(move |t| as_str(t.text(b)))
    }
}

pub fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// The tree-wide macro table (headers only: a `.c` file's macros are visible in that file alone).
#[derive(Debug, Default)]
pub struct MacroTable {
    defs: HashMap<String, Vec<(MacroDef, Role)>>,
}

impl MacroTable {
    /// Builds the table and decides every macro's role; `targets` are the audited struct's name
    /// and those of structs that embed it.
    pub fn new(defs: Vec<MacroDef>, targets: &HashSet<String>) -> Self {
        let mut map: HashMap<String, Vec<(MacroDef, Role)>> = HashMap::new();
        for d in defs {
            let role = d.own_role(targets);
            map.entry(d.name.clone()).or_default().push((d, role));
        }
        // A macro calling one that defines a table defines it too.
        let mut callers: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
        for (name, defs) in &map {
            for (i, (d, _)) in defs.iter().enumerate() {
                for callee in d.invoked() {
                    if callee != name.as_str() && map.contains_key(callee) {
                        callers.entry(callee).or_default().push((name.as_str(), i));
                    }
                }
            }
        }
        let mut queue: Vec<&str> = map
            .iter()
            .filter(|(_, ds)| ds.iter().any(|(_, r)| *r == Role::Defines))
            .map(|(n, _)| n.as_str())
            .collect();
        let mut promote = Vec::new();
        let mut seen: HashSet<&str> = queue.iter().copied().collect();
        while let Some(n) = queue.pop() {
            for &(caller, i) in callers.get(n).map(Vec::as_slice).unwrap_or_default() {
                promote.push((caller.to_string(), i));
                if seen.insert(caller) {
                    queue.push(caller);
                }
            }
        }
        for (name, i) in promote {
            if let Some(entry) = map.get_mut(&name).and_then(|v| v.get_mut(i))
                && entry.1 == Role::Other
            {
                entry.1 = Role::Defines;
            }
        }
        MacroTable { defs: map }
    }

    /// The definition of `name` a file at `from` most likely sees: one that matters to the audit
    /// first (conditional alternatives often define it empty), then the nearest header.
    pub fn lookup(&self, name: &str, from: &Path) -> Option<(&MacroDef, Role)> {
        let defs = self.defs.get(name)?;
        defs.iter()
            .max_by_key(|(d, r)| {
                let shared = d.file.parent().map_or(0, |p| {
                    from.ancestors()
                        .filter(|a| p.starts_with(a))
                        .map(|a| a.components().count())
                        .max()
                        .unwrap_or(0)
                });
                let in_include = d.file.components().any(|c| c.as_os_str() == "include");
                (
                    *r != Role::Other,
                    shared,
                    in_include,
                    std::cmp::Reverse(&d.file),
                )
            })
            .map(|(d, r)| (d, *r))
    }

    /// Names of macros with the role `role`.
    pub fn names(&self, role: Role) -> impl Iterator<Item = &str> {
        self.defs
            .iter()
            .filter(move |(_, ds)| ds.iter().any(|(_, r)| *r == role))
            .map(|(n, _)| n.as_str())
    }
}

/// An owned token: expansion pastes and stringifies, so text can no longer borrow the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PTok {
    pub text: String,
    pub kind: Kind,
}

impl PTok {
    pub fn from_tok(src: &[u8], t: &Tok) -> Self {
        PTok {
            text: String::from_utf8_lossy(t.text(src)).into_owned(),
            kind: t.kind,
        }
    }
    fn is(&self, s: &str) -> bool {
        self.text == s
    }
}

fn ptokens(s: &str) -> Vec<PTok> {
    lex::tokens(s.as_bytes())
        .iter()
        .map(|t| PTok::from_tok(s.as_bytes(), t))
        .collect()
}

/// Splits `toks[open]` == `(` ... `)` into arguments; returns them and the index of `)`.
pub fn split_args(toks: &[PTok], open: usize) -> Option<(Vec<Vec<PTok>>, usize)> {
    let mut depth = 0usize;
    let mut args = vec![Vec::new()];
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "(" => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Some((args, i));
                }
            }
            "," if depth == 1 => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        args.last_mut()?.push(t.clone());
    }
    None
}

/// Resolves a macro name at a call site: the file's own definitions first, then the tree's.
pub trait Resolve {
    fn resolve(&self, name: &str) -> Option<(&MacroDef, Role)>;
}

/// Expansion state of one call site.
pub struct Expander<'a> {
    pub resolve: &'a dyn Resolve,
    /// The macros being expanded, which C never re-expands inside themselves.
    pub active: Vec<String>,
    /// Tokens still allowed: a pathological macro must not take the whole run down.
    pub budget: usize,
}

impl<'a> Expander<'a> {
    pub fn new(resolve: &'a dyn Resolve) -> Self {
        Expander {
            resolve,
            active: Vec::new(),
            budget: 200_000,
        }
    }
}

/// Expands `toks`, replacing calls of expandable macros (roles `Defines` and `Members`) and
/// dropping annotations.
pub fn expand(toks: &[PTok], x: &mut Expander, out: &mut Vec<PTok>) {
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let r = x.resolve;
        let found = (t.kind == Kind::Ident
            && x.budget > 0
            && x.active.len() < MAX_DEPTH
            && !x.active.contains(&t.text))
        .then(|| r.resolve(&t.text))
        .flatten();
        match found {
            Some((def, Role::Annotation)) => {
                i += 1;
                if def.params.is_some() && toks.get(i).is_some_and(|n| n.is("(")) {
                    i = split_args(toks, i).map_or(toks.len(), |(_, close)| close + 1);
                }
            }
            Some((def, Role::Defines | Role::Members)) => {
                let (subst, next) = match &def.params {
                    None => (ptokens(&def.body), i + 1),
                    Some(_) if toks.get(i + 1).is_some_and(|n| n.is("(")) => {
                        match split_args(toks, i + 1)
                            .and_then(|(args, close)| Some((substitute(def, args, x)?, close + 1)))
                        {
                            Some(x) => x,
                            None => {
                                out.push(t.clone());
                                i += 1;
                                continue;
                            }
                        }
                    }
                    Some(_) => {
                        out.push(t.clone());
                        i += 1;
                        continue;
                    }
                };
                x.budget = x.budget.saturating_sub(subst.len());
                x.active.push(def.name.clone());
                expand(&subst, x, out);
                x.active.pop();
                i = next;
            }
            _ => {
                out.push(t.clone());
                i += 1;
            }
        }
    }
}

/// Replaces parameters in the body of `def`, applying `#` and `##`; `None` if the argument
/// count does not fit (then the call is left as written).
fn substitute(def: &MacroDef, mut args: Vec<Vec<PTok>>, x: &mut Expander) -> Option<Vec<PTok>> {
    let params = def.params.as_ref()?;
    if params.is_empty() && args.len() == 1 && args[0].is_empty() {
        args.clear();
    }
    if def.variadic.is_some() {
        if args.len() + 1 == params.len() {
            args.push(Vec::new());
        }
        if args.len() > params.len() && !params.is_empty() {
            let rest: Vec<Vec<PTok>> = args.split_off(params.len() - 1);
            let comma = PTok {
                text: ",".into(),
                kind: Kind::Punct,
            };
            let joined = rest
                .into_iter()
                .enumerate()
                .flat_map(|(k, a)| (k > 0).then(|| comma.clone()).into_iter().chain(a))
                .collect();
            args.push(joined);
        }
    }
    if args.len() != params.len() {
        return None;
    }
    let arg_of = |t: &PTok| {
        (t.kind == Kind::Ident)
            .then(|| params.iter().position(|p| *p == t.text))
            .flatten()
    };
    let body = ptokens(&def.body);
    let placemarker = PTok {
        text: String::new(),
        kind: Kind::Punct,
    };
    // Each argument is expanded once, however often the body uses it.
    let mut expanded: Vec<Option<Vec<PTok>>> = vec![None; args.len()];
    let mut out: Vec<PTok> = Vec::new();
    let mut paste_next = false;
    let mut j = 0;
    while j < body.len() {
        let t = &body[j];
        j += 1;
        if t.is("##") {
            paste_next = true;
            continue;
        }
        let piece: Vec<PTok> = if t.is("#") && body.get(j).and_then(arg_of).is_some() {
            let a = &args[arg_of(&body[j]).unwrap_or_default()];
            j += 1;
            let s: Vec<&str> = a.iter().map(|x| x.text.as_str()).collect();
            vec![PTok {
                text: format!("{:?}", s.join(" ")),
                kind: Kind::Literal,
            }]
        } else if let Some(k) = arg_of(t) {
            if paste_next || body.get(j).is_some_and(|n| n.is("##")) {
                if args[k].is_empty() {
                    vec![placemarker.clone()]
                } else {
                    args[k].clone()
                }
            } else {
                expanded[k]
                    .get_or_insert_with(|| {
                        let mut e = Vec::new();
                        expand(&args[k], x, &mut e);
                        e
                    })
                    .clone()
            }
        } else {
            vec![t.clone()]
        };
        if std::mem::take(&mut paste_next) {
            // GNU `, ## __VA_ARGS__`: drops the comma when there are no variadic arguments,
            // and pastes nothing when there are.
            let va = def.variadic.as_deref() == Some(t.text.as_str());
            if va && out.last().is_some_and(|l| l.is(",")) {
                if piece.len() == 1 && piece[0] == placemarker {
                    out.pop();
                } else {
                    out.extend(piece);
                }
                continue;
            }
            let mut rest = piece.into_iter();
            match (out.last_mut(), rest.next()) {
                (Some(last), Some(first)) => {
                    last.text.push_str(&first.text);
                    if last.text.bytes().all(lex::is_ident_char) && !last.text.is_empty() {
                        last.kind = if last.text.as_bytes()[0].is_ascii_digit() {
                            Kind::Literal
                        } else {
                            Kind::Ident
                        };
                    }
                }
                (None, Some(first)) => out.push(first),
                (_, None) => {}
            }
            out.extend(rest);
        } else {
            out.extend(piece);
        }
    }
    out.retain(|t| !t.text.is_empty());
    Some(out)
}

/// Reads a `#define` directive's tokens from a lexer positioned after `define`.
pub fn directive_tokens(lx: &mut Lexer) -> Vec<Tok> {
    let mut toks = Vec::new();
    while let Some(lex::Item::Tok(t)) = lx.next_item() {
        toks.push(t);
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(Vec<(MacroDef, Role)>);
    impl Resolve for One {
        fn resolve(&self, name: &str) -> Option<(&MacroDef, Role)> {
            self.0
                .iter()
                .find(|(d, _)| d.name == name)
                .map(|(d, r)| (d, *r))
        }
    }

    fn def(line: &str) -> MacroDef {
        let src = line.as_bytes();
        let toks = lex::tokens(src);
        MacroDef::from_directive(src, &toks, Arc::from(Path::new("x.h")), 1).unwrap()
    }

    #[test]
    fn pastes_stringifies_and_nests() {
        let targets = HashSet::from(["file_operations".to_string()]);
        let defs: Vec<(MacroDef, Role)> = [
            "INNER(n, fmt) static const struct file_operations n = { .open = n ## _open, .name = #fmt };",
            "OUTER(x) INNER(x ## _fops, x)",
            "VA(a, ...) f(a, ## __VA_ARGS__)",
        ]
        .iter()
        .map(|l| {
            let d = def(l);
            let r = d.own_role(&targets);
            (d, if r == Role::Other { Role::Defines } else { r })
        })
        .collect();
        let r = One(defs);
        let mut out = Vec::new();
        expand(
            &ptokens("OUTER(foo) VA(1) VA(1, 2)"),
            &mut Expander::new(&r),
            &mut out,
        );
        let text: Vec<&str> = out.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            text.join(" "),
            "static const struct file_operations foo_fops = { . open = foo_fops_open , . name = \"foo\" } ; \
             f ( 1 ) f ( 1 , 2 )"
        );
    }
}
