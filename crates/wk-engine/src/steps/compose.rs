//! Running compose as a step's plan command shows it: the step's compose program, its sudo,
//! its install dir; and what the project's containers run and see.

use std::time::Duration;

use wk_remote::{shell, ExecOutput, ExecRequest, Remote};

use super::Cx;
use crate::docker::{self, Services};
use crate::error::{step_err, EngineError};

impl<R: Remote + 'static> Cx<'_, R> {
    /// Whether the step's commands run through sudo.
    fn sudo(&self) -> bool {
        self.step.action.commands().first().is_some_and(|c| c.sudo)
    }

    /// Runs a plan command ([`super::COMPOSE_TIMEOUT`] at most); fails unless it succeeds.
    pub async fn exec(&self, command: &wk_plan::plan::Command) -> Result<String, EngineError> {
        self.forget_looks();
        let out = self
            .r
            .exec(
                ExecRequest::new(command.run.clone())
                    .sudo_inside(command.sudo)
                    .timeout(super::COMPOSE_TIMEOUT),
            )
            .await
            .map_err(|e| step_err(self.step, e))?;
        self.succeeded(&out, &format!("`{}` failed", command.run), true)?;
        Ok(out.stdout_str())
    }

    /// Fails with what the command said (its stderr, and its stdout when `stdout`) unless it
    /// exited 0.
    fn succeeded(&self, out: &ExecOutput, what: &str, stdout: bool) -> Result<(), EngineError> {
        if out.success() {
            return Ok(());
        }
        let said = if stdout {
            out.stdout_str()
        } else {
            String::new()
        };
        Err(step_err(
            self.step,
            format!(
                "{what} ({:?}): {}{}",
                out.status,
                out.stderr_str().trim(),
                said.trim()
            ),
        ))
    }

    /// `cd DIR && [sudo] flock . COMPOSE ARGS` with the step's compose program and sudo, as its
    /// command shows them; the remote feeds sudo its password when the host needs one.
    pub async fn compose(&self, dir: &str, args: &str) -> Result<ExecOutput, EngineError> {
        self.forget_looks();
        let (prefix, prog) = self.compose_parts()?;
        let cmd = format!("cd {} && {prefix}flock . {prog} {args}", shell::path(dir));
        self.r
            .exec(ExecRequest::new(cmd).sudo_inside(self.sudo()))
            .await
            .map_err(|e| step_err(self.step, e))
    }

    /// Runs a script of `docker.rs` (made with the step's sudo prefix) as the step's compose
    /// commands run; `what` names it when it fails.
    async fn docker_script(
        &self,
        script: impl Fn(&str) -> String,
        what: &str,
        changes: bool,
    ) -> Result<String, EngineError> {
        let (prefix, _) = self.compose_parts()?;
        let out = self
            .r
            .exec(
                ExecRequest::new(script(&prefix))
                    .sudo_inside(self.sudo())
                    .timeout(Duration::from_secs(60)),
            )
            .await
            .map_err(|e| step_err(self.step, e))?;
        self.succeeded(&out, what, changes)?;
        Ok(out.stdout_str())
    }

    /// What the project's containers are doing, read as the step's compose command runs.
    pub async fn compose_state(&self, dir: &str) -> Result<Services, EngineError> {
        let out = self
            .docker_script(
                |prefix| docker::state_script(dir, prefix),
                &format!("cannot read what compose runs in {dir}"),
                false,
            )
            .await?;
        Ok(Services::parse(&out))
    }

