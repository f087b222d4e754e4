//! A model registry as a live source of targets: polled from the root context, applied without
//! an Envoy reload, the last good answer kept while the registry cannot be read.
//!
//! | module | holds |
//! |---|---|
//! | `settings` | the `registry` section and its validation |
//! | `json` | the plain JSON registry document and its validation |
//! | `mlflow` | the MLflow Model Registry REST API: alias lookups and their answers |
//! | `merge` | the merged configuration: the static one with the registry's targets |
//! | `poll` | one poll per period per Envoy, the shared snapshot, rebuilding a VM's plugin |
//!
//! The configured `models` are the fallback: they route until the registry answered once, and
//! whenever what it answers cannot be used.

pub mod json;
pub mod merge;
pub mod mlflow;
pub mod poll;
pub mod settings;

pub use merge::{merged, Targets};
pub use poll::{PollRecord, Poller, Request, Snapshot};
pub use settings::{
    compile, Alias, MlflowModel, RegistryDto, RegistrySettings, Source, SourceKind,
};
