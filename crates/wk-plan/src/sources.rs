//! Where the playbook and templates come from: built into the binary, or a directory the
//! operator points at to customise them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The playbook and templates a plan is built from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// How the playbook is named in messages.
    pub playbook_name: String,
    pub playbook: String,
    /// Template name (file name) to its text.
    pub templates: BTreeMap<String, String>,
    /// The playbook file and templates directory they were read from (absolute), when not
    /// built in: a journal records them, so `wkctl resume` reads the same files again.
    pub playbook_path: Option<PathBuf>,
    pub templates_path: Option<PathBuf>,
}

const EMBEDDED_TEMPLATES: [(&str, &str); 4] = [
    (
        "node-compose.yml.tera",
        include_str!("../../../templates/node-compose.yml.tera"),
    ),
    (
        "nginx.conf.tera",
        include_str!("../../../templates/nginx.conf.tera"),
    ),
    (
        "nginx-service.yml.tera",
        include_str!("../../../templates/nginx-service.yml.tera"),
    ),
    (
        "prometheus-jobs.yml.tera",
        include_str!("../../../templates/prometheus-jobs.yml.tera"),
    ),
];

const EMBEDDED_PLAYBOOK: &str = include_str!("../../../playbooks/expand.yml");

impl Sources {
    /// The playbook and templates this build of wkctl carries (`playbooks/`, `templates/`).
    pub fn embedded() -> Sources {
        Sources {
            playbook_name: "playbooks/expand.yml (built in)".into(),
            playbook: EMBEDDED_PLAYBOOK.into(),
            templates: EMBEDDED_TEMPLATES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            playbook_path: None,
            templates_path: None,
        }
    }

    /// The built-in sources, with the playbook and/or templates replaced from files.
    /// A templates directory replaces the built-in templates of the same name and adds others.
    pub fn with_overrides(
        playbook: Option<&Path>,
        templates_dir: Option<&Path>,
    ) -> Result<Sources, String> {
        let mut s = Sources::embedded();
        if let Some(p) = playbook {
            s.playbook = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read playbook {}: {e}", p.display()))?;
            s.playbook_name = p.display().to_string();
            s.playbook_path = Some(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
        }
        if let Some(dir) = templates_dir {
            s.templates_path = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read templates directory {}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !name.ends_with(".tera") {
                    continue;
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read template {}: {e}", path.display()))?;
                s.templates.insert(name.to_string(), text);
            }
        }
        Ok(s)
    }

    /// A tera instance with every template parsed, autoescape off, and our filters.
    pub fn tera(&self) -> Result<tera::Tera, String> {
        let mut t = tera::Tera::new();
        t.autoescape_on(Vec::<&str>::new());
        t.register_filter("yaml_quote", |s: &str, _: tera::Kwargs, _: &tera::State| {
            yaml_quote(s)
        });
        t.register_filter(
            "yaml_escape",
            |s: &str, _: tera::Kwargs, _: &tera::State| yaml_escape(s),
        );
        for (name, text) in &self.templates {
            t.add_raw_template(name, text)
                .map_err(|e| format!("template {name} does not parse: {e}"))?;
        }
        Ok(t)
    }
}

/// A YAML double-quoted scalar holding exactly `s`.
pub fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", yaml_escape(s))
}

/// `s` as the inside of a YAML double-quoted scalar (templates put values inside their own
/// quotes: `"K={{ v | yaml_escape }}"`), so no value can end the scalar or the line.
pub fn yaml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
