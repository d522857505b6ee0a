//! Turns a C file into what the parser sees: directives blanked, `#if 0` groups dropped, ops macros
//! and member-hiding macros expanded in place, annotations removed — with every line kept where it
//! was, so a line number in the result is a line number in the source.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lex::{Item, Kind, Lexer, Tok};
use crate::macros::{self, MacroDef, MacroTable, PTok, Resolve, Role};

/// A macro call replaced by its expansion.
#[derive(Debug, Clone)]
pub struct Expansion {
    pub macro_name: String,
    /// Source lines of the call (1-based, inclusive).
    pub lines: (u32, u32),
    /// Where the expansion sits in [`Prepared::text`].
    pub bytes: Range<usize>,
}

/// A `#if`/`#ifdef` group: lines of its opening and closing directives and the condition.
#[derive(Debug, Clone)]
pub struct Cond {
    pub open: u32,
    pub close: u32,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Prepared {
    pub text: Vec<u8>,
    pub expansions: Vec<Expansion>,
    pub conds: Vec<Cond>,
}

impl Prepared {
    /// The expansion (if any) that produced the byte at `pos` of the prepared text.
    pub fn expansion_at(&self, pos: usize) -> Option<&Expansion> {
        let i = self.expansions.partition_point(|e| e.bytes.end <= pos);
        self.expansions.get(i).filter(|e| e.bytes.contains(&pos))
    }
}

/// A macro the file itself defines or includes from beside it.
struct Local {
    def: MacroDef,
    role: Role,
    /// The names its body uses.
    uses: Vec<String>,
}

impl Local {
    fn new(def: MacroDef, role: Role) -> Self {
        let uses = def
            .invoked()
            .filter(|n| *n != def.name)
            .map(str::to_string)
            .collect();
        Local { def, role, uses }
    }
}

/// Macros visible at a point of one file: its own `#define`s so far, then the tree's headers.
struct FileMacros<'a> {
    local: HashMap<String, Option<Local>>,
    global: &'a MacroTable,
    interesting: &'a HashSet<String>,
    path: &'a Path,
    targets: &'a HashSet<String>,
    /// Headers the file includes with `#include "..."`, not read yet.
    includes: Vec<PathBuf>,
    /// Every macro of those headers: X-macro lists (`#define PARAMS X(a) X(b)`) that only mean
    /// something once the file defines `X`.
    included: HashMap<String, Local>,
}

impl Resolve for FileMacros<'_> {
    fn resolve(&self, name: &str) -> Option<(&MacroDef, Role)> {
        let m = match self.local.get(name) {
            Some(Some(m)) => m,
            Some(None) => return None,
            None if self.interesting.contains(name) => return self.global.lookup(name, self.path),
            None => self.included.get(name)?,
        };
        if m.role != Role::Other {
            return Some((&m.def, m.role));
        }
        // An X-macro list takes the role of the element macro it calls, as defined at this
        // point of the file: the same list builds members here and tables there.
        let role = m.uses.iter().find_map(|u| match self.local.get(u) {
            Some(Some(x)) if matches!(x.role, Role::Defines | Role::Members) => Some(x.role),
            _ => None,
        })?;
        Some((&m.def, role))
    }
}

impl FileMacros<'_> {
    /// Reads the macros of the headers included so far.
    fn read_includes(&mut self) {
        for h in std::mem::take(&mut self.includes) {
            let Ok(src) = std::fs::read(&h) else {
                continue;
            };
            let mut defs = Vec::new();
            crate::scan::defines_where(&src, &Arc::from(h.as_path()), &mut defs, |_| true);
            for d in defs {
                let m = Local::new(d, Role::Other);
                self.included.insert(m.def.name.clone(), m);
            }
        }
    }

    fn define(&mut self, def: MacroDef) {
        let role = def.own_role(self.targets);
        let mut m = Local::new(def, role);
        if m.role == Role::Other
            && m.uses.iter().any(|n| {
                self.resolve(n)
                    .is_some_and(|(_, r)| matches!(r, Role::Defines | Role::Members))
            })
        {
            m.role = Role::Defines;
        }
        // `#ifdef X / #define M(a) real / #else / #define M(a) /* nothing */`: the audit
        // counts what any configuration defines, so an empty alternative does not win.
        if let Some(Some(old)) = self.local.get(&m.def.name)
            && old.role != Role::Other
            && m.role == Role::Other
        {
            return;
        }
        // Only a macro of the file's own that writes tables can turn an included list into
        // tables: the headers are read then, and only then.
        if m.role != Role::Other {
            self.read_includes();
        }
        self.local.insert(m.def.name.clone(), Some(m));
    }
}

