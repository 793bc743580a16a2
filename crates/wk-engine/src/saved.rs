//! Saved plans: `expand --dry-run --save FILE` writes the resolved plan with what every host and
//! the cluster looked like when it was made; `expand --plan FILE` applies that plan and nothing
//! else, refusing (before anything changes) when a host, the cluster, the inventory, the playbook
//! or the templates changed since. Terraform's saved plans are the model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The version of the saved plan's format.
pub const SAVED_VERSION: u64 = 1;

/// What a plan was made from, and the plan itself (for the review).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub v: u64,
    /// The nodes added, in join order.
    pub add: Vec<String>,
    pub inventory_sha256: String,
    /// The playbook and templates, hashed together.
    pub sources_sha256: String,
    /// The cluster's members as the seed listed them: `id address status`.
    pub members: Vec<String>,
    /// Every file the plan writes, on its host: the sha256 of what it held (`None`: absent).
    pub files: BTreeMap<String, Option<String>>,
    /// Every host's compose services: `service status` of each container.
    pub services: BTreeMap<String, Vec<String>>,
    /// The resolved plan, as `--output json` shows it.
    pub plan: serde_json::Value,
}

impl SavedPlan {
    /// Reads a saved plan; a file that is not one is bad input.
    pub fn parse(path: &str, text: &str) -> Result<SavedPlan, EngineError> {
        let p: SavedPlan = serde_json::from_str(text).map_err(|e| {
            EngineError::Input(format!(
                "{path} is not a saved plan of wkctl ({e}); make one with `wkctl expand --add NODE --dry-run --save {path}`"
            ))
        })?;
        if p.v != SAVED_VERSION {
            return Err(EngineError::Input(format!(
                "{path} is a saved plan of version {}, this wkctl reads version {SAVED_VERSION}; make it again",
                p.v
            )));
        }
        Ok(p)
    }

    /// Every way `now` (made from the hosts as they are) differs from the saved plan, worded
    /// for the operator; empty when it is the same plan on the same hosts.
    pub fn differences(&self, now: &SavedPlan) -> Vec<String> {
        let mut out = Vec::new();
        if self.inventory_sha256 != now.inventory_sha256 {
            out.push("the inventory changed".to_string());
        }
        if self.sources_sha256 != now.sources_sha256 {
            out.push("the playbook or the templates changed".to_string());
        }
        if self.members != now.members {
            out.push(format!(
                "the cluster's members changed (then: {}; now: {})",
                self.members.join(", "),
                now.members.join(", ")
            ));
        }
        let short = |s: &Option<String>| match s {
            Some(h) => h.chars().take(12).collect::<String>(),
            None => "absent".into(),
        };
        for (file, was) in &self.files {
            match now.files.get(file) {
                Some(is) if is == was => {}
                Some(is) => out.push(format!(
                    "{file} changed (then {}, now {})",
                    short(was),
                    short(is)
                )),
                None => out.push(format!("{file} is no longer one the plan writes")),
            }
        }
        for file in now.files.keys().filter(|f| !self.files.contains_key(*f)) {
            out.push(format!("{file} is one the plan writes now, and was not"));
        }
        for (host, was) in &self.services {
            let is = now.services.get(host).cloned().unwrap_or_default();
            if &is != was {
                out.push(format!(
                    "{host}: its services changed (then: {}; now: {})",
                    or_none(was),
                    or_none(&is)
                ));
            }
        }
        if out.is_empty() && self.plan != now.plan {
            out.push("the plan built now differs from the saved one".into());
        }
        out
    }
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::SavedPlan;

    fn plan() -> SavedPlan {
        SavedPlan {
            v: 1,
            add: vec!["node2".into()],
            inventory_sha256: "i1".into(),
            sources_sha256: "s1".into(),
            members: vec!["1001 10.0.0.11:11110 3".into()],
            files: [
                (
                    "node1: ~/wukongim/docker-compose.yml".to_string(),
                    Some("aaaa".to_string()),
                ),
                ("node2: ~/wukongim/docker-compose.yml".to_string(), None),
            ]
            .into_iter()
            .collect(),
            services: [("node1".to_string(), vec!["wukongim running".to_string()])]
                .into_iter()
                .collect(),
            plan: serde_json::json!({"steps": []}),
        }
    }

    #[test]
    fn the_same_hosts_hold_the_plan_and_every_change_is_named() {
        assert_eq!(plan().differences(&plan()), Vec::<String>::new());
        let mut now = plan();
        now.files.insert(
            "node1: ~/wukongim/docker-compose.yml".into(),
            Some("bbbb".into()),
        );
        now.inventory_sha256 = "i2".into();
        now.members.push("1002 10.0.0.12:11110 1".into());
        now.services
            .insert("node1".into(), vec!["wukongim exited".into()]);
        let d = plan().differences(&now);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].contains("the inventory changed"));
        assert!(d[1].contains("members changed"));
        assert!(d[2].contains("node1: ~/wukongim/docker-compose.yml changed (then aaaa, now bbbb)"));
        assert!(d[3].contains("node1: its services changed"));
        // A plan that differs only in its steps.
        let mut now = plan();
        now.plan = serde_json::json!({"steps": [1]});
        assert_eq!(plan().differences(&now).len(), 1);
        // Not a saved plan, or another version: bad input.
        assert!(SavedPlan::parse("p", "{}").is_err());
        let mut other = serde_json::to_value(plan()).unwrap();
        other["v"] = 2.into();
        let err = SavedPlan::parse("p", &other.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
    }
}
