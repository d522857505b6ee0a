#!/usr/bin/env python3
"""Independent census of `struct file_operations` objects in a kernel tree: the ground truth the
audit's recall is measured against (see the crate docs). It shares no code with the audit.

Usage:
    census.py TREE [FILE...] > objects.tsv           # FILE: ./path below TREE, to look at a few
    census.py TREE --compare AUDIT.jsonl > report    # AUDIT.jsonl: `ckpt-watch audit --json TREE`

Each output line: file, line, name, number of objects, form, type. Set CENSUS_CACHE=FILE to keep
the first pass (every #define of the tree, ~5 minutes) between runs.

The method:
1. Every .c/.h file is tokenised after comments are removed and line continuations joined;
   `#if 0` groups are dropped; `#define`/`#undef` are applied in file order (a header's macros
   are visible everywhere, a .c file's only after their definition in that file).
2. Wrapper types: struct bodies (named, typedef'd or anonymous) holding a `struct
   file_operations` member by value, or a wrapper by value, to a fixpoint.
3. Objects: in every file's code, after expanding the macros that (transitively) mention the ops
   struct or a wrapper (and X-macro lists from headers that call such a macro of the file),
   every declaration with storage of the ops struct or a wrapper type (file scope or local, not
   `extern`, not `typedef`, not a pointer, not a parameter or a member), every element of an
   array of them, every compound literal; a tentative definition (`static const struct
   file_operations x;`) counts only when the file never initialises `x`. A wrapper object counts
   once per ops struct it holds. Objects only ever allocated at run time (`kzalloc` of a
   wrapper) are not declared anywhere, and not counted.
4. --compare matches the audit's definitions to the census per file by name (`x`, `x[i]`,
   `x.member`), nearest line first, and lists what either side has alone.
"""
import json
import os
import pickle
import re
import sys
from collections import defaultdict

TARGET = "file_operations"

TOKEN = re.compile(
    r"""
    (?P<id>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<num>\.?[0-9](?:[eEpP][+-]|[A-Za-z0-9_.])*)
  | (?P<str>"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)
  | (?P<punct>\.\.\.|<<=|>>=|\#\#|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[*/%+\-&|^]=|[^\sA-Za-z0-9_$])
    """,
    re.X,
)
COMMENT = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def strip_comments(text):
    def repl(m):
        s = m.group(0)
        if s.startswith("/"):
            return " " + "\n" * s.count("\n") if s.startswith("/*") else " "
        return s

    return COMMENT.sub(repl, text)


def tokens(text, line=1):
    """(text, line) pairs."""
    out = []
    pos = 0
    for m in TOKEN.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        out.append((m.group(0), line))
    return out


class Macro:
    __slots__ = ("name", "params", "body", "variadic")

    def __init__(self, name, params, body):
        self.name = name
        self.params = params
        self.body = body  # token texts
        self.variadic = params is not None and params and params[-1] == "__VA_ARGS__"


