//! The playbook: the ordered steps of an expansion, as data (`playbooks/expand.yml`).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::diag::{from_yaml_error, Diagnostic, Diagnostics};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Preparation and configuration, each step expanded to one step per selected host.
    pub steps: Vec<StepSpec>,
    /// Repeated for one new node at a time, in the order the nodes were named.
    #[serde(default)]
    pub join: Vec<StepSpec>,
    /// After every join.
    #[serde(default)]
    pub finish: Vec<StepSpec>,
}

/// Which hosts a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum On {
    Gateway,
    Seed,
    Members,
    New,
    Involved,
    Joining,
}

/// One step of the playbook: exactly one of the action fields is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    pub on: On,
    #[serde(default)]
    pub title: Option<String>,
    /// The earlier steps (playbook ids, of the `steps` section) this one waits for on every
    /// host; on its own host it still follows every earlier step. Without it a step waits for
    /// every step before it (steps of one playbook step on different hosts run at once where
    /// their kind allows). The steps after it wait for it as for any other.
    #[serde(default)]
    pub after: Option<Vec<String>>,
    #[serde(default)]
    pub preflight: Option<Empty>,
    #[serde(default)]
    pub lock: Option<PathSpec>,
    #[serde(default)]
    pub unlock: Option<PathSpec>,
    #[serde(default)]
    pub mkdir: Option<MkdirSpec>,
    #[serde(default)]
    pub template: Option<TemplateSpec>,
    #[serde(default)]
    pub nginx_conf: Option<NginxConfSpec>,
    #[serde(default)]
    pub compose_env: Option<ComposeEnvSpec>,
    #[serde(default)]
    pub compose_service: Option<ComposeServiceSpec>,
    #[serde(default)]
    pub prometheus_job: Option<PrometheusJobSpec>,
    #[serde(default)]
    pub compose_up: Option<ComposeUpSpec>,
    #[serde(default)]
    pub compose_create: Option<ComposeCreateSpec>,
    #[serde(default)]
    pub compose_signal: Option<ComposeSignalSpec>,
    #[serde(default)]
    pub wait_health: Option<WaitHealthSpec>,
    #[serde(default)]
    pub wait_joined: Option<WaitJoinedSpec>,
    #[serde(default)]
    pub command: Option<CommandSpec>,
}

