//! `compose_env`: environment variables of one service of a compose file (found by name, or by
//! its image), set in place; every other line stays. Undone from its before-image (the default
//! of [`Kind::restore`]).

use wk_compose::{edit, Selector};
use wk_plan::playbook::ServiceSelector;
use wk_remote::Remote;

use super::{file, Cx, Done, Fut, Kind, Shape, Target};

pub(crate) struct ComposeEnv<'a> {
    pub file: &'a str,
    pub service: &'a ServiceSelector,
    pub env: &'a [(String, String)],
}

impl Shape for ComposeEnv<'_> {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::edited(self.file))
    }

    fn edit(&self, old: Option<&str>) -> Result<String, String> {
        let sel = match self.service {
            ServiceSelector::Name(n) => Selector::Name(n.clone()),
            ServiceSelector::ImageName(i) => Selector::ImageName(i.clone()),
        };
        let old = old.ok_or("the compose file is missing")?;
        edit::set_env(old, &sel, self.env).map_err(|e| e.to_string())
    }
}

impl<R: Remote + 'static> Kind<R> for ComposeEnv<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(file::apply(cx, self))
    }
}
