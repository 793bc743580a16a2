//! `template`: a whole file rendered from a template (a new node's docker-compose.yml). Undone
//! from its before-image (the default of [`Kind::restore`]; removed when the run created it).

use wk_remote::Remote;

use super::{file, Cx, Done, Fut, Kind, Shape, Target};

pub(crate) struct Template<'a> {
    pub dest: &'a str,
    pub mode: u32,
    pub content: &'a str,
}

impl Shape for Template<'_> {
    fn target(&self) -> Option<Target<'_>> {
        Some(Target::with_mode(self.dest, self.mode, false))
    }

    fn edit(&self, _old: Option<&str>) -> Result<String, String> {
        Ok(self.content.to_string())
    }
}

impl<R: Remote + 'static> Kind<R> for Template<'_> {
    fn apply<'a>(&'a self, cx: &'a Cx<'a, R>) -> Fut<'a, Done> {
        Box::pin(file::apply(cx, self))
    }
}
