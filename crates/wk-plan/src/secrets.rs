//! Secrets hidden in what is shown to the operator: one function for every place that shows a
//! file's text (a dry run's diffs, the plan's files). The hosts get the real values.

/// Whether a setting's key names a secret: it holds SECRET, TOKEN or PASSWORD.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    ["SECRET", "TOKEN", "PASSWORD"]
        .iter()
        .any(|w| key.contains(w))
}

/// The text with the values of secret settings hidden: `KEY=value` and `KEY: value` where the
/// key (letters, digits, `_`) names a secret ([`secret_key`]). A quoted value (`"…"`, `'…'`)
/// is hidden up to its closing quote, spaces and all; an unquoted one up to the quote that closes
/// the item it stands in (`- "KEY=value"`), a `,`, a ` #` comment or the end of the line.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while let Some(i) = rest.find(['=', ':']) {
            let (head, tail) = rest.split_at(i);
            let key_start = head
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |k| k + 1);
            let sep = if tail.starts_with(": ") { 2 } else { 1 };
            let secret =
                secret_key(&head[key_start..]) && (tail.starts_with('=') || tail.starts_with(": "));
            out.push_str(head);
            out.push_str(&tail[..sep]);
            rest = &tail[sep..];
            if secret {
                rest = mask_value(rest, &mut out);
            }
        }
        out.push_str(rest);
    }
    out
}

/// Writes the value at the start of `rest` hidden to `out`; returns what follows it.
fn mask_value<'a>(rest: &'a str, out: &mut String) -> &'a str {
    let v = rest.trim_start_matches(' ');
    out.push_str(&rest[..rest.len() - v.len()]);
    let (body, after) = match v.chars().next() {
        Some(q @ ('"' | '\'')) => {
            out.push(q);
            let inner = &v[1..];
            let end = inner
                .find(q)
                .unwrap_or(inner.trim_end_matches(['\n', '\r']).len());
            (&inner[..end], &inner[end..])
        }
        _ => {
            let end = [v.find(['"', '\'', ',', '\n', '\r']), v.find(" #")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(v.len());
            let body = v[..end].trim_end_matches(' ');
            (body, &v[body.len()..])
        }
    };
    if !body.is_empty() {
        out.push_str("********");
    }
    after
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn every_form_of_a_secret_setting_is_hidden() {
        let cases = [
            // A list item, double-quoted as a whole.
            (
                "- \"WK_JWT_SECRET=s3cr3t-value\"\n",
                "- \"WK_JWT_SECRET=********\"\n",
            ),
            // A list item with a value of spaces, quoted as a whole.
            (
                "- \"WK_X_PASSWORD=pass word here\"\n",
                "- \"WK_X_PASSWORD=********\"\n",
            ),
            // A list item whose value is quoted.
            (
                "- WK_JWT_SECRET=\"quoted value\"\n",
                "- WK_JWT_SECRET=\"********\"\n",
            ),
            ("- 'WK_JWT_SECRET=single'\n", "- 'WK_JWT_SECRET=********'\n"),
            // A map entry: plain, double-quoted, single-quoted, with spaces, with a comment.
            ("WK_MANAGERTOKEN: abc123\n", "WK_MANAGERTOKEN: ********\n"),
            (
                "WK_MANAGERTOKEN: \"tok\"\n",
                "WK_MANAGERTOKEN: \"********\"\n",
            ),
            (
                "WK_MANAGERTOKEN: 'tok en'\n",
                "WK_MANAGERTOKEN: '********'\n",
            ),
            ("WK_MANAGERTOKEN: a b c\n", "WK_MANAGERTOKEN: ********\n"),
            (
                "WK_MANAGERTOKEN: abc # the token\n",
                "WK_MANAGERTOKEN: ******** # the token\n",
            ),
            // A diff line, a CRLF line, several settings on one line.
            (
                "+      WK_JWT_SECRET: x\r\n",
                "+      WK_JWT_SECRET: ********\r\n",
            ),
            (
                " password=hunter2, user=ops\n",
                " password=********, user=ops\n",
            ),
            // Not secrets: other settings, keys without a value.
            (
                "- \"WK_CLUSTER_SEED=1001@10.0.0.1:11110\"\n",
                "- \"WK_CLUSTER_SEED=1001@10.0.0.1:11110\"\n",
            ),
            (
                "services:\n  a: b\nsecrets:\n",
                "services:\n  a: b\nsecrets:\n",
            ),
            ("WK_JWT_SECRET:\n", "WK_JWT_SECRET:\n"),
        ];
        for (text, want) in cases {
            assert_eq!(mask_secrets(text), want, "{text:?}");
        }
    }
}
