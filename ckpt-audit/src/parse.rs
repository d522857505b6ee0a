//! Parses prepared C text with tree-sitter and extracts what the audit needs: the layouts of the
//! structs of interest, every object of those types (with an initialiser or without), and the
//! statements in functions that may fill such objects at run time.

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

/// How an object gets its first contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// A brace initialiser (the site's list).
    List,
    /// `= other`: a copy of another object (the expression as written).
    Copy(String),
    /// No initialiser: zeroed (static storage) or undefined (a local) until run time.
    None,
}

/// An object of a type of interest.
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
    pub init: Init,
    /// The layout of an anonymous struct type (`static struct { ... } x = ...`): no other
    /// declaration can name it, so it travels with its object.
    pub layout: Option<Layout>,
    /// The function a local object is declared in: its start byte and name.
    pub function: Option<(usize, String)>,
}

/// A statement in a function that writes an object at run time: `x.read = f;` (a member),
/// `x = y;` (the whole object), or `f(&x)` (its address passed to a function).
#[derive(Debug, Clone)]
pub struct Write {
    /// The object as written, spaces removed: `x`, `x.fops`, `arr[1].fops`.
    pub target: String,
    pub what: WriteKind,
    pub line: u32,
    pub function: String,
    /// Start byte of that function, to tell locals of different functions apart.
    pub function_start: usize,
    /// Order in the file.
    pub byte: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    /// `target.member = value`.
    Member {
        name: String,
        value: String,
        ident: bool,
    },
    /// `target = value`.
    Whole { value: String },
    /// `callee(..., &target, ...)`.
    AddressTo { callee: String },
}

#[derive(Debug, Default)]
pub struct FileScan {
    pub layouts: Vec<Layout>,
    pub sites: Vec<Site>,
    pub writes: Vec<Write>,
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

/// Parses `src` (prepared text) and keeps the layouts and sites whose type key is in `keys`,
/// and the writes in functions that may fill such objects at run time.
pub fn scan(parser: &mut Parser, src: &[u8], keys: &HashSet<String>) -> Option<FileScan> {
    let tree = parser.parse(src, None)?;
    let mut out = FileScan::default();
    // Explicit stack: deep expression chains would overflow the recursion of a worker thread.
    // Each node travels with the function definition it is in, if any.
    let mut stack: Vec<(Node, Option<Node>)> = vec![(tree.root_node(), None)];
    while let Some((n, func)) = stack.pop() {
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
            "declaration" => declaration(n, src, keys, func, &mut out),
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
                        file_scope: func.is_none(),
                        lines: (line(n), n.end_position().row as u32 + 1),
                        byte: n.start_byte(),
                        list: init_list(v, src),
                        init: Init::List,
                        layout: None,
                        function: func.map(|f| (f.start_byte(), function_name(f, src))),
                    });
                }
            }
            "assignment_expression" | "call_expression" => {
                if let Some(f) = func {
                    writes(n, f, src, &mut out.writes);
                }
            }
            _ => {}
        }
        let func = func.or((n.kind() == "function_definition").then_some(n));
        let mut c = n.walk();
        stack.extend(n.children(&mut c).map(|ch| (ch, func)));
    }
    // The walk pops children last first: put the writes back in source order.
    out.writes.sort_by_key(|w| w.byte);
    Some(out)
}

/// An object designated by identifiers, members and subscripts only (`x`, `x.fops`,
/// `arr[i].fops`), spaces removed; `None` through a pointer or a call.
fn object_path(n: Node, src: &[u8]) -> Option<String> {
    match n.kind() {
        "identifier" => Some(text(n, src)),
        "parenthesized_expression" => object_path(n.named_child(0)?, src),
        "field_expression" => {
            let op = n.child_by_field_name("operator")?;
            if text(op, src) != "." {
                return None;
            }
            let base = object_path(n.child_by_field_name("argument")?, src)?;
            Some(format!(
                "{base}.{}",
                text(n.child_by_field_name("field")?, src)
            ))
        }
        "subscript_expression" => {
            let base = object_path(n.child_by_field_name("argument")?, src)?;
            let index: String = text(n.child_by_field_name("index")?, src)
                .split_whitespace()
                .collect();
            Some(format!("{base}[{index}]"))
        }
        _ => None,
    }
}

/// The name a function definition defines.
fn function_name(f: Node, src: &[u8]) -> String {
    f.child_by_field_name("declarator")
        .and_then(|d| declarator_name(d, src).0)
        .unwrap_or_default()
}

