//! `compose_signal`: a service told to re-read its configuration (Prometheus, SIGHUP) when the
//! run changed its file; verified by what its container sees and what Prometheus runs. A
//! rollback has it re-read the restored file (see `compose_up::restart_restored`).

use std::time::{Duration, Instant};

use wk_plan::plan::Command;
use wk_plan::playbook::ServiceSelector;
use wk_remote::Remote;

use super::{Cx, Done, Fut, Kind, Shape};
use crate::error::{step_err, EngineError};
use crate::pause::{self, Point};
use crate::text::url_host_port;

pub(crate) struct Reload<'a> {
    pub dir: &'a str,
    pub service: &'a ServiceSelector,
    pub command: &'a Command,
}

impl Reload<'_> {
    async fn reload<R: Remote + 'static>(&self, cx: &Cx<'_, R>) -> Result<Done, EngineError> {
        let (step, dir) = (cx.step, self.dir);
        let prom = wk_plan::plan::join_path(dir, &cx.e.inv.gateway.prometheus_file);
        if !cx.run.is_changed(&step.host, &prom) {
            return Ok(Done::Ok("its configuration did not change".into()));
        }
        let name = match self.service {
            ServiceSelector::Name(n) => n.clone(),
            ServiceSelector::ImageName(i) => i.clone(),
        };
        let state = cx.compose_state_known(dir).await?;
        if !state.running(&name) {
            return Ok(Done::Ok(format!(
                "{name} does not run here; nothing to reload"
            )));
        }
        if cx.run.dry {
            return Ok(cx.would(self.command, "would signal"));
        }
        pause::at(step, Point::Middle).await;
        // What Prometheus reloaded is what the run wrote: its container sees the file (asked
        // while the signal goes: a bind mount shows the file whatever the process does), and
        // its running configuration has every job of it.
        let (sent, file) = tokio::join!(
            cx.exec(self.command),
            cx.container_sees(dir, &name, &prom, "/etc/prometheus/prometheus.yml")
        );
        sent?;
        prometheus_loaded(cx, &prom, &file?).await?;
        Ok(Done::Changed(format!("{name} reloaded its configuration")))
    }
}

/// Waits (10 s at most) until Prometheus's running configuration has every job of `file` (the
/// host's `prom`, as its container sees it), asked at the inventory's `gateway.prometheus_url`
/// through the host.
async fn prometheus_loaded<R: Remote + 'static>(
    cx: &Cx<'_, R>,
    prom: &str,
    file: &[u8],
) -> Result<(), EngineError> {
    let step = cx.step;
    let want = wk_cluster::prometheus_job_names(&String::from_utf8_lossy(file));
    let url = &cx.e.inv.gateway.prometheus_url;
    let (h, p) = url_host_port(url);
    let t = Instant::now();
    let mut missing = want.clone();
    let mut last = String::new();
    let mut poll = crate::poll::Poll::up_to(Duration::from_millis(200));
    while t.elapsed() < Duration::from_secs(10) {
        match cx.r.tunnel(&h, p).await {
            Ok(tn) => match wk_cluster::prometheus_config(&step.host, &tn.socket, &tn.target).await
            {
                Ok(y) => {
                    let have = wk_cluster::prometheus_job_names(&y);
                    missing = want.iter().filter(|j| !have.contains(j)).cloned().collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        poll.sleep().await;
    }
    Err(step_err(
        step,
        format!(
            "Prometheus at {url} does not run the jobs of {prom}: {} missing{}; see its log (`docker compose logs prometheus`)",
            missing.join(", "),
            if last.is_empty() { String::new() } else { format!(" (last answer: {last})") }
        ),
    ))
}

impl Shape for Reload<'_> {}

impl<R: Remote + 'static> Kind<R> for Reload<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(self.reload(cx))
    }
}