/// The next token after `pos` that is code, not part of a directive: an X-macro list is
/// followed by the `#undef X` of its element macro.
fn next_code_tok(src: &[u8], pos: usize) -> Option<Tok> {
    let mut lx = Lexer { src, pos };
    let mut line_start = false;
    loop {
        match lx.next_item()? {
            Item::Newline(_) => line_start = true,
            Item::Tok(t) if line_start && t.text(src) == b"#" => {
                macros::directive_tokens(&mut lx);
            }
            Item::Tok(t) => return Some(t),
        }
    }
}

fn count_newlines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

/// Prepares `src` (the file at `path`) for parsing.
pub fn prepare(
    src: &[u8],
    path: &Path,
    global: &MacroTable,
    interesting: &HashSet<String>,
    targets: &HashSet<String>,
) -> Prepared {
    let mut fm = FileMacros {
        local: HashMap::new(),
        global,
        interesting,
        path,
        targets,
        includes: Vec::new(),
        included: HashMap::new(),
    };
    let mut p = Prepared {
        text: Vec::with_capacity(src.len() + src.len() / 8),
        ..Default::default()
    };
    let mut lx = Lexer::new(src);
    let mut copied = 0;
    let mut line: u32 = 1;
    let mut at_line_start = true;
    // Open groups: (line, condition, this group began an `#if 0`).
    let mut stack: Vec<(u32, String, bool)> = Vec::new();
    // Source offset where a dropped `#if 0` branch began.
    let mut skip_from: Option<usize> = None;
    // The previous token: member-hiding macros are expanded only where an element may stand.
    let mut prev: &[u8] = b"";
    while let Some(item) = lx.next_item() {
        let t = match item {
            Item::Newline(_) => {
                line += 1;
                at_line_start = true;
                continue;
            }
            Item::Tok(t) => t,
        };
        let line_start = std::mem::replace(&mut at_line_start, false);
        if line_start && t.text(src) == b"#" {
            let mut toks: Vec<Tok> = Vec::new();
            let mut end = src.len();
            while let Some(it) = lx.next_item() {
                match it {
                    Item::Tok(x) => toks.push(x),
                    Item::Newline(nl) => {
                        end = nl;
                        break;
                    }
                }
            }
            // Keep the text before the directive (unless dropped), blank the directive itself.
            match skip_from {
                Some(_) => push_newlines(&mut p.text, &src[copied..t.start]),
                None => p.text.extend_from_slice(&src[copied..t.start]),
            }
            push_newlines(&mut p.text, &src[t.start..end]);
            copied = end;
            let dir_line = line;
            line += count_newlines(&src[t.start..end]) as u32;
            let word = toks.first().map(|x| x.text(src)).unwrap_or_default();
            let rest = || toks.get(1..).map(|r| joined(src, r)).unwrap_or_default();
            match word {
                b"define" if skip_from.is_none() => {
                    if let Some(def) =
                        MacroDef::from_directive(src, &toks[1..], Arc::from(path), dir_line)
                    {
                        fm.define(def);
                    }
                }
                b"include" if skip_from.is_none() => {
                    // `#include "params.h"`: beside the file (the kernel's `-I` paths are
                    // for `<...>` headers, whose macros the tree-wide table already has).
                    if let Some(name) = toks.get(1).map(|x| x.text(src))
                        && let [b'"', inner @ .., b'"'] = name
                        && let Some(dir) = path.parent()
                    {
                        fm.includes.push(dir.join(macros::as_str(inner)));
                    }
                }
                b"undef" if skip_from.is_none() => {
                    if let Some(n) = toks.get(1) {
                        fm.local
                            .insert(macros::as_str(n.text(src)).to_string(), None);
                    }
                }
                b"if" | b"ifdef" | b"ifndef" => {
                    let never = word == b"if" && toks.len() == 2 && toks[1].text(src) == b"0";
                    if never && skip_from.is_none() {
                        skip_from = Some(end);
                    }
                    stack.push((
                        dir_line,
                        format!("#{} {}", macros::as_str(word), rest()),
                        never,
                    ));
                }
                b"elif" | b"else" | b"endif" => {
                    if stack.last().is_some_and(|s| s.2) {
                        skip_from = None;
                        if let Some(s) = stack.last_mut() {
                            s.2 = false;
                        }
                    }
                    if word == b"endif"
                        && let Some((open, text, _)) = stack.pop()
                    {
                        p.conds.push(Cond {
                            open,
                            close: dir_line,
                            text,
                        });
                    }
                }
                _ => {}
            }
            line += 1;
            at_line_start = true;
            lx.pos = (end + 1).min(src.len());
            continue;
        }
        let before = std::mem::replace(&mut prev, t.text(src));
        if skip_from.is_some() || t.kind != Kind::Ident {
            continue;
        }
        let name = macros::as_str(t.text(src));
        let Some((def, role)) = fm.resolve(name) else {
            continue;
        };
        // A member-hiding macro stands for elements (after `{` or `,`), or for a whole
        // initialiser when its body is braced (`x = NSIM_DEV_HWSTATS_FOPS(a, b);`).
        let whole = before == b"=" && def.body.trim_start().starts_with('{');
        if role == Role::Other
            || (role == Role::Members && !whole && !matches!(before, b"{" | b","))
        {
            continue;
        }
        // Gather the call: the name, and for a function-like macro its parenthesised arguments.
        let mut call = vec![PTok::from_tok(src, &t)];
        let mut end = t.end;
        if def.params.is_some() {
            let mut look = Lexer { src, pos: t.end };
            let mut depth = 0usize;
            while let Some(x) = look.next_tok() {
                let s = x.text(src);
                if depth == 0 && s != b"(" {
                    break;
                }
                call.push(PTok::from_tok(src, &x));
                depth = match s {
                    b"(" => depth + 1,
                    b")" => depth - 1,
                    _ => depth,
                };
                if depth == 0 {
                    end = x.end;
                    break;
                }
            }
            if depth != 0 || call.len() == 1 {
                continue;
            }
        }
        let after = next_code_tok(src, end).map(|n| n.text(src));
        if role == Role::Members
            && !(matches!(after, Some(b"," | b"}")) || (whole && matches!(after, Some(b";"))))
        {
            continue;
        }
        let mut expanded = Vec::new();
        macros::expand(&call, &mut macros::Expander::new(&fm), &mut expanded);
        p.text.extend_from_slice(&src[copied..t.start]);
        let start = p.text.len();
        for x in &expanded {
            p.text.push(b' ');
            p.text.extend_from_slice(x.text.as_bytes());
        }
        p.text.push(b' ');
        let nl = count_newlines(&src[t.start..end]) as u32;
        if role == Role::Defines {
            p.expansions.push(Expansion {
                macro_name: name.to_string(),
                lines: (line, line + nl),
                bytes: start..p.text.len(),
            });
        }
        push_newlines(&mut p.text, &src[t.start..end]);
        line += nl;
        copied = end;
        lx.pos = end;
        prev = b")";
    }
    match skip_from {
        Some(_) => push_newlines(&mut p.text, &src[copied..]),
        None => p.text.extend_from_slice(&src[copied..]),
    }
    p
}

