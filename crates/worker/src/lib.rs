//! higgs-serve's RunPod Serverless door, a thin layer over the same service (engine handle,
//! voices, readiness, `/generate` job) as the HTTP server (`higgs_service`); it never depends on
//! the HTTP server crate:
//!
//! - [`worker`]: the production protocol of runpod-python 1.12 — job-take long poll (batch take,
//!   `job_in_progress`), results to job-done (exactly one per job, retried with backoff), partials
//!   to job-stream (< 1 MB each, in order), heartbeats with the ids in progress, job-stop
//!   cancellation, `refresh_worker`, drain on SIGTERM;
//! - [`job`]: the job input kinds (`/generate` fields, `health_check`, OpenAI passthrough);
//! - [`local_api`]: the local test API (`--rp-serve-api`) that really runs jobs;
//! - [`urls`]: the URL templates; [`platform`]: the HTTP calls and their status handling.
//!
//! See docs/deploy-runpod.md.

pub mod job;
pub mod local_api;
pub mod platform;
pub mod urls;
pub mod worker;

#[cfg(feature = "fake-platform")]
pub mod fake_platform;

pub use job::{Job, JobContext, Outcome};
pub use platform::{Backoff, PlatformClient, PlatformConfig};
pub use urls::PlatformUrls;
pub use worker::{run, ExitReason, WorkerConfig, WorkerReport};
