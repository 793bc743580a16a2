//! `preflight`: the checks of a host, run (with every other host's) before the plan starts; the
//! step records that they passed. Nothing to undo.

use wk_plan::plan::Check;
use wk_remote::Remote;

use super::{Cx, Done, Fut, Kind, Shape};
use crate::pause::{self, Point};

pub(crate) struct Preflight<'a> {
    pub checks: &'a [Check],
}

impl Shape for Preflight<'_> {
    fn parallel(&self) -> bool {
        true
    }
}

impl<R: Remote + 'static> Kind<R> for Preflight<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(async move {
            pause::at(cx.step, Point::Middle).await;
            Ok(Done::Ok(format!("{} checks passed", self.checks.len())))
        })
    }
}