/// Drops the top-level items (declarations up to `;`, function definitions up to their closing
/// brace) of prepared text that mention none of `words`, keeping their newlines: the parser then
/// reads a fraction of a driver, and the lines of what is left do not move. Items that mention
/// an object of a type of interest declared earlier without `const` are kept too: code there
/// may fill it at run time (`x.open = f;`, `x = y;`).
pub fn focus(p: &mut Prepared, words: &HashSet<String>) {
    let text = &p.text;
    let mut hits: Vec<usize> = words
        .iter()
        .flat_map(|w| memchr::memmem::find_iter(text, w.as_bytes()).collect::<Vec<_>>())
        .collect();
    hits.sort_unstable();
    let mut hits = hits.into_iter().peekable();
    let mut drop: Vec<Range<usize>> = Vec::new();
    let mut lx = Lexer::new(text);
    let (mut depth, mut start, mut fn_body) = (0usize, 0usize, false);
    let mut prev: &[u8] = b"";
    // Tokens of the current item so far, and whether it began like a call: `NAME(`.
    let (mut n, mut call) = (0usize, false);
    let word_set: HashSet<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    // Objects declared so far that code may write: a C function can only write what was
    // declared before it. Only top-level declarations need watching (a local's function
    // mentions its type anyway).
    let mut mutable: HashSet<&[u8]> = HashSet::new();
    // Within the current item: `const` seen; the last token was a type of interest; the name
    // that followed it, until a `;`, `=`, `[` or `,` shows it declares an object.
    let (mut constant, mut after_type, mut name) = (false, false, None);
    let mut mentions_mutable = false;
    while let Some(t) = lx.next_tok() {
        let s = t.text(text);
        n += 1;
        if depth == 0 {
            if let Some(nm) = name.take()
                && matches!(s, b";" | b"=" | b"[" | b",")
                && !constant
            {
                mutable.insert(nm);
            }
            if std::mem::take(&mut after_type) && t.kind == Kind::Ident {
                name = Some(s);
            }
            constant |= s == b"const";
            after_type = word_set.contains(s);
        }
        if !mutable.is_empty() && t.kind == Kind::Ident && mutable.contains(s) {
            mentions_mutable = true;
        }
        if n == 2 {
            call = s == b"(" && prev.first().is_some_and(|&b| crate::lex::is_ident_start(b));
        }
        // `WRAP_DIR_ITER(x)` alone on a line, no `;`: a macro call that makes a whole item. Left
        // in, the parser would read it as the start of the declaration that follows. Inside an
        // expansion everything is on one line: there a call followed by a word (`FOO_FN(x)
        // static const struct ...`) is such an item too, as C has no item `f(x) word`.
        let lone_call = call && depth == 1 && s == b")" && {
            let mut look = Lexer {
                src: text,
                pos: t.end,
            };
            look.next_tok().is_some_and(|nx| {
                nx.kind == Kind::Ident
                    || (memchr::memchr(b'\n', &text[t.end..nx.start]).is_some()
                        && !matches!(nx.text(text), b"{" | b";" | b"," | b"=" | b"(" | b"["))
            })
        };
        if s == b")" && depth == 1 {
            call = false;
        }
        // `PARAMS` alone on a line, then a declaration: an object-like macro (an X-macro list
        // whose element macro writes no table here) that makes an item of its own.
        let lone_word = n == 1
            && depth == 0
            && s.len() > 1
            && s.iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            && {
                let mut look = Lexer {
                    src: text,
                    pos: t.end,
                };
                look.next_tok().is_some_and(|nx| {
                    nx.kind == Kind::Ident
                        && memchr::memchr(b'\n', &text[t.end..nx.start]).is_some()
                })
            };
        let closes = match s {
            b"{" | b"(" | b"[" => {
                if depth == 0 && s == b"{" {
                    fn_body = prev == b")";
                }
                depth += 1;
                false
            }
            b"}" | b")" | b"]" => {
                depth = depth.saturating_sub(1);
                depth == 0 && s == b"}" && std::mem::take(&mut fn_body)
            }
            b";" => depth == 0,
            _ => false,
        };
        let end_of_item = lone_call || lone_word || closes;
        prev = s;
        if end_of_item {
            let mut keep = std::mem::take(&mut mentions_mutable);
            (constant, after_type, name) = (false, false, None);
            while hits.peek().is_some_and(|&h| h < t.end) {
                keep |= hits.next().is_some_and(|h| h >= start);
            }
            if !keep || lone_call || lone_word {
                drop.push(start..t.end);
            }
            start = t.end;
            n = 0;
        }
    }
    if drop.is_empty() {
        return;
    }
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut copied = 0;
    // (old range, new range) of every dropped item: moves expansion ranges with the text.
    let mut moved: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    for r in drop {
        out.extend_from_slice(&text[copied..r.start]);
        let new_start = out.len();
        push_newlines(&mut out, &text[r.clone()]);
        copied = r.end;
        moved.push((r, new_start..out.len()));
    }
    out.extend_from_slice(&text[copied..]);
    let shift = |pos: usize| match moved.partition_point(|(old, _)| old.start <= pos) {
        0 => pos,
        i => {
            let (old, new) = &moved[i - 1];
            if pos < old.end {
                new.start
            } else {
                new.end + (pos - old.end)
            }
        }
    };
    for e in &mut p.expansions {
        e.bytes = shift(e.bytes.start)..shift(e.bytes.end);
    }
    p.expansions.retain(|e| !e.bytes.is_empty());
    p.text = out;
}

fn push_newlines(out: &mut Vec<u8>, b: &[u8]) {
    out.extend(std::iter::repeat_n(b'\n', count_newlines(b)));
}

fn joined(src: &[u8], toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| macros::as_str(t.text(src)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_expands_local_macros() {
        let src =
            b"#define MK(n) static const struct file_operations n##_fops = { .open = n##_open, }\n\
                    #if 0\nstatic const struct file_operations dead = {};\n#endif\n\
                    MK(foo);\n/* MK(bar) */ int x;\n";
        let targets = HashSet::from(["file_operations".to_string()]);
        let p = prepare(
            src,
            Path::new("a.c"),
            &MacroTable::default(),
            &HashSet::new(),
            &targets,
        );
        let text = String::from_utf8(p.text.clone()).unwrap();
        assert_eq!(count_newlines(&p.text), count_newlines(src));
        assert!(!text.contains("dead"));
        assert!(text.contains("foo_fops"));
        assert!(!text.contains("bar_fops"));
        assert_eq!(p.expansions.len(), 1);
        assert_eq!(p.expansions[0].lines, (5, 5));
        assert_eq!(p.conds[0].open, 2);
    }
}
