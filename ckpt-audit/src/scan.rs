//! The cheap first pass over every file, without a parser: `#define`s of headers, and which
//! structs hold the audited struct by value (so their initialisers are searched too).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::lex::{Item, Kind, Lexer, Tok};
use crate::macros::{self, MacroDef};

/// Collects the `#define`s of `src` that can matter: every function-like macro, and object-like
/// ones that look like initialiser fragments, declarations or annotations. The kernel's
/// millions of register constants are left out.
pub fn defines(src: &[u8], file: &Arc<Path>, out: &mut Vec<MacroDef>) {
    defines_where(src, file, out, |def| {
        let body = def.body.trim_start();
        def.params.is_some()
            || body.starts_with('.')
            || body.starts_with('{')
            || body.contains("struct")
            || (def.name.starts_with("__") && (body.is_empty() || body.starts_with("__")))
    });
}

/// Collects the `#define`s of `src` that `keep` accepts.
pub fn defines_where(
    src: &[u8],
    file: &Arc<Path>,
    out: &mut Vec<MacroDef>,
    keep: impl Fn(&MacroDef) -> bool,
) {
    let mut line = 1u32;
    let mut counted = 0;
    for pos in memchr::memchr_iter(b'#', src) {
        let bol = memchr::memrchr(b'\n', &src[..pos]).map_or(0, |i| i + 1);
        if !src[bol..pos].iter().all(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        line += memchr::memchr_iter(b'\n', &src[counted..pos]).count() as u32;
        counted = pos;
        let mut lx = Lexer { src, pos: pos + 1 };
        if !matches!(lx.next_item(), Some(Item::Tok(t)) if t.text(src) == b"define") {
            continue;
        }
        let toks = macros::directive_tokens(&mut lx);
        let Some(def) = MacroDef::from_directive(src, &toks, file.clone(), line) else {
            continue;
        };
        if keep(&def) {
            out.push(def);
        }
    }
}

/// Type keys (`struct foo`, or a typedef name) of structs in `src` that have a member of one of
/// the `inner` struct names by value, e.g. `struct x { const struct file_operations fops; }`.
/// Repeats until no new container is found, so containers of containers in the file count.
pub fn containers(src: &[u8], inner: &HashSet<String>) -> Vec<(String, String)> {
    let toks = code_tokens(src);
    let text = |i: usize| toks.get(i).map_or(&b""[..], |t: &Tok| t.text(src));
    let mut wanted: HashSet<String> = inner.clone();
    let mut found: Vec<(String, String)> = Vec::new();
    loop {
        let before = found.len();
        // One frame per open brace: the struct it opens (word), whether a typedef names it,
        // whether a wanted member was seen in it.
        let mut stack: Vec<(Option<String>, bool, bool)> = Vec::new();
        for i in 0..toks.len() {
            match text(i) {
                b"{" => {
                    let word =
                        if i >= 2 && text(i - 2) == b"struct" && toks[i - 1].kind == Kind::Ident {
                            Some(macros::as_str(text(i - 1)).to_string())
                        } else if i >= 1 && text(i - 1) == b"struct" {
                            Some(String::new())
                        } else {
                            None
                        };
                    let typedef =
                        word.is_some() && (1..=3).any(|k| i >= k && text(i - k) == b"typedef");
                    stack.push((word, typedef, false));
                }
                b"}" => {
                    let Some((word, typedef, has)) = stack.pop() else {
                        continue;
                    };
                    let Some(word) = word.filter(|_| has) else {
                        continue;
                    };
                    if !word.is_empty() {
                        found.push((format!("struct {word}"), word));
                    }
                    if typedef && toks.get(i + 1).is_some_and(|t| t.kind == Kind::Ident) {
                        let name = macros::as_str(text(i + 1)).to_string();
                        found.push((name.clone(), name));
                    }
                }
                b"struct"
                    if wanted.contains(macros::as_str(text(i + 1)))
                        && toks.get(i + 2).is_some_and(|t| t.kind == Kind::Ident)
                        && matches!(text(i + 3), b";" | b",")
                        && (i == 0 || text(i - 1) != b"extern") =>
                {
                    if let Some(top) = stack.last_mut().filter(|f| f.0.is_some()) {
                        top.2 = true;
                    }
                }
                _ => {}
            }
        }
        found.sort();
        found.dedup();
        wanted.extend(
            found
                .iter()
                .filter(|(k, _)| k.starts_with("struct "))
                .map(|(_, w)| w.clone()),
        );
        if found.len() == before {
            return found;
        }
    }
}

/// Tokens outside preprocessor directives.
fn code_tokens(src: &[u8]) -> Vec<Tok> {
    let mut lx = Lexer::new(src);
    let mut toks = Vec::new();
    let mut bol = true;
    while let Some(item) = lx.next_item() {
        match item {
            Item::Newline(_) => bol = true,
            Item::Tok(t) if bol && t.text(src) == b"#" => {
                macros::directive_tokens(&mut lx);
                bol = true;
            }
            Item::Tok(t) => {
                bol = false;
                toks.push(t);
            }
        }
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_containers_and_their_typedefs() {
        let src = b"struct a { const struct file_operations fops; };\n\
                    typedef struct { struct file_operations f, *g; } b_t;\n\
                    struct c { struct a inner; };\n\
                    struct d { const struct file_operations *ptr; };\n\
                    void f(void) { struct file_operations local; }\n";
        let inner = HashSet::from(["file_operations".to_string()]);
        let keys: Vec<String> = containers(src, &inner)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["b_t", "struct a", "struct c"]);
    }
}