/// Records what an assignment or a call in function `f` may write into an object.
fn writes(n: Node, f: Node, src: &[u8], out: &mut Vec<Write>) {
    let write = |target: String, what: WriteKind| Write {
        target,
        what,
        line: line(n),
        function: function_name(f, src),
        function_start: f.start_byte(),
        byte: n.start_byte(),
    };
    if n.kind() == "call_expression" {
        let (Some(callee), Some(args)) = (
            n.child_by_field_name("function"),
            n.child_by_field_name("arguments"),
        ) else {
            return;
        };
        let mut c = args.walk();
        for a in args.named_children(&mut c) {
            if a.kind() == "pointer_expression"
                && a.child_by_field_name("operator")
                    .map(|o| text(o, src))
                    .as_deref()
                    == Some("&")
                && let Some(target) = a
                    .child_by_field_name("argument")
                    .and_then(|x| object_path(x, src))
            {
                let callee = text(callee, src);
                out.push(write(target, WriteKind::AddressTo { callee }));
            }
        }
        return;
    }
    let (Some(left), Some(right), Some(op)) = (
        n.child_by_field_name("left"),
        n.child_by_field_name("right"),
        n.child_by_field_name("operator"),
    ) else {
        return;
    };
    if text(op, src) != "=" {
        return;
    }
    let value = text(right, src);
    let ident = right.kind() == "identifier";
    if left.kind() == "field_expression" {
        // `x.member = value`: the member of the object `x` designates.
        let (Some(base), Some(field)) = (
            left.child_by_field_name("argument")
                .and_then(|b| object_path(b, src))
                .filter(|_| {
                    left.child_by_field_name("operator")
                        .is_some_and(|o| text(o, src) == ".")
                }),
            left.child_by_field_name("field"),
        ) else {
            return;
        };
        let name = text(field, src);
        out.push(write(base, WriteKind::Member { name, value, ident }));
    } else if let Some(target) = object_path(left, src) {
        out.push(write(target, WriteKind::Whole { value }));
    }
}

/// Whether a declaration says `extern`: it names an object defined elsewhere.
fn is_extern(n: Node, src: &[u8]) -> bool {
    let mut c = n.walk();
    n.children(&mut c)
        .any(|ch| ch.kind() == "storage_class_specifier" && text(ch, src) == "extern")
}

/// The key of an anonymous struct type: unique within its file, which is as far as such a
/// type can be seen.
fn anonymous_key(n: Node) -> String {
    format!("struct (anonymous at byte {})", n.start_byte())
}

fn declaration(
    n: Node,
    src: &[u8],
    keys: &HashSet<String>,
    func: Option<Node>,
    out: &mut FileScan,
) {
    let Some(ty_node) = n.child_by_field_name("type") else {
        return;
    };
    // `static struct { const char *name; struct file_operations fops; } x[] = ...`: an
    // anonymous type holding one of interest by value.
    let anonymous = (ty_node.kind() == "struct_specifier"
        && ty_node.child_by_field_name("name").is_none()
        && ty_node.child_by_field_name("body").is_some())
    .then(|| layout(ty_node, anonymous_key(ty_node), src))
    .filter(|l| {
        l.fields
            .iter()
            .any(|f| f.by_value.as_ref().is_some_and(|k| keys.contains(k)))
    });
    let Some(ty) = anonymous
        .as_ref()
        .map(|l| l.key.clone())
        .or_else(|| type_key(ty_node, src).filter(|t| keys.contains(t)))
    else {
        return;
    };
    if is_extern(n, src) {
        return;
    }
    let mut c = n.walk();
    for d in n.children_by_field_name("declarator", &mut c) {
        let (decl, value) = if d.kind() == "init_declarator" {
            let Some(decl) = d.child_by_field_name("declarator") else {
                continue;
            };
            (decl, d.child_by_field_name("value"))
        } else {
            (d, None)
        };
        let (name, array, indirect) = declarator_name(decl, src);
        if indirect {
            continue;
        }
        let start = line(n);
        let site = |kind: SiteKind, node: Node, list, init| Site {
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
            file_scope: func.is_none(),
            byte: node.start_byte(),
            list,
            init,
            layout: anonymous.clone(),
            function: func.map(|f| (f.start_byte(), function_name(f, src))),
        };
        let Some(value) = value else {
            // No initialiser: the object is zeroed (or, a local, undefined) until code fills
            // it. An array of them is one definition: no element has anything of its own.
            let kind = if array {
                SiteKind::ArrayElement(String::new())
            } else {
                SiteKind::Variable
            };
            out.sites
                .push(site(kind, d, InitList::default(), Init::None));
            continue;
        };
        if value.kind() != "initializer_list" {
            // `struct file_operations f = *base;`: a copy, made when the declaration runs.
            if !array {
                let copy = Init::Copy(text(value, src));
                out.sites
                    .push(site(SiteKind::Variable, d, InitList::default(), copy));
            }
            continue;
        }
        if !array {
            out.sites.push(site(
                SiteKind::Variable,
                value,
                init_list(value, src),
                Init::List,
            ));
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
                    .push(site(SiteKind::ArrayElement(index), node, list, Init::List));
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
