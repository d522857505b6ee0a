//! Turns a C file into what the parser sees: directives blanked, `#if 0` groups dropped, ops macros
//! and member-hiding macros expanded in place, annotations removed — with every line kept where it
//! was, so a line number in the result is a line number in the source.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
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

/// Macros visible at a point of one file: its own `#define`s so far, then the tree's headers.
struct FileMacros<'a> {
    local: HashMap<String, Option<(MacroDef, Role)>>,
    global: &'a MacroTable,
    interesting: &'a HashSet<String>,
    path: &'a Path,
    targets: &'a HashSet<String>,
}

impl Resolve for FileMacros<'_> {
    fn resolve(&self, name: &str) -> Option<(&MacroDef, Role)> {
        match self.local.get(name) {
            Some(Some((d, r))) => Some((d, *r)),
            Some(None) => None,
            None if self.interesting.contains(name) => self.global.lookup(name, self.path),
            None => None,
        }
    }
}

impl FileMacros<'_> {
    fn define(&mut self, def: MacroDef) {
        let mut role = def.own_role(self.targets);
        if role == Role::Other
            && def.invoked().any(|n| {
                n != def.name
                    && self
                        .resolve(n)
                        .is_some_and(|(_, r)| matches!(r, Role::Defines | Role::Members))
            })
        {
            role = Role::Defines;
        }
        // `#ifdef X / #define M(a) real / #else / #define M(a) /* nothing */`: the audit
        // counts what any configuration defines, so an empty alternative does not win.
        if let Some(Some((_, old))) = self.local.get(&def.name)
            && *old != Role::Other
            && role == Role::Other
        {
            return;
        }
        self.local.insert(def.name.clone(), Some((def, role)));
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
        if role == Role::Other || (role == Role::Members && !matches!(before, b"{" | b",")) {
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
        if role == Role::Members
            && !matches!(
                (Lexer { src, pos: end }).next_tok().map(|n| n.text(src)),
                Some(b"," | b"}")
            )
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
/// reads a fraction of a driver, and the lines of what is left do not move.
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
    while let Some(t) = lx.next_tok() {
        let s = t.text(text);
        n += 1;
        if n == 2 {
            call = s == b"(" && prev.first().is_some_and(|&b| crate::lex::is_ident_start(b));
        }
        // `WRAP_DIR_ITER(x)` alone on a line, no `;`: a macro call that makes a whole item. Left
        // in, the parser would read it as the start of the declaration that follows.
        let lone_call = call && depth == 1 && s == b")" && {
            let mut look = Lexer {
                src: text,
                pos: t.end,
            };
            look.next_tok().is_some_and(|nx| {
                memchr::memchr(b'\n', &text[t.end..nx.start]).is_some()
                    && !matches!(nx.text(text), b"{" | b";" | b"," | b"=" | b"(" | b"[")
            })
        };
        if s == b")" && depth == 1 {
            call = false;
        }
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
        let end_of_item = lone_call || closes;
        prev = s;
        if end_of_item {
            let mut keep = false;
            while hits.peek().is_some_and(|&h| h < t.end) {
                keep |= hits.next().is_some_and(|h| h >= start);
            }
            if !keep || lone_call {
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
