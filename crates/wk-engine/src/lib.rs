//! wkctl's step engine: facts from every host, the cluster's own view of its members,
//! preflight, the run lock, then every step observed, journaled, changed and verified; or, for a
//! dry run, observed and reported. Library code: it never prints (events go to a [`Reporter`]).
//!
//! Where things are: [`Engine`] (`engine`) holds the inventory and the connections (`connect`);
//! `expand` is a run as a list of phases, one module each; `steps` holds each kind of step in a
//! file of its own, with its undo; `rollback` undoes a run through the same kinds; `runs` lists
//! runs and reads what a journal carries into a resume; `facts` is what hosts tell before
//! anything is planned; `docker` reads compose's state and writes files containers bind-mount.

mod connect;
mod docker;
mod engine;
mod error;
pub mod events;
mod expand;
mod facts;
pub mod journal;
mod pause;
mod poll;
pub mod rollback;
pub mod runs;
pub mod saved;
pub mod status;
mod steps;
mod text;

pub use connect::{connect_all, Connections};
pub use engine::{Engine, Options, Outcome, Resume};
pub use error::EngineError;
pub use events::{Answer, Confirm, Event, FileChange, Reporter, Summary};
