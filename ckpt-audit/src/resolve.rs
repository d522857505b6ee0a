//! From parsed sites to ops-table definitions: maps positional elements to member names, digs
//! embedded tables out of the structs that contain them, and decides whether the member is there.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::parse::{InitList, Layout, Site, SiteKind, Value};
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
}

/// Resolves the sites of all files against the layouts found anywhere.
pub struct Resolver<'a> {
    pub target: &'a str,
    pub op: &'a str,
    pub layouts: &'a HashMap<String, Layout>,
}

impl Resolver<'_> {
    pub fn definitions(&self, f: &FileSites, out: &mut Vec<Definition>) {
        for site in f.sites {
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
                positional: 0,
                unreadable: Vec::new(),
                has_member: false,
            };
            self.walk(&site.ty, &site.list, base, &f.prepared.conds, out, 0);
        }
    }

    /// Judges `list` as a `ty`: the audited struct itself, or a container to look inside.
    fn walk(
        &self,
        ty: &str,
        list: &InitList,
        mut def: Definition,
        conds: &[Cond],
        out: &mut Vec<Definition>,
        depth: usize,
    ) {
        let layout = self.layouts.get(ty);
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
                    self.walk(inner_ty, inner, nested, conds, out, depth + 1);
                }
                continue;
            }
            match (field, &item.value) {
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
            return;
        }
        if list.has_error {
            def.unreadable.push("(unparsable text)".into());
        }
        def.has_member = def.members.iter().any(|m| m.name == self.op);
        out.push(def);
    }
}

/// `FOO_BAR` or `FOO_BAR(...)`: how kernel macros are spelt.
fn looks_like_macro(text: &str) -> bool {
    let head = text.split('(').next().unwrap_or_default().trim();
    !head.is_empty()
        && head
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
