//! Lossless edits of files people wrote: the operator's docker-compose.yml, prometheus.yml and
//! nginx.conf (its upstream members only, see [`nginx`]).
//!
//! Only the lines that must change do: comments, quoting, order and every other service stay
//! byte for byte. Each edit finds its place with a small scanner of block-style YAML, changes
//! those lines, then parses the old and the new text and checks that the only difference is
//! the one intended. Anything it cannot edit that way (flow style, anchors where it must edit,
//! a file that does not parse) is refused with the reason, and nothing is changed.

pub mod edit;
pub mod nginx;
pub mod value;

pub use edit::{EditError, Selector};
pub use value::Yaml;

#[cfg(test)]
mod tests;
