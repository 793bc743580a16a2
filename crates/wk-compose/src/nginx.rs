//! Lossless edits of an nginx.conf an operator may have written or changed by hand: wkctl owns
//! the member `server` lines of the WuKongIM upstreams and nothing else.
//!
//! The file is tokenised the way nginx reads it (words, quoted strings, `;`, `{`, `}`, comments),
//! so an upstream is found wherever it is (under `http` or `stream`) and whatever surrounds it.
//! A missing member is added as a new line after the upstream's last `server` line, indented
//! like it and carrying the same parameters as an existing member line (`max_fails=3`, ...).
//! Nothing is ever removed (WuKongIM v2 cannot remove a node), and every other byte stays.
//! What cannot be edited that way (an upstream missing or defined twice, an `include` inside
//! one, a `server` sharing its line with another directive) is refused with the reason.

use crate::edit::EditError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b';' | b'{' | b'}' => {
                out.push(Token {
                    tok: match c {
                        b';' => Tok::Semi,
                        b'{' => Tok::Open,
                        _ => Tok::Close,
                    },
                    start: i,
                    end: i + 1,
                });
                i += 1;
            }
            b'"' | b'\'' => {
                let start = i;
                i += 1;
                let mut value = String::new();
                loop {
                    if i >= b.len() {
                        return Err(format!("line {}: a quote is never closed", line_of(start)));
                    }
                    if b[i] == b'\\' && i + 1 < b.len() {
                        // The escaped character whole (it may take several bytes).
                        let ch = text[i + 1..].chars().next().expect("in bounds");
                        value.push(ch);
                        i += 1 + ch.len_utf8();
                        continue;
                    }
                    if b[i] == c {
                        i += 1;
                        break;
                    }
                    let ch = text[i..].chars().next().expect("in bounds");
                    value.push(ch);
                    i += ch.len_utf8();
                }
                out.push(Token {
                    tok: Tok::Word(value),
                    start,
                    end: i,
                });
            }
            _ => {
                // As nginx reads a word: it ends at white space, `;` or a `{` that does not
                // follow `$` (`${var}`); a `}` inside a word is part of it; `\` takes the next
                // byte as it is.
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b';') {
                    if b[i] == b'{' && !(i > start && b[i - 1] == b'$') {
                        break;
                    }
                    i += match (b[i], text.get(i + 1..).and_then(|t| t.chars().next())) {
                        (b'\\', Some(next)) => 1 + next.len_utf8(),
                        _ => 1,
                    };
                }
                out.push(Token {
                    tok: Tok::Word(text[start..i.min(b.len())].to_string()),
                    start,
                    end: i.min(b.len()),
                });
            }
        }
    }
    Ok(out)
}

/// One directive: its words, where it starts and ends (the `;`, or the block's `}`), and for
/// a block, its children.
#[derive(Debug, Clone)]
struct Directive {
    words: Vec<String>,
    start: usize,
    end: usize,
    block: Option<Vec<Directive>>,
    /// For a block: where its `}` is.
    close: usize,
}

fn parse(text: &str) -> Result<Vec<Directive>, String> {
    let toks = tokenize(text)?;
    let mut pos = 0;
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    fn block(
        toks: &[Token],
        pos: &mut usize,
        top: bool,
        line_of: &dyn Fn(usize) -> usize,
    ) -> Result<(Vec<Directive>, usize), String> {
        let mut out = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut start = None;
        while *pos < toks.len() {
            let t = &toks[*pos];
            *pos += 1;
            match &t.tok {
                Tok::Word(w) => {
                    start.get_or_insert(t.start);
                    words.push(w.clone());
                }
                Tok::Semi => {
                    let Some(s) = start.take() else {
                        return Err(format!(
                            "line {}: a `;` with no directive",
                            line_of(t.start)
                        ));
                    };
                    out.push(Directive {
                        words: std::mem::take(&mut words),
                        start: s,
                        end: t.end,
                        block: None,
                        close: 0,
                    });
                }
                Tok::Open => {
                    let Some(s) = start.take() else {
                        return Err(format!(
                            "line {}: a `{{` with no directive",
                            line_of(t.start)
                        ));
                    };
                    let (children, close) = block(toks, pos, false, line_of)?;
                    out.push(Directive {
                        words: std::mem::take(&mut words),
                        start: s,
                        end: close + 1,
                        block: Some(children),
                        close,
                    });
                }
                Tok::Close => {
                    if top {
                        return Err(format!("line {}: a `}}` closes nothing", line_of(t.start)));
                    }
                    if let Some(s) = start {
                        return Err(format!(
                            "line {}: a directive has no `;` before the `}}`",
                            line_of(s)
                        ));
                    }
                    return Ok((out, t.start));
                }
            }
        }
        if let Some(s) = start {
            return Err(format!(
                "line {}: the last directive has no `;`",
                line_of(s)
            ));
        }
        if !top {
            return Err("a `{` is never closed".into());
        }
        Ok((out, toks.last().map(|t| t.end).unwrap_or(0)))
    }
    block(&toks, &mut pos, true, &line_of).map(|(d, _)| d)
}

/// Every `upstream NAME { ... }` block, wherever it is.
fn upstreams<'a>(ds: &'a [Directive], out: &mut Vec<&'a Directive>) {
    for d in ds {
        if let Some(children) = &d.block {
            if d.words.first().map(String::as_str) == Some("upstream") {
                out.push(d);
            } else {
                upstreams(children, out);
            }
        }
    }
}

