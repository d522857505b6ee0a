//! A small C tokenizer: enough of the preprocessor's view of a file (tokens, comments, directives)
//! to collect and expand macros without ever matching lines by pattern.

/// What a token is; only the distinctions the macro expander and the scanners need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ident,
    /// Numbers, string and character literals: opaque to us.
    Literal,
    Punct,
}

/// One token, as a byte range of the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tok {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Whitespace (or a comment) came before it: kept so that re-joined text stays lexable.
    pub space_before: bool,
}

impl Tok {
    pub fn text<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        &src[self.start..self.end]
    }
}

/// Iterates over the tokens of `src`, skipping comments, whitespace and line continuations.
/// Newlines are reported (as `None` items of [`Lexer::next_item`]) only to callers that need
/// line structure, i.e. the directive scanner.
pub struct Lexer<'a> {
    pub src: &'a [u8],
    pub pos: usize,
}

/// An item of the token stream: a token, or the end of a logical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Tok(Tok),
    Newline(usize),
}

const PUNCT3: [&[u8]; 3] = [b"...", b"<<=", b">>="];
const PUNCT2: [&[u8]; 19] = [
    b"##", b"->", b"++", b"--", b"<<", b">>", b"<=", b">=", b"==", b"!=", b"&&", b"||", b"*=",
    b"/=", b"%=", b"+=", b"-=", b"&=", b"|=",
];

pub fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

pub fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Lexer { src, pos: 0 }
    }

    /// Skips blanks, comments and backslash-newlines; stops at a real newline or a token.
    /// Returns whether anything was skipped.
    fn skip_space(&mut self) -> bool {
        let s = self.src;
        let start = self.pos;
        while self.pos < s.len() {
            match s[self.pos] {
                b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => self.pos += 1,
                b'\\' if s.get(self.pos + 1) == Some(&b'\n') => self.pos += 2,
                b'\\'
                    if s.get(self.pos + 1) == Some(&b'\r')
                        && s.get(self.pos + 2) == Some(&b'\n') =>
                {
                    self.pos += 3
                }
                b'/' if s.get(self.pos + 1) == Some(&b'*') => {
                    self.pos = match memchr::memmem::find(&s[self.pos + 2..], b"*/") {
                        Some(i) => self.pos + 2 + i + 2,
                        None => s.len(),
                    };
                }
                b'/' if s.get(self.pos + 1) == Some(&b'/') => {
                    // A line comment ends at a newline not escaped by a backslash.
                    let mut p = self.pos + 2;
                    while p < s.len() && !(s[p] == b'\n' && s[p - 1] != b'\\') {
                        p += 1;
                    }
                    self.pos = p;
                }
                _ => break,
            }
        }
        self.pos != start
    }

    /// The next token or newline; `None` at the end of input.
    pub fn next_item(&mut self) -> Option<Item> {
        let space_before = self.skip_space();
        let s = self.src;
        let start = self.pos;
        let &b = s.get(start)?;
        if b == b'\n' {
            self.pos += 1;
            return Some(Item::Newline(start));
        }
        let kind = if is_ident_start(b) {
            // An encoding prefix makes a string or character literal (L"", u8'', ...).
            let mut p = start;
            while p < s.len() && is_ident_char(s[p]) {
                p += 1;
            }
            let prefix = &s[start..p];
            if matches!(s.get(p), Some(b'"') | Some(b'\''))
                && matches!(prefix, b"L" | b"u" | b"U" | b"u8")
            {
                self.pos = p;
                self.quoted(s[p]);
                Kind::Literal
            } else {
                self.pos = p;
                Kind::Ident
            }
        } else if b.is_ascii_digit()
            || (b == b'.' && s.get(start + 1).is_some_and(u8::is_ascii_digit))
        {
            // pp-number: digits, letters, dots, and signs after an exponent letter.
            let mut p = start + 1;
            while p < s.len() {
                let c = s[p];
                let exponent_sign =
                    (c == b'+' || c == b'-') && matches!(s[p - 1], b'e' | b'E' | b'p' | b'P');
                if is_ident_char(c) || c == b'.' || exponent_sign {
                    p += 1;
                } else {
                    break;
                }
            }
            self.pos = p;
            Kind::Literal
        } else if b == b'"' || b == b'\'' {
            self.quoted(b);
            Kind::Literal
        } else {
            let rest = &s[start..];
            let len = match b {
                b'.' | b'<' | b'>' if PUNCT3.iter().any(|p| rest.starts_with(p)) => 3,
                b'#' | b'-' | b'+' | b'<' | b'>' | b'=' | b'!' | b'&' | b'|' | b'*' | b'/'
                | b'%'
                    if PUNCT2.iter().any(|p| rest.starts_with(p)) =>
                {
                    2
                }
                _ => 1,
            };
            self.pos += len;
            Kind::Punct
        };
        Some(Item::Tok(Tok {
            kind,
            start,
            end: self.pos,
            space_before,
        }))
    }

    /// Consumes a quoted literal starting at `self.pos`; an unterminated one ends at the line end.
    fn quoted(&mut self, quote: u8) {
        let s = self.src;
        let mut p = self.pos + 1;
        while p < s.len() {
            match s[p] {
                b'\\' => p += 2,
                b'\n' => break,
                c if c == quote => {
                    p += 1;
                    break;
                }
                _ => p += 1,
            }
        }
        self.pos = p.min(s.len());
    }

    /// The next token, treating newlines as whitespace.
    pub fn next_tok(&mut self) -> Option<Tok> {
        loop {
            match self.next_item()? {
                Item::Tok(t) => return Some(t),
                Item::Newline(_) => continue,
            }
        }
    }
}

/// All tokens of a snippet (newlines are whitespace): used for macro bodies and arguments.
pub fn tokens(src: &[u8]) -> Vec<Tok> {
    let mut lx = Lexer::new(src);
    std::iter::from_fn(|| lx.next_tok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokens(src.as_bytes())
            .iter()
            .map(|t| String::from_utf8_lossy(t.text(src.as_bytes())).into_owned())
            .collect()
    }

    #[test]
    fn comments_strings_and_pasting() {
        assert_eq!(
            texts("a ## b /* } */ \"}\\\"\" '}' // }\n 1.5e+3 ..."),
            ["a", "##", "b", "\"}\\\"\"", "'}'", "1.5e+3", "..."]
        );
    }
}