def parse_define(rest):
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)(\()?", rest)
    if not m:
        return None
    name = m.group(1)
    params = None
    pos = m.end()
    if m.group(2):
        close = rest.find(")", pos)
        if close < 0:
            return None
        params = []
        for p in rest[pos:close].split(","):
            p = p.strip()
            if p == "...":
                params.append("__VA_ARGS__")
            elif p.endswith("..."):
                params.append(p[:-3].strip())
            elif p:
                params.append(p)
        pos = close + 1
    body = [t for t, _ in tokens(rest[pos:])]
    return Macro(name, params, body)


def logical_lines(text):
    """Joins continuations; yields (first line number, text, number of physical lines)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start = i
        buf = lines[i]
        while buf.endswith("\\") and i + 1 < len(lines):
            i += 1
            buf = buf[:-1] + " " + lines[i]
        yield start + 1, buf, i - start + 1
        i += 1


DIRECTIVE = re.compile(r"^\s*#\s*([a-z]+)\b(.*)$")


def split_file(text):
    """Returns (code text with directives blanked and #if 0 dropped, directives in order)."""
    text = strip_comments(text)
    out = []
    directives = []  # (line, word, rest)
    stack = []  # True: this group is dead
    for line, buf, n in logical_lines(text):
        m = DIRECTIVE.match(buf)
        dead = any(stack)
        if m:
            word, rest = m.group(1), m.group(2)
            if word in ("if", "ifdef", "ifndef"):
                stack.append(word == "if" and rest.strip() == "0")
            elif word in ("else", "elif"):
                if stack and stack[-1]:
                    stack[-1] = False
            elif word == "endif":
                if stack:
                    stack.pop()
            elif not dead:
                directives.append((line, word, rest))
            out.append("\n" * n)
            continue
        out.append(("" if dead else buf) + "\n" * n)
    return "".join(out), directives


# ---------------------------------------------------------------------------------------------
# Expansion (only of "interesting" macros)


def split_args(toks, i):
    """toks[i] == '('; returns (args, index after ')') or None."""
    depth = 0
    args = [[]]
    j = i
    while j < len(toks):
        t = toks[j][0]
        if t == "(":
            depth += 1
            if depth == 1:
                j += 1
                continue
        elif t == ")":
            depth -= 1
            if depth == 0:
                return args, j + 1
        elif t == "," and depth == 1:
            args.append([])
            j += 1
            continue
        args[-1].append(toks[j])
        j += 1
    return None


def expand(toks, lookup, active=(), budget=None):
    """Expands macros `lookup` knows; tokens keep the line of the call they came from."""
    if budget is None:
        budget = [300000]
    out = []
    i = 0
    while i < len(toks):
        t, line = toks[i]
        m = lookup(t) if t not in active and budget[0] > 0 else None
        if m is None:
            out.append(toks[i])
            i += 1
            continue
        if m.params is None:
            body = [(x, line) for x in m.body]
            budget[0] -= len(body)
            out.extend(expand(body, lookup, active + (t,), budget))
            i += 1
            continue
        if i + 1 >= len(toks) or toks[i + 1][0] != "(":
            out.append(toks[i])
            i += 1
            continue
        r = split_args(toks, i + 1)
        if r is None:
            out.append(toks[i])
            i += 1
            continue
        args, nxt = r
        params = m.params
        if len(params) == 0 and args == [[]]:
            args = []
        if m.variadic and len(args) >= len(params) - 1:
            head, rest = args[: len(params) - 1], args[len(params) - 1:]
            joined = []
            for k, a in enumerate(rest):
                if k:
                    joined.append((",", line))
                joined.extend(a)
            args = head + [joined]
        if len(args) != len(params):
            out.append(toks[i])
            i += 1
            continue
        body = substitute(m, args, line, lookup, active, budget)
        budget[0] -= len(body)
        out.extend(expand(body, lookup, active + (t,), budget))
        i = nxt
    return out


def substitute(m, args, line, lookup, active, budget):
    idx = {p: k for k, p in enumerate(m.params)}
    body = m.body
    res = []
    paste = False
    j = 0
    expanded = {}
    while j < len(body):
        t = body[j]
        j += 1
        if t == "##":
            paste = True
            continue
        if t == "#" and j < len(body) and body[j] in idx:
            piece = [('"%s"' % " ".join(x for x, _ in args[idx[body[j]]]), line)]
            j += 1
        elif t in idx:
            a = args[idx[t]]
            if paste or (j < len(body) and body[j] == "##"):
                piece = [(x, line) for x, _ in a] or [("", line)]
            else:
                if t not in expanded:
                    expanded[t] = expand([(x, line) for x, _ in a], lookup, active, budget)
                piece = expanded[t]
        else:
            piece = [(t, line)]
        if paste:
            paste = False
            if t == "__VA_ARGS__" and res and res[-1][0] == ",":
                if piece == [("", line)]:
                    res.pop()
                else:
                    res.extend(piece)
                continue
            if res and piece:
                res[-1] = (res[-1][0] + piece[0][0], line)
                res.extend(piece[1:])
            else:
                res.extend(piece)
        else:
            res.extend(piece)
    return [x for x in res if x[0] != ""]


# ---------------------------------------------------------------------------------------------
# Recognising types and objects in a token stream

QUALIFIERS = {"static", "const", "volatile", "register", "auto", "inline", "__const", "_Thread_local"}


def skip_group(toks, i):
    """toks[i] is an opening bracket; returns the index after its match."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    want = [pairs[toks[i][0]]]
    i += 1
    while i < len(toks) and want:
        t = toks[i][0]
        if t in pairs:
            want.append(pairs[t])
        elif t in (")", "]", "}"):
            if want and t == want[-1]:
                want.pop()
            else:
                want.pop()
        i += 1
    return i


def skip_annotations(toks, i, before_name=False):
    while i < len(toks):
        t = toks[i][0]
        nxt = toks[i + 1][0] if i + 1 < len(toks) else ";"
        if t in QUALIFIERS:
            i += 1
        elif before_name and t.startswith("__") and nxt in ("=", ";", ",", "[", ")"):
            break  # a declarator named __foo, not an annotation
        elif t.startswith("__") and t not in ("__VA_ARGS__",):
            i += 1
            if i < len(toks) and toks[i][0] == "(":
                i = skip_group(toks, i)
        else:
            break
    return i


def count_elements(toks, i):
    """toks[i] == '{' of an array initialiser: its top-level elements."""
    end = skip_group(toks, i)
    depth = 0
    n = 0
    seen = False
    for t, _ in toks[i + 1: end - 1]:
        if t in "({[":
            depth += 1
        elif t in ")}]":
            depth -= 1
        if depth == 0 and t == ",":
            if seen:
                n += 1
            seen = False
        elif not (depth == 0 and t == ","):
            seen = True
    if seen:
        n += 1
    return n, end


def statement_start(toks, i):
    """Tokens of the statement before i, back to `;`, `{` or `}` at the same depth."""
    depth = 0
    j = i - 1
    while j >= 0:
        t = toks[j][0]
        if t in (")", "]"):
            depth += 1
        elif t in ("(", "["):
            if depth == 0:
                return j, True  # inside parentheses
            depth -= 1
        elif depth == 0 and t in (";", "{", "}"):
            return j, False
        j -= 1
    return j, False



def by_value_declarators(toks, j):
    """Member declarators from toks[j] (after the type) to `;` that hold the type by value."""
    n = len(toks)
    count = 0
    while j < n:
        star = False
        while j < n and (toks[j][0] in ("*", "const", "volatile", "restrict") or toks[j][0].startswith("__")):
            star |= toks[j][0] == "*"
            j = skip_annotations(toks, j + 1) if toks[j][0].startswith("__") and j + 1 < n and toks[j + 1][0] == "(" else j + 1
        if j < n and toks[j][0] == "(":
            star = True
            j = skip_group(toks, j)
        if j < n and re.match(r"[A-Za-z_]", toks[j][0]):
            j += 1
        if j < n and toks[j][0] == "(":
            star = True
            j = skip_group(toks, j)
        while j < n and toks[j][0] == "[":
            j = skip_group(toks, j)
        while j < n and toks[j][0] not in (",", ";", "}"):
            j = skip_group(toks, j) if toks[j][0] in "([" else j + 1
        if not star:
            count += 1
        if j < n and toks[j][0] == ",":
            j += 1
            continue
        return count
    return count

def find_types(toks, types, anon_objects):
    """Finds struct bodies holding types of interest; adds wrapper keys to `types`.

    Returns True if something new was added. Anonymous wrapper structs that are declared with
    objects are recorded in anon_objects as (line, name, count, kind)."""
    added = False
    stack = []  # per '{': [struct key or '' (anonymous) or None (not a struct body), ops count, start index]
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i][0]
        if t == "{":
            key = None
            if i >= 2 and toks[i - 2][0] in ("struct", "union") and re.match(r"[A-Za-z_]", toks[i - 1][0]):
                key = "struct " + toks[i - 1][0]
            elif i >= 1 and toks[i - 1][0] in ("struct", "union"):
                key = ""
            elif i >= 2 and toks[i - 1][0].startswith("__") and toks[i - 2][0] in ("struct", "union"):
                key = ""
            stack.append([key, 0, i])
        elif t == "}":
            if not stack:
                i += 1
                continue
            key, count, start = stack.pop()
            if key is not None and count:
                # Typedef names after the body; anonymous bodies counted in the enclosing one.
                j = skip_annotations(toks, i + 1)
                s, _ = statement_start(toks, start - 1)
                head = [x for x, _ in toks[s + 1: start]]
                names = []
                while j < n and re.match(r"[A-Za-z_]", toks[j][0]):
                    names.append((toks[j][0], j))
                    j += 1
                    while j < n and toks[j][0] == "[":
                        j = skip_group(toks, j)
                    j = skip_annotations(toks, j)
                    if j < n and toks[j][0] == "=":
                        break
                    if j < n and toks[j][0] == ",":
                        j += 1
                        continue
                    break
                if key and types.get(key) != count:
                    types[key] = count
                    added = True
                if "typedef" in head:
                    for nm, _ in names:
                        if types.get(nm) != count:
                            types[nm] = count
                            added = True
                elif stack and stack[-1][0] is not None:
                    # A member of another struct: it holds `count` ops structs per declarator.
                    stack[-1][1] += count * max(1, len(names))
                elif names and not key:
                    anon_objects.append((toks[start][1], i, count))
        elif t in ("struct", "union") and stack and stack[-1][0] is not None:
            k = "struct " + toks[i + 1][0] if i + 1 < n else None
            if k in types and i + 2 < n and toks[i + 2][0] != "{" and not statement_start(toks, i)[1]:
                stack[-1][1] += types[k] * by_value_declarators(toks, i + 2)
        elif t in types and not t.startswith("struct") and stack and stack[-1][0] is not None and i + 1 < n and re.match(r"[A-Za-z_]", toks[i + 1][0]) and (i == 0 or toks[i - 1][0] in (";", "{", "const")):
            stack[-1][1] += types[t] * by_value_declarators(toks, i + 1)
        i += 1
    return added


def find_objects(toks, types, emit):
    """Emits (line, name, count, form) for every object of a type of interest."""
    n = len(toks)
    # Context per brace: 'struct', 'init', 'code'
    ctx = []
    i = 0
    while i < n:
        t = toks[i][0]
        if t == "{":
            prev = toks[i - 1][0] if i else ""
            prev2 = toks[i - 2][0] if i > 1 else ""
            if prev in ("struct", "union", "enum") or prev2 in ("struct", "union", "enum"):
                ctx.append("struct")
            elif prev in ("=", ",", "{") and (ctx and ctx[-1] == "init" or prev == "="):
                ctx.append("init")
            elif prev == ")" and ctx and ctx[-1] == "init":
                ctx.append("init")
            else:
                ctx.append("code")
            i += 1
            continue
        if t == "}":
            if ctx:
                ctx.pop()
            i += 1
            continue
        if ctx and ctx[-1] == "struct":
            i += 1
            continue
        ty = None
        if t in ("struct", "union") or t in types:
            r = None
            if t in ("struct", "union") and i + 1 < n:
                k = "struct " + toks[i + 1][0]
                if k in types:
                    r = (k, i + 2)
            elif t in types and not t.startswith("struct "):
                r = (t, i + 1)
            if r:
                ty, j = r
        if ty is None:
            i += 1
            continue
        line = toks[i][1]
        s, in_parens = statement_start(toks, i)
        head = [x for x, _ in toks[s + 1: i]]
        if in_parens:
            # A compound literal: `( struct X ) {`
            if toks[s][0] == "(" and j < n and toks[j][0] == ")" and j + 1 < n and toks[j + 1][0] == "{" and s == i - 1 or (toks[s][0] == "(" and head == ["const"] and j < n and toks[j][0] == ")" and toks[j + 1][0] == "{"):
                emit(line, "(compound literal)", types[ty], "compound literal", ty)
            i = j
            continue
        if "extern" in head or "typedef" in head or (j < n and toks[j][0] == "{"):
            i = j
            continue
        # A macro call that makes a whole item without `;` may precede it: `WRAP_DIR_ITER(x)`.
        while len(head) >= 3 and re.match(r"[A-Z_][A-Z0-9_]*$", head[0]) and head[1] == "(":
            depth, close = 0, len(head) - 1
            for k in range(1, len(head)):
                depth += {"(": 1, ")": -1}.get(head[k], 0)
                if depth == 0:
                    close = k
                    break
            head = head[close + 1:]
        # Only qualifiers/annotations may precede the type in a declaration.
        if any(not (x in QUALIFIERS or x.startswith("__")) for x in head):
            i = j
            continue
        local = bool(ctx) and "code" in ctx
        # Declarators up to ';'.
        j = skip_annotations(toks, j, True)
        while j < n:
            star = False
            while j < n and toks[j][0] in ("*", "const") or (j < n and toks[j][0].startswith("__") and j + 1 < n and toks[j + 1][0] not in ("=", ";", ",", "[", ")")):
                if toks[j][0] == "*":
                    star = True
                j = skip_annotations(toks, j + 1, True) if toks[j][0].startswith("__") else j + 1
            if j >= n:
                break
            if toks[j][0] == "(":
                star = True  # function pointer or parenthesised declarator
                j = skip_group(toks, j)
            name = toks[j][0] if re.match(r"[A-Za-z_]", toks[j][0]) else None
            dline = toks[j][1]
            j += 1
            if j < n and toks[j][0] == "(":
                star = True  # a function returning the struct
                j = skip_group(toks, j)
            dims = 0
            while j < n and toks[j][0] == "[":
                dims += 1
                j = skip_group(toks, j)
            j = skip_annotations(toks, j)
            init = None
            if j < n and toks[j][0] == "=":
                j += 1
                if j < n and toks[j][0] == "{":
                    if dims:
                        cnt, end = count_elements(toks, j)
                        init = ("array", cnt)
                    else:
                        end = skip_group(toks, j)
                        init = ("list", 1)
                    j = end
                else:
                    # An expression (struct copy): up to ',' or ';' at depth 0.
                    start = j
                    while j < n and toks[j][0] not in (",", ";"):
                        j = skip_group(toks, j) if toks[j][0] in "({[" else j + 1
                    init = ("copy", " ".join(x for x, _ in toks[start:j]))
            if name and not star:
                form = "local" if local else "file"
                if init is None:
                    if dims:
                        emit(dline, name, types[ty], form + " array, no initialiser", ty)
                    else:
                        emit(dline, name, types[ty], form + " tentative" if not local else "local, no initialiser", ty)
                elif init[0] == "array":
                    emit(dline, name, types[ty] * init[1], form + " array of %d" % init[1], ty)
                elif init[0] == "copy":
                    emit(dline, name, types[ty], form + " copy of " + init[1], ty)
                else:
                    emit(dline, name, types[ty], form + " initialised", ty)
            if j < n and toks[j][0] == ",":
                j += 1
                continue
            break
        i = j
    return


# ---------------------------------------------------------------------------------------------


DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+((?:[^\n]*\\\n)*[^\n]*)", re.M)
CONSTANT_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:\(?\s*-?\s*(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*\)?)?\s*$")


def read(p):
    with open(p, "rb") as fh:
        return fh.read().decode("latin-1")


def compare(audit_path, census_rows):
    """Prints recall of the audit against the census, and every object either side has alone."""
    audit = [json.loads(l) for l in open(audit_path)]
    by_file = defaultdict(list)
    for d in audit:
        by_file[d["file"]].append(d)
    used = set()
    missed = []
    total = 0
    for f, line, name, cnt, form, ty in census_rows:
        total += cnt
        literal = name == "(compound literal)"
        cands = [
            d
            for d in by_file.get(f, [])
            if id(d) not in used
            and (
                (literal and d["name"] == name and abs(d["line"] - line) <= 3)
                or (not literal and (d["name"] == name or d["name"].startswith((name + "[", name + "."))))
            )
        ]
        cands.sort(key=lambda d: abs(d["line"] - line))
        for d in cands[:cnt]:
            used.add(id(d))
        if len(cands) < cnt:
            missed.append((f, line, name, cnt - len(cands), form))
    extra = [d for d in audit if id(d) not in used]
    found = total - sum(m[3] for m in missed)
    print("census %d, audit %d, matched %d (%.2f %%), missed %d, audit alone %d"
          % (total, len(audit), found, 100.0 * found / total, total - found, len(extra)))
    for m in missed:
        print("MISSED\t%s\t%d\t%s\t%d\t%s" % m)
    for d in extra:
        print("AUDIT ONLY\t%s\t%d\t%s\t%s" % (d["file"], d["line"], d["name"], d["kind"]))


def main():
    args = sys.argv[1:]
    audit_path = None
    if "--compare" in args:
        k = args.index("--compare")
        audit_path = args[k + 1]
        del args[k:k + 2]
    root = args[0]
    rows = []
    files = []
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in fs:
            if f.endswith((".c", ".h")):
                files.append(os.path.join(d, f))
    files.sort()

    # Pass 1: every #define (register constants left out), and which files mention the struct.
    header_macros = defaultdict(list)
    bodies = defaultdict(set)
    mentions = []
    cached = os.environ.get("CENSUS_CACHE")
    if cached and os.path.exists(cached):
        header_macros, bodies, mentions = pickle.load(open(cached, "rb"))
        files_pass1 = []
    else:
        files_pass1 = files
    for p in files_pass1:
        text = read(p)
        if TARGET in text:
            mentions.append(p)
        if "define" not in text:
            continue
        for m in DEFINE_RE.finditer(text):
            rest = m.group(1)
            if CONSTANT_RE.match(rest):
                continue
            rest = strip_comments(rest.replace("\\\n", " "))
            d = parse_define(rest)
            if d is None:
                continue
            # A .c file's macros are judged in that file only (see process()).
            if p.endswith(".h"):
                bodies[d.name].update(x for x in d.body if x[:1].isalpha() or x[:1] == "_")
                header_macros[d.name].append(d)
    if cached and files_pass1:
        pickle.dump((header_macros, bodies, mentions), open(cached, "wb"))
    sys.stderr.write("files: %d, mentioning the struct: %d, macros: %d\n" % (len(files), len(mentions), len(bodies)))

    # Pass 2: wrapper types, to a fixpoint over the files that mention a type of interest.
    types = {"struct " + TARGET: 1}
    cache = {}

    def prepared(p):
        if p not in cache:
            code, dirs = split_file(read(p))
            cache[p] = (tokens(code), dirs)
        return cache[p]

    candidates = list(mentions)
    while True:
        added = False
        for p in candidates:
            toks, dirs = prepared(p)
            added |= find_types(toks, types, [])
            for _, wd, r in dirs:
                if wd == "define" and TARGET in r or any(w.split()[-1] in r for w in types if w != "struct " + TARGET):
                    m = parse_define(r)
                    if m:
                        added |= find_types([(x, 0) for x in m.body], types, [])
        if not added:
            break
    sys.stderr.write("types: %d\n" % len(types))
    for k, v in sorted(types.items()):
        sys.stderr.write("  %s holds %d\n" % (k, v))

    # Interesting macros: bodies mention a type of interest or an interesting macro.
    words = {t.split()[-1] for t in types}
    interesting = {n for n, b in bodies.items() if b & words}
    while True:
        new = {n for n, b in bodies.items() if n not in interesting and b & interesting}
        if not new:
            break
        interesting |= new
    sys.stderr.write("interesting macros: %d\n" % len(interesting))
    any_word = re.compile(r"\b(?:%s)\b" % "|".join(sorted(words | interesting, key=len, reverse=True)))

    def pick(ms):
        for m in ms:
            if set(m.body) & (words | interesting):
                return m
        return ms[0]

    only = args[1:]
    callers = {}
    total = 0
    for p in files:
        if only and ("./" + os.path.relpath(p, root)) not in only:
            continue
        if p in cache:
            toks, dirs = cache.pop(p)
        else:
            text = read(p)
            if not any_word.search(text):
                continue
            code, dirs = split_file(text)
            toks = tokens(code)
        rows.extend(process(p, root, toks, dirs, types, interesting, header_macros, pick, words, bodies, callers))
    if audit_path:
        compare(audit_path, rows)
    else:
        for row in rows:
            print("%s\t%d\t%s\t%d\t%s\t%s" % row)
    forms = defaultdict(int)
    for row in rows:
        forms[re.sub(r" of .*| \d+", "", row[4])] += row[3]
    sys.stderr.write("objects: %d %s\n" % (sum(r[3] for r in rows), dict(forms)))


def process(p, root, toks, dirs, types, interesting, header_macros, pick, words, bodies, callers):
    """The objects of one file: (file, line, name, count, form, type) rows."""
    local = {}
    local_interesting = set()
    events = [(l, w, r) for l, w, r in dirs if w in ("define", "undef")]
    ev = 0
    out = []
    i = 0
    while i < len(toks):
        line = toks[i][1]
        while ev < len(events) and events[ev][0] <= line:
            l, w, r = events[ev]
            if w == "define":
                m = parse_define(r)
                if m:
                    local[m.name] = m
                    # Expansion happens at use: a macro calling one defined later counts too.
                    while True:
                        new = {n for n, d in local.items() if d and n not in local_interesting
                               and set(d.body) & (words | interesting | local_interesting)}
                        if not new:
                            break
                        local_interesting |= new
            else:
                nm = r.split()[0] if r.split() else ""
                local[nm] = None
            ev += 1
        # A chunk: up to the next ';', '{' or '}' at depth 0, or the next directive's line.
        j = i
        depth = 0
        nxt = events[ev][0] if ev < len(events) else 1 << 30
        while j < len(toks):
            t, l = toks[j]
            if l >= nxt:
                break
            if t in "([":
                depth += 1
            elif t in ")]":
                depth -= 1
            j += 1
            if depth <= 0 and t in (";", "}", "{"):
                break
        if j == i:
            j = i + 1
        chunk = toks[i:j]

        def lookup(name, local=local):
            if name in local:
                m = local[name]
                if m is None or name not in local_interesting:
                    return None
                return m
            if (name in interesting or name in xlists) and name in header_macros:
                return pick(header_macros[name])
            return None

        # X-macro lists: a header macro calling a local macro that writes an ops struct.
        xlists = set()
        for x in local_interesting:
            if x not in callers:
                callers[x] = {n for n, b in bodies.items() if x in b}
            xlists |= callers[x]
        if any(t in interesting or t in local_interesting or t in xlists for t, _ in chunk):
            chunk = expand(chunk, lookup)
        out.extend(chunk)
        i = j
    rel = "./" + os.path.relpath(p, root)
    found = []

    def emit(line, name, count, form, ty):
        found.append((line, name, count, form, ty))

    find_objects(out, types, emit)
    anon = []
    find_types(out, dict(types), anon)
    for line, idx, count in anon:
        # Anonymous wrapper with declarators: `struct { ... } name[] = {...}`.
        j = skip_annotations(out, idx + 1)
        name = out[j][0] if j < len(out) else "?"
        j += 1
        dims = 0
        while j < len(out) and out[j][0] == "[":
            dims += 1
            j = skip_group(out, j)
        j = skip_annotations(out, j)
        if j + 1 < len(out) and out[j][0] == "=" and out[j + 1][0] == "{" and dims:
            cnt, _ = count_elements(out, j + 1)
            found.append((out[idx + 1][1], name, count * cnt, "anonymous wrapper array of %d" % cnt, "struct {}"))
        else:
            found.append((out[idx + 1][1], name, count, "anonymous wrapper", "struct {}"))
    # Tentative definitions of names the file initialises are the same object.
    initialised = {nm for _, nm, _, form, _ in found if "tentative" not in form}
    return [
        (rel, line, name, count, form, ty)
        for line, name, count, form, ty in found
        if not ("tentative" in form and name in initialised)
    ]


if __name__ == "__main__":
    main()
