//! `wait_health`: waits until `/health` at an address (reached through the step's host) answers
//! 200. Nothing to undo.

use std::time::{Duration, Instant};

use wk_cluster::{Api, Health};
use wk_remote::Remote;

use super::{Cx, Done, Fut, Kind, Shape};
use crate::error::step_err;
use crate::pause::{self, Point};
use crate::text::split_addr;

pub(crate) struct WaitHealth<'a> {
    pub address: &'a str,
    pub path: &'a str,
    pub timeout_secs: u64,
}

impl Shape for WaitHealth<'_> {
    fn parallel(&self) -> bool {
        true
    }

    fn waits(&self) -> bool {
        true
    }
}

impl<R: Remote + 'static> Kind<R> for WaitHealth<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(async move {
            let (step, address, path, timeout_secs) =
                (cx.step, self.address, self.path, self.timeout_secs);
            if cx.run.dry {
                return Ok(Done::Ok(format!("would wait for http://{address}{path}")));
            }
            let (h, p) = split_addr(address);
            let t = Instant::now();
            let mut last = String::new();
            let mut poll = crate::poll::Poll::up_to(crate::poll::API);
            while t.elapsed() < Duration::from_secs(timeout_secs) {
                let answer = match cx.r.tunnel(&h, p).await {
                    Ok(tunnel) => Some(
                        Api::new(
                            &step.host,
                            &tunnel.socket,
                            &tunnel.target,
                            cx.run.token.clone(),
                        )
                        .health()
                        .await,
                    ),
                    Err(_) => None,
                };
                pause::at(step, Point::Middle).await;
                match answer {
                    Some(Ok(Health::Ok)) => {
                        return Ok(Done::Ok(format!("http://{address}{path} answers 200")))
                    }
                    Some(Ok(Health::Error(m))) => last = m,
                    Some(Err(e)) => last = e.to_string(),
                    None => {}
                }
                poll.sleep().await;
            }
            Err(step_err(step, format!("http://{address}{path} did not answer 200 within {timeout_secs} s (last: {last})")))
        })
    }
}
