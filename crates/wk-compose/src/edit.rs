//! The edits: environment entries of one service, one whole service, Prometheus scrape jobs.

use crate::value::{parse, Yaml};

/// Picks a compose service: by name, or by the last path component of its image's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    ImageName(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the file does not parse as YAML: {0}")]
    Parse(String),
    #[error("the file does not parse as nginx reads it: {0}")]
    NginxParse(String),
    #[error("{0}")]
    NotFound(String),
    #[error("cannot edit this file safely: {0}; edit it by hand (wkctl changed nothing)")]
    Unsafe(String),
}

// ---------------------------------------------------------------------------------------------
// A scanner of block-style YAML lines.

#[derive(Debug, Clone)]
struct Line {
    indent: usize,
    /// The line without its comment, right-trimmed; empty for blank and comment lines.
    code: String,
}

fn comment_start(line: &str) -> Option<usize> {
    let (mut single, mut double) = (false, false);
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return Some(i),
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    None
}

fn scan(text: &str) -> Vec<Line> {
    text.split('\n')
        .map(|l| {
            let code = match comment_start(l) {
                Some(i) => &l[..i],
                None => l,
            };
            let code = code.trim_end();
            let indent = code.len() - code.trim_start().len();
            Line {
                indent,
                code: code.trim_start().to_string(),
            }
        })
        .collect()
}

fn blank(l: &Line) -> bool {
    l.code.is_empty()
}

/// `key:` or `key: value` (plain or quoted key): the key and what follows the colon.
fn key_of(code: &str) -> Option<(String, &str)> {
    let (k, rest) = if let Some(r) = code.strip_prefix('"') {
        let end = r.find('"')?;
        (r[..end].to_string(), r[end + 1..].strip_prefix(':')?)
    } else if let Some(r) = code.strip_prefix('\'') {
        let end = r.find('\'')?;
        (r[..end].to_string(), r[end + 1..].strip_prefix(':')?)
    } else {
        let i = code
            .find(": ")
            .or_else(|| code.ends_with(':').then(|| code.len() - 1))?;
        (code[..i].to_string(), &code[i + 1..])
    };
    Some((k, rest.trim()))
}

/// The lines under the key at line `i`: `(first, end)`, end exclusive, trailing blanks left out.
fn block(lines: &[Line], i: usize) -> (usize, usize) {
    let k = lines[i].indent;
    let mut last = i;
    let mut j = i + 1;
    let mut same_indent_seq = true;
    while j < lines.len() {
        let l = &lines[j];
        if blank(l) {
            j += 1;
            continue;
        }
        if l.indent > k {
            same_indent_seq = false;
        } else if !(l.indent == k && same_indent_seq && (l.code.starts_with("- ") || l.code == "-"))
        {
            break;
        }
        last = j;
        j += 1;
    }
    (i + 1, last + 1)
}

/// The key lines directly under a block (at its first child's indent).
fn child_keys(lines: &[Line], (from, to): (usize, usize)) -> Vec<(usize, String)> {
    let Some(indent) = lines[from..to].iter().find(|l| !blank(l)).map(|l| l.indent) else {
        return Vec::new();
    };
    (from..to)
        .filter(|&j| lines[j].indent == indent && !blank(&lines[j]))
        .filter_map(|j| key_of(&lines[j].code).map(|(k, _)| (j, k)))
        .collect()
}

fn top_key(lines: &[Line], key: &str) -> Option<usize> {
    (0..lines.len())
        .find(|&j| lines[j].indent == 0 && key_of(&lines[j].code).is_some_and(|(k, _)| k == key))
}

fn join(lines: &[&str]) -> String {
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Scalars as the operator wrote them.

/// How a scalar was written: `"…"`, `'…'` or plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Double,
    Single,
    Plain,
}