/// The upstreams of a file and their servers' addresses, in order: what wkctl asks for when it
/// reads its own rendered template.
pub fn upstream_servers(text: &str) -> Result<Vec<(String, Vec<String>)>, EditError> {
    let ds = parse(text).map_err(EditError::NginxParse)?;
    let mut ups = Vec::new();
    upstreams(&ds, &mut ups);
    Ok(ups
        .iter()
        .map(|u| {
            (
                u.words.get(1).cloned().unwrap_or_default(),
                u.block
                    .iter()
                    .flatten()
                    .filter(|d| d.words.first().map(String::as_str) == Some("server"))
                    .filter_map(|d| d.words.get(1).cloned())
                    .collect(),
            )
        })
        .collect())
}

/// Where an upstream's new `server` lines go (after its last one, or before the `}` of an
/// empty one) and their indentation.
fn insertion_point(
    text: &str,
    u: &Directive,
    present: &[&Directive],
    name: &str,
) -> Result<(usize, String), EditError> {
    Ok(match present.last() {
        Some(last) => {
            let line_start = text[..last.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let line_end = text[last.end..]
                .find('\n')
                .map(|i| last.end + i)
                .unwrap_or(text.len());
            let before = &text[line_start..last.start];
            let after = text[last.end..line_end].trim_start();
            if !before.trim().is_empty() || !(after.is_empty() || after.starts_with('#')) {
                return Err(EditError::Unsafe(format!(
                    "in `upstream {name}`, the line of `server {}` holds another directive too",
                    last.words.get(1).map(String::as_str).unwrap_or("")
                )));
            }
            (line_end, before.to_string())
        }
        None => {
            // An empty upstream: the new lines go before its `}`, one level deeper.
            let line_start = text[..u.close].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let before = &text[line_start..u.close];
            if !before.trim().is_empty() {
                return Err(EditError::Unsafe(format!(
                    "`upstream {name}` is written on one line"
                )));
            }
            (line_start.saturating_sub(1), format!("{before}    "))
        }
    })
}

/// Makes every upstream of `wanted` hold its servers (adding the missing ones after the last
/// `server` line). Everything else, including servers wkctl did not ask for, stays as it is.
pub fn set_upstream_servers(
    text: &str,
    wanted: &[(String, Vec<String>)],
) -> Result<String, EditError> {
    crate::edit::keeping_endings(text, |t| set_upstream_servers_lf(t, wanted))
}

fn set_upstream_servers_lf(
    text: &str,
    wanted: &[(String, Vec<String>)],
) -> Result<String, EditError> {
    let ds = parse(text).map_err(EditError::NginxParse)?;
    let mut ups = Vec::new();
    upstreams(&ds, &mut ups);
    // (byte offset, text to insert), applied back to front.
    let mut inserts: Vec<(usize, String)> = Vec::new();
    for (name, servers) in wanted {
        let found: Vec<&&Directive> = ups
            .iter()
            .filter(|u| u.words.get(1) == Some(name))
            .collect();
        let u = match found.as_slice() {
            [u] => *u,
            [] => {
                return Err(EditError::Unsafe(format!(
                    "nginx.conf has no `upstream {name}` block, which wkctl adds members to; add it (with the running members) or move the file away so wkctl writes its own"
                )))
            }
            _ => {
                return Err(EditError::Unsafe(format!(
                    "nginx.conf defines `upstream {name}` {} times",
                    found.len()
                )))
            }
        };
        let children = u.block.as_deref().unwrap_or_default();
        if let Some(inc) = children
            .iter()
            .find(|d| d.words.first().map(String::as_str) == Some("include"))
        {
            return Err(EditError::Unsafe(format!(
                "`upstream {name}` includes {}: its servers are not all in this file",
                inc.words.get(1).map(String::as_str).unwrap_or("a file")
            )));
        }
        let present: Vec<&Directive> = children
            .iter()
            .filter(|d| d.words.first().map(String::as_str) == Some("server"))
            .collect();
        let missing: Vec<&String> = servers
            .iter()
            .filter(|s| !present.iter().any(|d| d.words.get(1) == Some(*s)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        // Parameters of a member line already there (weights and failure limits apply to every
        // member alike); `backup` and `down` are one server's state, not a default. Only plain
        // `name` or `name=value` words are copied: a quoted or odd one could not be written
        // back as it was read.
        let params: Vec<&str> = present
            .iter()
            .rev()
            .find(|d| d.words.get(1).is_some_and(|a| servers.contains(a)))
            .map(|d| {
                d.words[2..]
                    .iter()
                    .map(String::as_str)
                    .filter(|p| *p != "backup" && *p != "down")
                    .filter(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "=_.:-".contains(c))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let params = params.iter().map(|p| format!(" {p}")).collect::<String>();
        let (at, indent) = insertion_point(text, u, &present, name)?;
        let mut add = String::new();
        for s in missing {
            add.push_str(&format!("\n{indent}server {s}{params};"));
        }
        inserts.push((at, add));
    }
    inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut out = text.to_string();
    for (at, add) in inserts {
        out.insert_str(at, &add);
    }
    // The result must read back with exactly the servers asked for added.
    let check = upstream_servers(&out)?;
    for (name, servers) in wanted {
        let got = check.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        if !got.is_some_and(|g| servers.iter().all(|s| g.contains(s))) {
            return Err(EditError::Unsafe(format!(
                "the edit of `upstream {name}` did not read back as intended"
            )));
        }
    }
    Ok(out)
}
