//! Parses prepared C text with tree-sitter and extracts what the audit needs: the layouts of the
//! structs of interest and every initialised object of those types.

use std::collections::HashSet;

use tree_sitter::{Node, Parser};

/// One member of a struct definition, in declaration order.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// Type key (`struct foo` or a typedef name) when the member holds a struct by value.
    pub by_value: Option<String>,
    pub fn_ptr: bool,
}

/// A struct definition: its type key and members.
#[derive(Debug, Clone)]
pub struct Layout {
    pub key: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub enum Value {
    List(InitList),
    Expr { text: String, ident: bool },
}

/// One element of a brace initialiser.
#[derive(Debug, Clone)]
pub struct InitItem {
    /// The member named by `.f =` or `f:`; `None` for a positional element.
    pub field: Option<String>,
    /// An array index designator (`[i] =`): names an array element; in a struct it must not be
    /// mistaken for a positional member.
    pub index: Option<String>,
    pub value: Value,
    pub line: u32,
}

#[derive(Debug, Clone, Default)]
pub struct InitList {
    pub items: Vec<InitItem>,
    /// The parser could not make sense of part of it.
    pub has_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteKind {
    Variable,
    /// The element's index as written (`3`, or the constant of `[FOO] = {...}`).
    ArrayElement(String),
    CompoundLiteral,
}

/// An initialised object of a type of interest.
#[derive(Debug, Clone)]
pub struct Site {
    pub ty: String,
    pub name: Option<String>,
    pub kind: SiteKind,
    pub file_scope: bool,
    pub lines: (u32, u32),
    /// Byte offset in the prepared text: tells whether a macro expansion produced it.
    pub byte: usize,
    pub list: InitList,
}

#[derive(Debug, Default)]
pub struct FileScan {
    pub layouts: Vec<Layout>,
    pub sites: Vec<Site>,
}

/// Deeper bracket nesting than this is refused: parsing and walking an initialiser recurse once
/// per level on a worker thread's stack, and no kernel source comes near it.
pub const MAX_NESTING: usize = 1000;

/// What a lexical pass over prepared text finds before it is parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Brackets (`{ ( [`) nest deeper than [`MAX_NESTING`].
    pub too_deep: bool,
    /// The first byte outside comments and literals that is no C character (not ASCII), and
    /// its line: identifiers around it are split where a compiler would stop.
    pub stray: Option<(u32, u8)>,
}

pub fn shape(src: &[u8]) -> Shape {
    let mut out = Shape::default();
    let mut depth = 0usize;
    let mut lx = crate::lex::Lexer::new(src);
    while let Some(t) = lx.next_tok() {
        match t.text(src) {
            b"{" | b"(" | b"[" => {
                depth += 1;
                if depth > MAX_NESTING {
                    out.too_deep = true;
                    break;
                }
            }
            b"}" | b")" | b"]" => depth = depth.saturating_sub(1),
            &[b, ..] if b >= 0x80 && out.stray.is_none() => {
                let line = memchr::memchr_iter(b'\n', &src[..t.start]).count() as u32 + 1;
                out.stray = Some((line, b));
            }
            _ => {}
        }
    }
    out
}

pub fn new_parser() -> Parser {
    let mut p = Parser::new();
    p.set_language(&tree_sitter_c::LANGUAGE.into())
        .expect("tree-sitter-c matches the tree-sitter ABI");
    p
}

fn line(n: Node) -> u32 {
    n.start_position().row as u32 + 1
}

fn text(n: Node, src: &[u8]) -> String {
    String::from_utf8_lossy(&src[n.byte_range()]).into_owned()
}

/// The type key of a type node: `struct foo` or a typedef name.
fn type_key(n: Node, src: &[u8]) -> Option<String> {
    match n.kind() {
        "struct_specifier" => n
            .child_by_field_name("name")
            .map(|x| format!("struct {}", text(x, src))),
        "type_identifier" => Some(text(n, src)),
        _ => None,
    }
}

/// The identifier a declarator declares, and whether it is an array or a pointer.
fn declarator_name(mut n: Node, src: &[u8]) -> (Option<String>, bool, bool) {
    let (mut array, mut pointer, mut function) = (false, false, false);
    loop {
        match n.kind() {
            "identifier" | "field_identifier" => {
                return (Some(text(n, src)), array, pointer || function);
            }
            "array_declarator" => array = true,
            "pointer_declarator" => pointer = true,
            "function_declarator" => function = true,
            "parenthesized_declarator" | "init_declarator" | "attributed_declarator" => {}
            _ => return (None, array, true),
        }
        n = match n
            .child_by_field_name("declarator")
            .or_else(|| n.named_child(0))
        {
            Some(c) => c,
            None => return (None, array, true),
        };
    }
}

fn layout(n: Node, key: String, src: &[u8]) -> Layout {
    let mut fields = Vec::new();
    let Some(body) = n.child_by_field_name("body") else {
        return Layout { key, fields };
    };
    let mut c = body.walk();
    for fd in body
        .named_children(&mut c)
        .filter(|f| f.kind() == "field_declaration")
    {
        let ty = fd
            .child_by_field_name("type")
            .and_then(|t| type_key(t, src));
        let mut c2 = fd.walk();
        let decls: Vec<Node> = fd.children_by_field_name("declarator", &mut c2).collect();
        if decls.is_empty() {
            // An anonymous struct or union member still takes one position.
            fields.push(Field {
                name: String::new(),
                by_value: None,
                fn_ptr: false,
            });
        }
        for d in decls {
            let (name, array, indirect) = declarator_name(d, src);
            let fn_ptr = indirect && has_kind(d, "function_declarator");
            let by_value = ty.clone().filter(|_| !array && !indirect);
            fields.push(Field {
                name: name.unwrap_or_default(),
                by_value,
                fn_ptr,
            });
        }
    }
    Layout { key, fields }
}

fn has_kind(n: Node, kind: &str) -> bool {
    n.kind() == kind
        || (0..n.named_child_count())
            .filter_map(|i| n.named_child(i))
            .any(|c| has_kind(c, kind))
}

fn init_list(n: Node, src: &[u8]) -> InitList {
    let mut out = InitList {
        items: Vec::new(),
        has_error: n.has_error(),
    };
    let mut c = n.walk();
    for item in n.named_children(&mut c) {
        let (field, index, value) = match item.kind() {
            "comment" => continue,
            "initializer_pair" => {
                let Some(v) = item.child_by_field_name("value") else {
                    continue;
                };
                let first = item.child_by_field_name("designator");
                let field = first.and_then(|d| match d.kind() {
                    "field_designator" => d.named_child(0).map(|f| text(f, src)),
                    "field_identifier" => Some(text(d, src)),
                    _ => None,
                });
                let index = first
                    .filter(|d| d.kind() == "subscript_designator")
                    .and_then(|d| d.named_child(0))
                    .map(|i| text(i, src));
                (field, index, v)
            }
            _ => (None, None, item),
        };
        let value = match value.kind() {
            "initializer_list" => Value::List(init_list(value, src)),
            k => Value::Expr {
                text: text(value, src),
                ident: k == "identifier",
            },
        };
        out.items.push(InitItem {
            field,
            index,
            value,
            line: line(item),
        });
    }
    out
}

/// Parses `src` (prepared text) and keeps the layouts and sites whose type key is in `keys`.
pub fn scan(parser: &mut Parser, src: &[u8], keys: &HashSet<String>) -> Option<FileScan> {
    let tree = parser.parse(src, None)?;
    let mut out = FileScan::default();
    // Explicit stack: deep expression chains would overflow the recursion of a worker thread.
    let mut stack = vec![(tree.root_node(), false)];
    while let Some((n, in_fn)) = stack.pop() {
        match n.kind() {
            "struct_specifier" if n.child_by_field_name("body").is_some() => {
                let mut names: Vec<String> = type_key(n, src).into_iter().collect();
                if let Some(td) = n.parent().filter(|p| p.kind() == "type_definition") {
                    let mut c = td.walk();
                    names.extend(
                        td.children_by_field_name("declarator", &mut c)
                            .filter(|d| d.kind() == "type_identifier")
                            .map(|d| text(d, src)),
                    );
                }
                for key in names.into_iter().filter(|k| keys.contains(k)) {
                    out.layouts.push(layout(n, key, src));
                }
            }
            "declaration" => declaration(n, src, keys, in_fn, &mut out),
            "compound_literal_expression" => {
                let ty = n
                    .child_by_field_name("type")
                    .and_then(|t| t.child_by_field_name("type"))
                    .and_then(|t| type_key(t, src));
                if let (Some(ty), Some(v)) = (
                    ty.filter(|t| keys.contains(t)),
                    n.child_by_field_name("value"),
                ) {
                    out.sites.push(Site {
                        ty,
                        name: None,
                        kind: SiteKind::CompoundLiteral,
                        file_scope: !in_fn,
                        lines: (line(n), n.end_position().row as u32 + 1),
                        byte: n.start_byte(),
                        list: init_list(v, src),
                    });
                }
            }
            _ => {}
        }
        let in_fn = in_fn || n.kind() == "function_definition";
        let mut c = n.walk();
        stack.extend(n.children(&mut c).map(|ch| (ch, in_fn)));
    }
    Some(out)
}

fn declaration(n: Node, src: &[u8], keys: &HashSet<String>, in_fn: bool, out: &mut FileScan) {
    let Some(ty) = n
        .child_by_field_name("type")
        .and_then(|t| type_key(t, src))
        .filter(|t| keys.contains(t))
    else {
        return;
    };
    let mut c = n.walk();
    for d in n
        .children_by_field_name("declarator", &mut c)
        .filter(|d| d.kind() == "init_declarator")
    {
        let (Some(decl), Some(value)) = (
            d.child_by_field_name("declarator"),
            d.child_by_field_name("value"),
        ) else {
            continue;
        };
        if value.kind() != "initializer_list" {
            continue;
        }
        let (name, array, indirect) = declarator_name(decl, src);
        if indirect {
            continue;
        }
        let start = line(n);
        let site = |kind: SiteKind, node: Node, list| Site {
            ty: ty.clone(),
            name: name.clone(),
            lines: (
                if kind == SiteKind::Variable {
                    start
                } else {
                    line(node)
                },
                node.end_position().row as u32 + 1,
            ),
            kind,
            file_scope: !in_fn,
            byte: node.start_byte(),
            list,
        };
        if !array {
            out.sites
                .push(site(SiteKind::Variable, value, init_list(value, src)));
            continue;
        }
        // Each element of an array is an ops table of its own.
        let mut next = 0usize;
        for item in init_list(value, src).items {
            let index = match &item.index {
                Some(i) => {
                    next = i.parse::<usize>().map_or(next, |n| n);
                    i.clone()
                }
                None => next.to_string(),
            };
            next += 1;
            if let Value::List(list) = item.value {
                let node = find_line_node(value, item.line).unwrap_or(value);
                out.sites
                    .push(site(SiteKind::ArrayElement(index), node, list));
            }
        }
    }
}

/// The child of `list` starting on `line`: gives an array element its own line range.
fn find_line_node(list: Node, line_no: u32) -> Option<Node> {
    let mut c = list.walk();
    list.named_children(&mut c).find(|ch| line(*ch) == line_no)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_stray_bytes_are_found_before_parsing() {
        let deep = format!(
            "int x = {}0{};",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(shape(deep.as_bytes()).too_deep);
        let fine = format!(
            "int x = {}0{};",
            "{".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(shape(fine.as_bytes()), Shape::default());
        // Brackets and bytes in comments and literals are no code.
        let text = b"/* caf\xe9 (((( */ char *s = \"\xff{{\";\nint b\xe9 = 1;\n";
        assert_eq!(
            shape(text),
            Shape {
                too_deep: false,
                stray: Some((2, 0xe9))
            }
        );
    }

    #[test]
    fn finds_variables_arrays_literals_and_layouts() {
        let src = b"struct file_operations { int (*open)(void); void *owner; };\n\
            struct w { struct file_operations fops; int x; };\n\
            static const struct file_operations a = { .open = f, owner: THIS_MODULE };\n\
            struct file_operations arr[] = {\n { .open = g },\n [1] = { h, 0 } };\n\
            void k(void) { use((struct file_operations){ .open = m }); }\n";
        let keys = HashSet::from(["struct file_operations".to_string(), "struct w".to_string()]);
        let s = scan(&mut new_parser(), src, &keys).unwrap();
        assert_eq!(s.layouts.len(), 2);
        assert!(s.layouts.iter().any(|l| l.key == "struct w"
            && l.fields[0].by_value.as_deref() == Some("struct file_operations")));
        let kinds: Vec<SiteKind> = s.sites.iter().map(|x| x.kind.clone()).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(kinds.contains(&SiteKind::CompoundLiteral));
    }
}
