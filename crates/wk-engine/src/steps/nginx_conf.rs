//! `nginx_conf`: the gateway's nginx.conf. Written whole when missing; a file already there only
//! gets the upstreams' missing servers (its own lines stay). nginx reads it when the gateway's
//! `compose_up` step checks and reloads it. Undone from its before-image (the default of
//! [`Kind::restore`]).

use wk_remote::Remote;

use super::{file, Cx, Done, Fut, Kind, Shape, Target};

pub(crate) struct NginxConf<'a> {
    pub file: &'a str,
    pub mode: u32,
    pub content: &'a str,
    pub upstreams: &'a [(String, Vec<String>)],
}

impl Shape for NginxConf<'_> {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::with_mode(self.file, self.mode, true))
    }

    fn edit(&self, old: Option<&str>) -> Result<String, String> {
        match old {
            None => Ok(self.content.to_string()),
            Some(old) => wk_compose::nginx::set_upstream_servers(old, self.upstreams)
                .map_err(|e| e.to_string()),
        }
    }
}

impl<R: Remote + 'static> Kind<R> for NginxConf<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(file::apply(cx, self))
    }
}
