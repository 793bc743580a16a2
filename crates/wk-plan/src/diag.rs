//! Diagnostics that point at a place in a file the operator wrote.

use std::fmt;

/// One problem found in an input file, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file as the operator named it.
    pub file: String,
    /// 1-based line; 0 when the place is not known.
    pub line: u64,
    /// 1-based column; 0 when the place is not known.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// What the operator should do.
    pub fix: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &str, at: Option<serde_saphyr::Location>, message: impl Into<String>) -> Self {
        let (line, column) = at.map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: {}", self.file, self.message)?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// A list of diagnostics, shown one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Turns a serde-saphyr error into our diagnostic: its location, and a message without the
/// library's own snippet and advice about its options.
pub fn from_yaml_error(file: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let raw = err.without_snippet().to_string();
    // serde-saphyr appends " at line L, column C"; we show the place in front instead.
    let message = match raw.rfind(" at line ") {
        Some(i) if raw[i..].contains(", column ") => raw[..i].to_string(),
        _ => raw,
    };
    let loc = err.location().filter(|l| l.line() > 0);
    if let Some(key) = message
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split(',').next())
    {
        return Diagnostic::new(
            file,
            loc,
            format!("key `{key}` appears twice in one mapping"),
        )
        .fix("keep one of the two entries: a repeated key would silently override the first");
    }
    if message.starts_with("unknown field") {
        return Diagnostic::new(file, loc, message)
            .fix("remove the field or correct its spelling (docs/inventory.md lists every field)");
    }
    if message.starts_with("missing field") {
        return Diagnostic::new(file, loc, message)
            .fix("add the field (docs/inventory.md lists every field)");
    }
    if let Some(ty) = message.strip_prefix("invalid ") {
        if matches!(ty, "i64" | "u64" | "i32" | "u32" | "u16" | "u8") {
            return Diagnostic::new(file, loc, "expected a whole number here")
                .fix("write the number without quotes, e.g. `id: 1002`");
        }
    }
    Diagnostic::new(file, loc, message).fix("correct the YAML at this place")
}