fn quote_of(s: &str) -> Quote {
    match s.chars().next() {
        Some('"') => Quote::Double,
        Some('\'') => Quote::Single,
        _ => Quote::Plain,
    }
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.starts_with(|c: char| "!&*{}[]|>'\"%@`#,?:-".contains(c) || c.is_whitespace())
        || s.ends_with(char::is_whitespace)
}

fn render(s: &str, q: Quote) -> String {
    let q = if q == Quote::Plain && needs_quotes(s) {
        Quote::Double
    } else {
        q
    };
    match q {
        Quote::Double => {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\t' => o.push_str("\\t"),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        Quote::Single => format!("'{}'", s.replace('\'', "''")),
        Quote::Plain => s.to_string(),
    }
}

/// Replaces the scalar that starts at byte `at` of `line` (ends before a comment or line end).
fn replace_scalar(line: &str, at: usize, new: &str) -> String {
    let rest = &line[at..];
    let end = comment_start(rest)
        .map(|c| rest[..c].trim_end().len())
        .unwrap_or(rest.trim_end().len());
    format!("{}{}{}", &line[..at], new, &rest[end..])
}

// ---------------------------------------------------------------------------------------------
// Finding services.

fn image_name(image: &str) -> &str {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    repo.rsplit('/').next().unwrap_or(repo)
}

