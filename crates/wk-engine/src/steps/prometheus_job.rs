//! `prometheus_job`: scrape jobs in prometheus.yml (a job already there with its id label
//! stays). Prometheus reads the file when the `compose_signal` step reloads it. Undone from its
//! before-image (the default of [`Kind::restore`]).

use wk_compose::edit;
use wk_remote::Remote;

use super::{file, Cx, Done, Fut, Kind, Shape, Target};

pub(crate) struct PrometheusJob<'a> {
    pub file: &'a str,
    pub content: &'a str,
}

impl Shape for PrometheusJob<'_> {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::edited(self.file))
    }

    fn edit(&self, old: Option<&str>) -> Result<String, String> {
        let old = old.ok_or("the file is missing")?;
        edit::set_prometheus_jobs(old, self.content).map_err(|e| e.to_string())
    }
}

impl<R: Remote + 'static> Kind<R> for PrometheusJob<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(file::apply(cx, self))
    }
}