/// The action of a step, once the playbook is checked.
#[derive(Debug, Clone, Copy)]
pub enum ActionSpec<'a> {
    Preflight,
    Lock(&'a PathSpec),
    Unlock(&'a PathSpec),
    Mkdir(&'a MkdirSpec),
    Template(&'a TemplateSpec),
    NginxConf(&'a NginxConfSpec),
    ComposeEnv(&'a ComposeEnvSpec),
    ComposeService(&'a ComposeServiceSpec),
    PrometheusJob(&'a PrometheusJobSpec),
    ComposeUp(&'a ComposeUpSpec),
    ComposeCreate(&'a ComposeCreateSpec),
    ComposeSignal(&'a ComposeSignalSpec),
    WaitHealth(&'a WaitHealthSpec),
    WaitJoined(&'a WaitJoinedSpec),
    Command(&'a CommandSpec),
}

impl StepSpec {
    /// The step's one action, or the names of the action fields it has (none or several).
    pub fn action(&self) -> Result<ActionSpec<'_>, Vec<&'static str>> {
        let mut found: Vec<(&'static str, ActionSpec<'_>)> = Vec::new();
        if self.preflight.is_some() {
            found.push(("preflight", ActionSpec::Preflight));
        }
        macro_rules! each {
            ($($field:ident => $variant:ident),*) => {
                $(if let Some(s) = &self.$field { found.push((stringify!($field), ActionSpec::$variant(s))); })*
            };
        }
        each!(lock => Lock, unlock => Unlock, mkdir => Mkdir, template => Template,
              nginx_conf => NginxConf,
              compose_env => ComposeEnv, compose_service => ComposeService,
              prometheus_job => PrometheusJob, compose_up => ComposeUp,
              compose_create => ComposeCreate,
              compose_signal => ComposeSignal, wait_health => WaitHealth,
              wait_joined => WaitJoined, command => Command);
        if found.len() == 1 {
            Ok(found.remove(0).1)
        } else {
            Err(found.into_iter().map(|(n, _)| n).collect())
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirSpec {
    pub path: String,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub src: String,
    pub dest: String,
    #[serde(default)]
    pub mode: Option<String>,
}

/// The load balancer's nginx.conf: written from `src` when the host has none; otherwise only
/// the members of the upstreams `src` renders are added to the file there (hand edits stay).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfSpec {
    pub src: String,
    pub file: String,
    #[serde(default)]
    pub mode: Option<String>,
}

/// Picks a compose service: by its name, or by the last path component of its image's
/// repository (so `…/wukongim/wukongim:v2.2.5` is found whatever the service is called).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ServiceSelector {
    Name(String),
    ImageName(String),
}

impl fmt::Display for ServiceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceSelector::Name(n) => write!(f, "service `{n}`"),
            ServiceSelector::ImageName(i) => write!(f, "the service running image …/{i}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeEnvSpec {
    pub file: String,
    pub service: ServiceSelector,
    pub env: OrderedMap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeServiceSpec {
    pub file: String,
    pub service: String,
    pub src: String,
    /// Leave a service of that name alone when the file has one (an operator's own).
    #[serde(default)]
    pub if_missing: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusJobSpec {
    pub file: String,
    pub src: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeUpSpec {
    pub dir: String,
    /// The services to bring up; empty for all of the file's services.
    #[serde(default)]
    pub services: Vec<ServiceSelector>,
    /// An earlier `compose_up` step of the same section: on a host where that step runs in the
    /// same dir, this one's services come up in its compose call (one step, one `up -d` of
    /// both, each verified as its own would be) instead of a call of their own after it.
    #[serde(default)]
    pub together_with: Option<String>,
}

/// A project's containers created, not started (`up --no-start`): a new node's start is then
/// only its start, and a missing image shows before the members restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeCreateSpec {
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSignalSpec {
    pub dir: String,
    pub service: ServiceSelector,
    pub signal: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitHealthSpec {
    pub address: String,
    pub path: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitJoinedSpec {
    pub node_id: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub run: String,
    /// What undoes it; a command without one cannot be rolled back and says so.
    #[serde(default)]
    pub undo: Option<String>,
    /// Run under the host's sudo mode.
    #[serde(default)]
    pub sudo: bool,
}

/// A string-to-string mapping that keeps the order it was written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Playbook {
    /// Parses a playbook and checks what the types cannot: one action per step, ids unique
    /// and usable, `joining` only in the join section.
    pub fn parse(file: &str, text: &str) -> Result<Playbook, Diagnostics> {
        let pb: Playbook = serde_saphyr::from_str(text)
            .map_err(|e| Diagnostics(vec![from_yaml_error(file, &e)]))?;
        let mut problems = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        let sections = [
            ("steps", &pb.steps),
            ("join", &pb.join),
            ("finish", &pb.finish),
        ];
        for (section, steps) in sections {
            for s in steps.iter() {
                let here = |m: String| {
                    Diagnostic::new(file, None, format!("{section}: step `{}`: {m}", s.id))
                };
                if s.id.is_empty()
                    || !s
                        .id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    problems.push(
                        here("the id must be letters, digits, `-` or `_`".into())
                            .fix("rename the step"),
                    );
                }
                if !ids.insert(s.id.as_str()) {
                    problems.push(
                        here("the id is used twice".into())
                            .fix("give every step its own id: resume finds steps by it"),
                    );
                }
                if let Err(found) = s.action() {
                    let msg = if found.is_empty() {
                        "it has no action".to_string()
                    } else {
                        format!("it has several actions: {}", found.join(", "))
                    };
                    problems.push(
                        here(msg).fix(
                            "give the step exactly one action (mkdir, template, compose_env, …)",
                        ),
                    );
                }
                if let Some(with) = s.compose_up.as_ref().and_then(|u| u.together_with.as_ref()) {
                    let earlier = steps
                        .iter()
                        .take_while(|o| o.id != s.id)
                        .any(|o| o.id == *with && o.compose_up.is_some());
                    if !earlier {
                        problems.push(
                            here(format!("`together_with: {with}` names no earlier compose_up step of this section"))
                                .fix("name a compose_up step that comes before it in the same section, or drop `together_with`"),
                        );
                    }
                }
                if let Some(after) = &s.after {
                    let earlier: Vec<&str> = pb
                        .steps
                        .iter()
                        .take_while(|o| o.id != s.id)
                        .map(|o| o.id.as_str())
                        .collect();
                    if section != "steps" {
                        problems.push(
                            here("`after` belongs in the steps section".into())
                                .fix("drop `after`: join and finish steps run in their order"),
                        );
                    }
                    for a in after.iter().filter(|a| !earlier.contains(&a.as_str())) {
                        problems.push(
                            here(format!(
                                "`after: {a}` names no earlier step of the steps section"
                            ))
                            .fix("name steps that come before it, or drop `after`"),
                        );
                    }
                }
                if (s.on == On::Joining) != (section == "join") {
                    problems.push(
                        here("`on: joining` belongs in the join section, and only there".into())
                            .fix("use `on: joining` for join steps, another selector elsewhere"),
                    );
                }
            }
        }
        if pb.steps.is_empty() && pb.join.is_empty() {
            problems
                .push(Diagnostic::new(file, None, "the playbook has no steps").fix("add steps"));
        }
        if problems.is_empty() {
            Ok(pb)
        } else {
            Err(Diagnostics(problems))
        }
    }
}
