//! `compose_service`: a service added to (or, unless `if_missing`, replaced in) a compose file
//! (nginx on the gateway). Undone in two stages: before the files go back, a service the run
//! added is stopped and removed (compose cannot remove a service its file no longer names);
//! then the file goes back from its before-image.

use wk_compose::{edit, Selector};
use wk_remote::{shell, Remote};

use super::{file, Cx, Done, Fut, Kind, Shape, Target, Undo};
use crate::error::{host_err, EngineError};

pub(crate) struct ComposeService<'a> {
    pub file: &'a str,
    pub service: &'a str,
    pub content: &'a str,
    pub if_missing: bool,
}

impl ComposeService<'_> {
    fn names_it(&self, text: &str) -> bool {
        edit::find_service(text, &Selector::Name(self.service.to_string())).is_ok()
    }

    /// Stops and removes the service, when the run added it: the file names it now and did not
    /// before (a run stopped before it wrote the service never started it).
    async fn remove_added<R: Remote + 'static>(
        &self,
        u: &Undo<'_, R>,
        line: &serde_json::Value,
    ) -> Result<usize, EngineError> {
        let (Some(host), Some(path)) = (line["host"].as_str(), line["path"].as_str()) else {
            return Ok(0);
        };
        let now = u.e.remote(host)?.read_file(path).await.map_err(host_err)?;
        if !now.is_some_and(|f| self.names_it(&String::from_utf8_lossy(&f.content))) {
            return Ok(0);
        }
        if line["existed"] == true && self.names_it(&String::from_utf8_lossy(&u.before_copy(line)?))
        {
            return Ok(0);
        }
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
        let svc = self.service;
        let cmd = format!(
            "cd {} && {} rm -s -f {svc}",
            shell::path(dir),
            u.compose_of(host).await?
        );
        if u.dry {
            u.show(host, cmd);
            return Ok(0);
        }
        u.run_compose(host, cmd).await?;
        u.done(host, format!("stopped and removed service {svc}"));
        Ok(1)
    }
}

impl Shape for ComposeService<'_> {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::edited(self.file))
    }

    fn edit(&self, old: Option<&str>) -> Result<String, String> {
        let old = old.ok_or("the compose file is missing")?;
        if self.if_missing && self.names_it(old) {
            return Ok(old.to_string());
        }
        edit::set_service(old, self.service, self.content).map_err(|e| e.to_string())
    }
}

impl<R: Remote + 'static> Kind<R> for ComposeService<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(file::apply(cx, self))
    }

    fn remove<'a>(&'a self, u: &'a Undo<'a, R>, line: &'a serde_json::Value) -> Fut<'a, usize> {
        Box::pin(self.remove_added(u, line))
    }
}
