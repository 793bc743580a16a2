//! wkctl's step engine: facts from every host, the cluster's own view of its members,
//! preflight, the run lock, then every step observed, journaled, changed and verified; or, for a
//! dry run, observed and reported. Library code: it never prints (events go to a [`Reporter`]).

pub mod events;
pub mod journal;
mod pause;
mod run;
pub mod status;
pub mod undo;

pub use events::{Event, Reporter};
pub use run::{connect_all, Connections, Engine, EngineError, Options, Outcome, Resume};