    /// Ends a recreate that a cut run (or compose call) left half done in `dir`, when `look`
    /// shows what it leaves ([`Services::leftovers`]; compose's next `up -d` would fail on it):
    /// under the project's lock, its temporary container goes, or gets its name back. What it
    /// did, for the step's note; nothing when there was nothing to end.
    pub async fn finish_recreate(
        &self,
        dir: &str,
        look: &Services,
    ) -> Result<Option<String>, EngineError> {
        if look.leftovers().is_empty() {
            return Ok(None);
        }
        self.forget_looks();
        let out = self
            .docker_script(
                |prefix| docker::finish_recreate_script(dir, prefix),
                &format!("cannot end the recreate a cut compose call left half done in {dir} (`docker ps -a` there shows it)"),
                true,
            )
            .await?;
        let did: Vec<String> = out.lines().map(str::to_string).collect();
        Ok((!did.is_empty()).then(|| did.join("; ")))
    }

    /// What the project's containers are doing: the last look at them in this run, when
    /// nothing of ours has run on the host since (taken moments ago, it still holds: a dry run
    /// looks once per project), else a new one, kept for the next step.
    pub async fn compose_state_known(&self, dir: &str) -> Result<Services, EngineError> {
        let key = (self.step.host.clone(), dir.to_string());
        let kept = self
            .run
            .looks
            .lock()
            .expect("not poisoned")
            .get(&key)
            .cloned();
        if let Some(s) = kept {
            return Ok(s);
        }
        let s = self.compose_state(dir).await?;
        self.keep_look(dir, s.clone());
        Ok(s)
    }

    /// Keeps the look a step ends on, for the next step on the host ([`Cx::compose_state_known`]).
    pub fn keep_look(&self, dir: &str, s: Services) {
        let key = (self.step.host.clone(), dir.to_string());
        self.run.looks.lock().expect("not poisoned").insert(key, s);
    }

    /// Something of ours runs on the host: what was seen there may change.
    fn forget_looks(&self) {
        let host = &self.step.host;
        self.run
            .looks
            .lock()
            .expect("not poisoned")
            .retain(|(h, _), _| h != host);
    }

    /// The sudo prefix (`sudo -n `, `sudo -k -S -p '' ` or empty) and the compose program of a
    /// step's command line (after `cd … &&`).
    fn compose_parts(&self) -> Result<(String, String), EngineError> {
        let run = self
            .step
            .action
            .commands()
            .first()
            .map(|c| c.run.clone())
            .unwrap_or_default();
        let after = run.split(" && ").nth(1).unwrap_or("");
        let words: Vec<&str> = after.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| *w == "docker" || *w == "docker-compose")
            .ok_or_else(|| step_err(self.step, "no compose command in the plan"))?;
        // The sudo part; the plan's `flock .` is put back by each call that changes services.
        let mut before = &words[..i];
        if before.ends_with(&["flock", "."]) {
            before = &before[..before.len() - 2];
        }
        let prefix = before.join(" ");
        let prog = if words[i] == "docker" {
            "docker compose"
        } else {
            "docker-compose"
        };
        Ok((
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix} ")
            },
            prog.to_string(),
        ))
    }

    /// Fails unless the container of `service` sees at `inner` the bytes the host file `path`
    /// holds (what it runs is what the run wrote); those bytes.
    pub async fn container_sees(
        &self,
        dir: &str,
        service: &str,
        path: &str,
        inner: &str,
    ) -> Result<Vec<u8>, EngineError> {
        let (prefix, _) = self.compose_parts()?;
        let step = self.step;
        let host = self
            .r
            .read_file(path)
            .await
            .map_err(|e| step_err(step, e))?;
        let seen = docker::container_file(&*self.r, &prefix, dir, service, inner, self.sudo())
            .await
            .map_err(|e| step_err(step, e))?;
        match (host, seen) {
            (Some(h), Some(c)) if h.content == c => Ok(c),
            (_, None) => Err(step_err(
                step,
                format!("cannot read {inner} inside the {service} container (`docker exec` of its running container, `cat {inner}`, failed)"),
            )),
            _ => Err(step_err(
                step,
                format!("the {service} container does not see {path} as the host holds it (its {inner} is another file: a bind mount of a file replaced by rename keeps the old one); recreate it with `docker compose up -d --force-recreate {service}` in {dir}"),
            )),
        }
    }
}