/// The name of the service the selector picks.
pub fn find_service(text: &str, sel: &Selector) -> Result<String, EditError> {
    let doc = parse(text).map_err(EditError::Parse)?;
    let Some(Yaml::Map(services)) = doc.get("services") else {
        return Err(EditError::NotFound(
            "the file has no `services:` mapping".into(),
        ));
    };
    match sel {
        Selector::Name(n) => services
            .iter()
            .find(|(k, _)| k == n)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| EditError::NotFound(format!("no service `{n}`"))),
        Selector::ImageName(want) => {
            let found: Vec<&String> = services
                .iter()
                .filter(|(_, v)| {
                    v.get("image")
                        .and_then(Yaml::scalar)
                        .is_some_and(|i| image_name(&i) == want)
                })
                .map(|(k, _)| k)
                .collect();
            match found.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(EditError::NotFound(format!(
                    "no service runs an image …/{want} (services: {})",
                    services.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
                ))),
                many => Err(EditError::NotFound(format!(
                    "several services run an image …/{want}: {}; wkctl cannot tell which is the node",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

/// A service's environment as `(name, value)`, whichever form it is written in: each name
/// once, in the order names first appear, with the value Compose uses (a list that sets a name
/// twice: the last one).
pub fn service_env(doc: &Yaml, service: &str) -> Vec<(String, String)> {
    let written: Vec<(String, String)> = match doc
        .get("services")
        .and_then(|s| s.get(service))
        .and_then(|s| s.get("environment"))
    {
        Some(Yaml::Seq(items)) => items
            .iter()
            .filter_map(Yaml::scalar)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s, String::new()),
            })
            .collect(),
        Some(Yaml::Map(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.scalar().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in written {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

fn service_block(lines: &[Line], service: &str) -> Result<(usize, (usize, usize)), EditError> {
    let s = top_key(lines, "services").ok_or_else(|| {
        EditError::Unsafe("no block-style `services:` key at the top level".into())
    })?;
    if !key_of(&lines[s].code).is_some_and(|(_, v)| v.is_empty()) {
        return Err(EditError::Unsafe(
            "`services:` is written in flow style".into(),
        ));
    }
    let svc_block = block(lines, s);
    let (line, _) = child_keys(lines, svc_block)
        .into_iter()
        .find(|(_, k)| k == service)
        .ok_or_else(|| {
            EditError::Unsafe(format!(
                "service `{service}` is not a block-style key under `services:`"
            ))
        })?;
    Ok((line, block(lines, line)))
}

fn verify(new_text: &str, expected: &Yaml) -> Result<(), EditError> {
    let got = parse(new_text)
        .map_err(|e| EditError::Unsafe(format!("the edited file would not parse ({e})")))?;
    if &got != expected {
        return Err(EditError::Unsafe(
            "the edit would change more than the intended entries (anchors, merge keys or an unusual layout)".into(),
        ));
    }
    Ok(())
}

/// Runs an edit of a file whose every line ends in CRLF (written on Windows) on its LF text,
/// and gives the result the file's endings back, so the lines an edit adds match the others. A
/// file with LF or mixed endings is edited as it is (its final newline, or lack of one, stays).
pub(crate) fn keeping_endings(
    text: &str,
    edit: impl FnOnce(&str) -> Result<String, EditError>,
) -> Result<String, EditError> {
    let lines = text.matches('\n').count();
    let new = if lines == 0 || text.matches("\r\n").count() != lines {
        edit(text)?
    } else {
        edit(&text.replace("\r\n", "\n"))?.replace('\n', "\r\n")
    };
    // A file without a final newline keeps that lack, whatever was added at its end.
    if text.is_empty() || text.ends_with('\n') {
        return Ok(new);
    }
    let end = new
        .strip_suffix("\r\n")
        .or_else(|| new.strip_suffix('\n'))
        .unwrap_or(&new);
    Ok(end.to_string())
}

// ---------------------------------------------------------------------------------------------
// Environment entries.

/// Sets environment entries of the selected service, keeping everything else. Returns the new
/// text (equal to `text` when every entry already has its value).
pub fn set_env(text: &str, sel: &Selector, env: &[(String, String)]) -> Result<String, EditError> {
    keeping_endings(text, |t| set_env_lf(t, sel, env))
}

fn set_env_lf(text: &str, sel: &Selector, env: &[(String, String)]) -> Result<String, EditError> {
    let service = find_service(text, sel)?;
    let doc = parse(text).map_err(EditError::Parse)?;
    let current = service_env(&doc, &service);
    let todo: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, v)| !current.iter().any(|(ck, cv)| ck == k && cv == v))
        .collect();
    if todo.is_empty() {
        return Ok(text.to_string());
    }
    let lines = scan(text);
    let mut raw: Vec<String> = text.split('\n').map(str::to_string).collect();
    let (svc_line, svc) = service_block(&lines, &service)?;
    let env_key = child_keys(&lines, svc)
        .into_iter()
        .find(|(_, k)| k == "environment")
        .map(|(j, _)| j);
    // What the document must be after the edit: the new text is checked against it.
    let mut expected = doc.clone();
    let exp_env = expected_env(&mut expected, &service)?;
    match env_key {
        None => {
            // No environment yet: a list after the service's last line.
            let indent = child_keys(&lines, svc)
                .first()
                .map(|(j, _)| lines[*j].indent)
                .unwrap_or(lines[svc_line].indent + 2);
            let mut add = vec![format!("{}environment:", " ".repeat(indent))];
            for (k, v) in &todo {
                add.push(format!(
                    "{}- {}",
                    " ".repeat(indent + 2),
                    render(&format!("{k}={v}"), Quote::Double)
                ));
            }
            let at = svc.1.max(svc_line + 1);
            for (n, l) in add.into_iter().enumerate() {
                raw.insert(at + n, l);
            }
            for (k, v) in &todo {
                set_expected(exp_env, k, v, &service)?;
            }
        }
        Some(ek) => {
            let (_, inline) = key_of(&lines[ek].code).expect("a key line");
            if !inline.is_empty() {
                return Err(EditError::Unsafe(format!("the environment of service `{service}` is not written as a block (flow style or an alias)")));
            }
            let eb = block(&lines, ek);
            let items: Vec<usize> = (eb.0..eb.1).filter(|&j| !blank(&lines[j])).collect();
            // A list of `K=V` items, or a mapping.
            let list = items
                .first()
                .is_some_and(|&j| lines[j].code.starts_with("- "));
            let mut inserted = 0;
            for (k, v) in &todo {
                if !set_env_line(&lines, &mut raw, &items, list, (k, v)) {
                    // A new entry after the last one, in the style of the last one.
                    let last = *items.last().ok_or_else(|| {
                        EditError::Unsafe(format!("the environment of `{service}` is empty"))
                    })?;
                    raw.insert(last + inserted + 1, env_line_like(&lines[last], list, k, v));
                    inserted += 1;
                }
                set_expected(exp_env, k, v, &service)?;
            }
        }
    }
    let new_text = raw.join("\n");
    verify(&new_text, &expected)?;
    Ok(new_text)
}

/// The environment of `service` in a document (made an empty list when it has none).
fn expected_env<'d>(doc: &'d mut Yaml, service: &str) -> Result<&'d mut Yaml, EditError> {
    let exp_svc = match doc {
        Yaml::Map(top) => top
            .iter_mut()
            .find(|(k, _)| k == "services")
            .map(|(_, v)| v),
        _ => None,
    };
    let Some(Yaml::Map(svcs)) = exp_svc else {
        return Err(EditError::Unsafe("`services` is not a mapping".into()));
    };
    let svc_v = &mut svcs
        .iter_mut()
        .find(|(k, _)| *k == service)
        .expect("found above")
        .1;
    let Yaml::Map(fields) = svc_v else {
        return Err(EditError::Unsafe(format!(
            "service `{service}` is not a mapping"
        )));
    };
    if !fields.iter().any(|(k, _)| k == "environment") {
        fields.push(("environment".into(), Yaml::Seq(Vec::new())));
    }
    Ok(&mut fields
        .iter_mut()
        .find(|(k, _)| k == "environment")
        .expect("just ensured")
        .1)
}

/// Sets `k` to `v` in an environment as a document holds it (a list of `K=V` or a mapping).
fn set_expected(env: &mut Yaml, k: &str, v: &str, service: &str) -> Result<(), EditError> {
    match env {
        Yaml::Seq(items) => {
            // Every item that sets it (a name set twice must not keep its old value last).
            let mut found = false;
            for y in items.iter_mut().filter(|y| {
                y.scalar()
                    .is_some_and(|s| s.split_once('=').map(|x| x.0) == Some(k) || s == k)
            }) {
                *y = Yaml::Str(format!("{k}={v}"));
                found = true;
            }
            if !found {
                items.push(Yaml::Str(format!("{k}={v}")));
            }
        }
        Yaml::Map(m) => match m.iter_mut().find(|(mk, _)| mk == k) {
            Some((_, y)) => *y = Yaml::Str(v.to_string()),
            None => m.push((k.to_string(), Yaml::Str(v.to_string()))),
        },
        _ => {
            return Err(EditError::Unsafe(format!(
                "the environment of `{service}` is neither a list nor a mapping"
            )))
        }
    }
    Ok(())
}

/// Gives `k` the value `v` on every environment item line that sets it, each in its own
/// quoting; false when no item sets `k`.
fn set_env_line(
    lines: &[Line],
    raw: &mut [String],
    items: &[usize],
    list: bool,
    (k, v): (&str, &str),
) -> bool {
    let mut found = false;
    for &j in items {
        let line = raw[j].clone();
        if list {
            let at = lines[j].indent + 2;
            // A bare `-` (an empty item) is no entry of ours.
            let item = lines[j].code.get(2..).unwrap_or("");
            let unq = match parse(item) {
                Ok(y) => y.scalar().unwrap_or_default(),
                Err(_) => continue,
            };
            if unq.split_once('=').map(|(ik, _)| ik) == Some(k) || unq == k {
                raw[j] = replace_scalar(&line, at, &render(&format!("{k}={v}"), quote_of(item)));
                found = true;
            }
        } else if let Some((ik, val)) = key_of(&lines[j].code) {
            if ik == k {
                let at = line.len() - line.trim_start().len() + lines[j].code.len() - val.len();
                raw[j] = replace_scalar(&line, at, &render(v, quote_of(val)));
                found = true;
            }
        }
    }
    found
}

/// A new environment entry written as `last` is (a list item or a key, with its quoting).
fn env_line_like(last: &Line, list: bool, k: &str, v: &str) -> String {
    let ind = " ".repeat(last.indent);
    if list {
        format!(
            "{ind}- {}",
            render(
                &format!("{k}={v}"),
                quote_of(last.code.get(2..).unwrap_or(""))
            )
        )
    } else {
        let q = key_of(&last.code)
            .map(|(_, val)| quote_of(val))
            .unwrap_or(Quote::Plain);
        format!("{ind}{k}: {}", render(v, q))
    }
}

// ---------------------------------------------------------------------------------------------
// A whole service.

/// Adds the service `name` with `body` (a YAML mapping at column 0), or replaces it when it is
/// there and different. Other services, comments and order stay.
pub fn set_service(text: &str, name: &str, body: &str) -> Result<String, EditError> {
    keeping_endings(text, |t| set_service_lf(t, name, body))
}

fn set_service_lf(text: &str, name: &str, body: &str) -> Result<String, EditError> {
    let doc = parse(text).map_err(EditError::Parse)?;
    let want = parse(body).map_err(|e| EditError::Parse(format!("the service body: {e}")))?;
    let current = doc.get("services").and_then(|s| s.get(name));
    if current == Some(&want) {
        return Ok(text.to_string());
    }
    let lines = scan(text);
    let raw: Vec<&str> = text.split('\n').collect();
    let s = top_key(&lines, "services").ok_or_else(|| {
        EditError::Unsafe("no block-style `services:` key at the top level".into())
    })?;
    let sb = block(&lines, s);
    let keys = child_keys(&lines, sb);
    let svc_indent = keys.first().map(|(j, _)| lines[*j].indent).unwrap_or(2);
    let step = keys
        .first()
        .and_then(|(j, _)| {
            child_keys(&lines, block(&lines, *j))
                .first()
                .map(|(c, _)| lines[*c].indent - svc_indent)
        })
        .filter(|s| *s > 0)
        .unwrap_or(2);
    let mut new_block = vec![format!("{}{name}:", " ".repeat(svc_indent))];
    for l in body.trim_end().split('\n') {
        new_block.push(if l.trim().is_empty() {
            String::new()
        } else {
            format!("{}{l}", " ".repeat(svc_indent + step))
        });
    }
    let mut out: Vec<String> = Vec::new();
    match keys.iter().find(|(_, k)| k == name) {
        Some((j, _)) => {
            let (_, end) = block(&lines, *j);
            out.extend(raw[..*j].iter().map(|s| s.to_string()));
            out.extend(new_block);
            out.extend(raw[end..].iter().map(|s| s.to_string()));
        }
        None => {
            let at = sb.1.max(s + 1);
            out.extend(raw[..at].iter().map(|s| s.to_string()));
            out.extend(new_block);
            out.extend(raw[at..].iter().map(|s| s.to_string()));
        }
    }
    let new_text = out.join("\n");
    let mut expected = doc.clone();
    if let Yaml::Map(top) = &mut expected {
        if let Some((_, Yaml::Map(svcs))) = top.iter_mut().find(|(k, _)| k == "services") {
            match svcs.iter_mut().find(|(k, _)| k == name) {
                Some((_, v)) => *v = want,
                None => svcs.push((name.to_string(), want)),
            }
        }
    }
    verify(&new_text, &expected)?;
    Ok(new_text)
}

// ---------------------------------------------------------------------------------------------
// Prometheus scrape jobs.

fn job_key(job: &Yaml) -> (Option<String>, Vec<String>, Option<String>) {
    let name = job.get("job_name").and_then(Yaml::scalar);
    let mut targets = Vec::new();
    let mut id = None;
    if let Some(Yaml::Seq(cfgs)) = job.get("static_configs") {
        for c in cfgs {
            if let Some(Yaml::Seq(ts)) = c.get("targets") {
                targets.extend(ts.iter().filter_map(Yaml::scalar));
            }
            if let Some(i) = c
                .get("labels")
                .and_then(|l| l.get("id"))
                .and_then(Yaml::scalar)
            {
                id = Some(i);
            }
        }
    }
    (name, targets, id)
}

/// The first line of each job of `scrape_configs`' block `b`, and their indent. The lines must
/// show the `jobs` jobs the document has, one item line each (a quoted value over several lines
/// can look like more, or fewer): otherwise the file is not edited.
fn job_items(
    lines: &[Line],
    b: (usize, usize),
    jobs: usize,
) -> Result<(Vec<usize>, usize), EditError> {
    let items: Vec<usize> = (b.0..b.1)
        .filter(|&j| lines[j].code.starts_with("- "))
        .collect();
    let item_indent = items.first().map(|&j| lines[j].indent).unwrap_or(2);
    let items: Vec<usize> = items
        .into_iter()
        .filter(|&j| lines[j].indent == item_indent)
        .collect();
    if items.len() != jobs {
        return Err(EditError::Unsafe(format!(
            "`scrape_configs` holds {jobs} jobs, but its lines show {} (a value over several lines?)",
            items.len()
        )));
    }
    Ok((items, item_indent))
}

/// Adds scrape jobs (`jobs`: a YAML list at column 0). A job already there with the same `id`
/// label, or by name, or by the same targets (a job an operator wrote by hand), is left alone
/// when it is the node's or the same, and replaced when only its name matches and its content
/// differs (a stale job of ours).
pub fn set_prometheus_jobs(text: &str, jobs: &str) -> Result<String, EditError> {
    keeping_endings(text, |t| set_prometheus_jobs_lf(t, jobs))
}

fn set_prometheus_jobs_lf(text: &str, jobs: &str) -> Result<String, EditError> {
    let doc = parse(text).map_err(EditError::Parse)?;
    let Yaml::Seq(wanted) = parse(jobs).map_err(|e| EditError::Parse(format!("the jobs: {e}")))?
    else {
        return Err(EditError::Parse("the jobs are not a list".into()));
    };
    let existing: Vec<Yaml> = match doc.get("scrape_configs") {
        Some(Yaml::Seq(s)) => s.clone(),
        None | Some(Yaml::Null) => Vec::new(),
        Some(_) => return Err(EditError::Unsafe("`scrape_configs` is not a list".into())),
    };
    let job_lines: Vec<&str> = jobs.trim_end().split('\n').collect();
    let plan = match_jobs(&wanted, &existing);
    if plan.is_empty() {
        return Ok(text.to_string());
    }
    // Each wanted job's own lines in `jobs`.
    let jl = scan(jobs.trim_end());
    let starts: Vec<usize> = (0..jl.len())
        .filter(|&j| jl[j].indent == 0 && jl[j].code.starts_with("- "))
        .collect();
    let job_text = |w: usize, indent: usize| -> Vec<String> {
        let from = starts[w];
        let to = starts.get(w + 1).copied().unwrap_or(job_lines.len());
        job_lines[from..to]
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{}{l}", " ".repeat(indent)))
            .collect()
    };
    let lines = scan(text);
    let mut raw: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut expected = doc.clone();
    match top_key(&lines, "scrape_configs") {
        None => {
            if raw.last().is_some_and(|l| l.is_empty()) {
                raw.pop();
            }
            raw.push("scrape_configs:".into());
            for (w, _) in &plan {
                raw.extend(job_text(*w, 2));
            }
            raw.push(String::new());
        }
        Some(sc) => {
            if !key_of(&lines[sc].code).is_some_and(|(_, v)| v.is_empty()) {
                return Err(EditError::Unsafe(
                    "`scrape_configs` is written in flow style".into(),
                ));
            }
            let b = block(&lines, sc);
            let (items, item_indent) = job_items(&lines, b, existing.len())?;
            // Replacements first (from the bottom, so line numbers hold), then additions.
            let mut replace: Vec<(usize, usize, usize)> = plan
                .iter()
                .filter_map(|(w, e)| {
                    e.map(|e| (items[e], items.get(e + 1).copied().unwrap_or(b.1), *w))
                })
                .collect();
            replace.sort_by_key(|r| std::cmp::Reverse(r.0));
            for (from, to, w) in replace {
                let mut to = to;
                while to > from + 1 && lines[to - 1].code.is_empty() {
                    to -= 1;
                }
                raw.splice(from..to, job_text(w, item_indent));
            }
            let shift: isize = raw.len() as isize - text.split('\n').count() as isize;
            let at = (b.1 as isize + shift) as usize;
            let mut add = Vec::new();
            for (w, e) in &plan {
                if e.is_none() {
                    add.extend(job_text(*w, item_indent));
                }
            }
            raw.splice(at..at, add);
        }
    }
    if let Yaml::Map(top) = &mut expected {
        let mut list = existing.clone();
        for (w, e) in &plan {
            match e {
                Some(i) => list[*i] = wanted[*w].clone(),
                None => list.push(wanted[*w].clone()),
            }
        }
        match top.iter_mut().find(|(k, _)| k == "scrape_configs") {
            Some((_, v)) => *v = Yaml::Seq(list),
            None => top.push(("scrape_configs".into(), Yaml::Seq(list))),
        }
    }
    let new_text = join(&raw.iter().map(String::as_str).collect::<Vec<_>>());
    verify(&new_text, &expected)?;
    Ok(new_text)
}

/// Which wanted job goes where: `(wanted, Some(existing))` replaces a stale job of ours,
/// `(wanted, None)` is added; a wanted job already there (or an operator's own job for the
/// node) is not listed.
fn match_jobs(wanted: &[Yaml], existing: &[Yaml]) -> Vec<(usize, Option<usize>)> {
    let mut plan = Vec::new();
    for (w, job) in wanted.iter().enumerate() {
        let (name, targets, id) = job_key(job);
        // A job with the node's `id` label is that node's job (the admin UI finds its metrics by
        // that label), whatever its name or target: an operator's own job stays as it is.
        let by_id = id
            .as_ref()
            .and_then(|_| existing.iter().position(|e| job_key(e).2 == id));
        let same = by_id.or_else(|| {
            existing.iter().position(|e| {
                let (en, et, eid) = job_key(e);
                en == name || (!targets.is_empty() && et == targets && eid == id)
            })
        });
        match same {
            Some(_) if by_id.is_some() => {}
            Some(i) if existing[i] == *job || job_key(&existing[i]).0 != name => {}
            other => plan.push((w, other)),
        }
    }
    plan
}

/// The host paths the services bind-mount, as written (`./nginx.conf`, `/etc/x`, `~/y`):
/// short syntax (`SRC:DST[:MODE]` whose SRC is a path, not a volume name) and long syntax
/// (`type: bind`, `source:`). Named volumes are left out.
pub fn bind_sources(text: &str) -> Result<Vec<String>, EditError> {
    let doc = parse(text).map_err(EditError::Parse)?;
    let mut out = Vec::new();
    let Some(Yaml::Map(services)) = doc.get("services") else {
        return Ok(out);
    };
    for (_, svc) in services {
        let Some(Yaml::Seq(volumes)) = svc.get("volumes") else {
            continue;
        };
        for v in volumes {
            let source = match v {
                Yaml::Map(_) => {
                    if v.get("type").and_then(Yaml::scalar).as_deref() != Some("bind") {
                        continue;
                    }
                    v.get("source").and_then(Yaml::scalar)
                }
                other => other
                    .scalar()
                    .and_then(|s| s.split_once(':').map(|(src, _)| src.to_string())),
            };
            if let Some(src) =
                source.filter(|s| s.starts_with('.') || s.starts_with('/') || s.starts_with('~'))
            {
                out.push(src);
            }
        }
    }
    Ok(out)
}
