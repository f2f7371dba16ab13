//! Talking to the RunPod platform: job-take, job-done, job-stream, ping, job-stop, with the
//! status handling of runpod-python 1.12 and retries with backoff where a lost message would lose
//! a job.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::job::Job;
use crate::urls::PlatformUrls;

/// Exponential backoff with jitter (full jitter on the upper half) between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts for one message before giving up (a result is then replaced by a short error).
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(15),
            attempts: 10,
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Timeouts and pacing of the platform calls.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub urls: PlatformUrls,
    /// `RUNPOD_AI_API_KEY`: sent raw (no `Bearer`) as `Authorization`.
    pub api_key: Option<String>,
    /// Bound of the job-take and job-stop long polls (the SDK uses 90 s).
    pub long_poll: Duration,
    /// Bound of a result / stream POST attempt.
    pub post_timeout: Duration,
    /// Wait after a 429 on job-take / job-stop (the SDK waits 5 s).
    pub rate_limited_wait: Duration,
    pub backoff: Backoff,
}

impl PlatformConfig {
    pub fn new(urls: PlatformUrls, api_key: Option<String>) -> Self {
        Self {
            urls,
            api_key,
            long_poll: Duration::from_secs(90),
            post_timeout: Duration::from_secs(30),
            rate_limited_wait: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("rate limited (429)")]
    RateLimited,
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("{0}")]
    Transport(String),
}

impl PlatformError {
    /// Worth another attempt: transport errors, timeouts, 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited | Self::Transport(_) => true,
            Self::Status { status, .. } => *status == 408 || *status >= 500,
        }
    }
}

/// What a job-take answered.
#[derive(Debug)]
pub enum Taken {
    Jobs(Vec<Job>),
    /// Entries with an id but no usable job (the worker fails them instead of dropping them).
    Malformed(Vec<(String, String)>),
}

#[derive(Clone)]
pub struct PlatformClient {
    http: reqwest::Client,
    pub cfg: PlatformConfig,
}

impl PlatformClient {
    pub fn new(cfg: PlatformConfig) -> Result<Self, PlatformError> {
        let http = reqwest::Client::builder()
            .user_agent(crate::urls::WORKER_VERSION)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| PlatformError::Transport(e.to_string()))?;
        Ok(Self { http, cfg })
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.api_key {
            Some(k) => rb.header("Authorization", k),
            None => rb,
        }
    }

    async fn get(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, String, Vec<u8>), PlatformError> {
        let resp = self
            .auth(self.http.get(url))
            .timeout(timeout)
            .send()
            .await
            .map_err(describe)?;
        let status = resp.status();
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.bytes().await.map_err(describe)?.to_vec();
        Ok((status, ct, body))
    }

    /// One job-take long poll for up to `want` jobs.
    pub async fn take(&self, jobs_in_progress: bool, want: usize) -> Result<Taken, PlatformError> {
        let url = self.cfg.urls.job_take(jobs_in_progress, want);
        let (status, ct, body) = self.get(&url, self.cfg.long_poll).await?;
        match status.as_u16() {
            // 400 is what FlashBoot workers see when there is nothing for them (SDK comment).
            204 | 400 => return Ok(Taken::Jobs(Vec::new())),
            429 => return Err(PlatformError::RateLimited),
            s if !(200..300).contains(&s) => {
                return Err(PlatformError::Status {
                    status: s,
                    body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                })
            }
            _ => {}
        }
        if body.is_empty() || !ct.contains("json") {
            return Ok(Taken::Jobs(Vec::new()));
        }
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("job-take answered unparsable JSON ({e}); ignored");
                return Ok(Taken::Jobs(Vec::new()));
            }
        };
        let items = match v {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            one => vec![one],
        };
        let (mut jobs, mut bad) = (Vec::new(), Vec::new());
        for item in items {
            let id = item.get("id").and_then(Value::as_str).map(str::to_string);
            match (id, item.get("input")) {
                (Some(id), Some(_)) => match serde_json::from_value::<Job>(item) {
                    Ok(j) => jobs.push(j),
                    Err(e) => bad.push((id, format!("the job could not be read: {e}"))),
                },
                (Some(id), None) => bad.push((id, "the job has no \"input\"".into())),
                (None, _) => tracing::warn!("job-take returned an entry without an id; ignored"),
            }
        }
        if !bad.is_empty() {
            // Both kinds are handled by the caller; report malformed ones separately.
            if jobs.is_empty() {
                return Ok(Taken::Malformed(bad));
            }
            tracing::warn!("{} malformed jobs in a batch; failing them", bad.len());
            for (id, why) in bad {
                let _ = self
                    .post_final(
                        &id,
                        &crate::job::Outcome::failed(higgs_api::ErrorKind::BadRequest, why)
                            .to_body(false),
                        false,
                    )
                    .await;
            }
        }
        Ok(Taken::Jobs(jobs))
    }

    async fn post_once(&self, url: &str, job_id: &str, body: &str) -> Result<(), PlatformError> {
        // The SDK sends the JSON text with this (odd) content type; the platform expects it.
        let resp = self
            .auth(self.http.post(url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("charset", "utf-8")
            .header("X-Request-ID", job_id)
            .timeout(self.cfg.post_timeout)
            .body(body.to_string())
            .send()
            .await
            .map_err(describe)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(PlatformError::RateLimited);
        }
        Err(PlatformError::Status {
            status: status.as_u16(),
            body: text,
        })
    }

    /// POSTs with retries on transient failures; the last error when all attempts failed or the
    /// platform refused permanently (4xx).
    async fn post_retrying(
        &self,
        url: &str,
        job_id: &str,
        body: &Value,
    ) -> Result<(), PlatformError> {
        let text = body.to_string();
        let mut attempt = 0;
        loop {
            match self.post_once(url, job_id, &text).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt + 1 < self.cfg.backoff.attempts => {
                    let d = self.cfg.backoff.delay(attempt);
                    tracing::warn!(
                        "job {job_id}: posting to the platform failed ({e}); retry {} in {d:?}",
                        attempt + 1
                    );
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Delivers a job's final result. If the platform refuses the body itself (a 4xx such as
    /// "too large"), a short error result is sent instead so the job still ends.
    pub async fn post_final(
        &self,
        job_id: &str,
        body: &Value,
        is_stream: bool,
    ) -> Result<(), PlatformError> {
        let url = self.cfg.urls.job_done(job_id, is_stream);
        match self.post_retrying(&url, job_id, body).await {
            Err(PlatformError::Status { status, body: why })
                if (400..500).contains(&status) && body.get("output").is_some() =>
            {
                tracing::error!("job {job_id}: the platform refused the result (HTTP {status}: {why}); sending an error instead");
                let fallback = crate::job::Outcome::error(
                    "result_refused",
                    format!("the platform refused this job's result (HTTP {status}: {why}); if it is too large configure S3 or use a compressed output_format"),
                    502,
                )
                .to_body(body.get("stopPod").is_some());
                self.post_retrying(&url, job_id, &fallback).await
            }
            r => r,
        }
    }

    /// Sends one streamed partial (`{"output": partial}`).
    pub async fn post_stream(&self, job_id: &str, partial: &Value) -> Result<(), PlatformError> {
        let Some(url) = self.cfg.urls.job_stream(job_id) else {
            return Ok(());
        };
        self.post_retrying(&url, job_id, &serde_json::json!({ "output": partial }))
            .await
    }

    /// One heartbeat; answers are ignored, failures only logged (the next one is a retry).
    pub async fn ping(&self, jobs: &[String], interval: Duration) {
        let Some(url) = self.cfg.urls.ping(jobs) else {
            return;
        };
        if let Err(e) = self.get(&url, interval * 2).await {
            tracing::debug!("ping failed: {e}");
        }
    }

    /// One job-stop long poll: ids of jobs to stop.
    pub async fn poll_stop(&self) -> Result<Vec<String>, PlatformError> {
        let Some(url) = self.cfg.urls.job_stop() else {
            return Ok(Vec::new());
        };
        let (status, _ct, body) = self.get(&url, self.cfg.long_poll).await?;
        match status.as_u16() {
            204 => Ok(Vec::new()),
            429 => Err(PlatformError::RateLimited),
            s if (200..300).contains(&s) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                Ok(v["jobsToStop"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            s => Err(PlatformError::Status {
                status: s,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            }),
        }
    }

    /// The best-effort "unhealthy" report sent before exiting on a failed start-up check.
    pub async fn report_unhealthy(&self, check: &str, reason: &str) {
        if let Some(url) = self.cfg.urls.unhealthy(check, reason) {
            if let Err(e) = self.get(&url, Duration::from_secs(2)).await {
                tracing::warn!("could not report the unhealthy state: {e}");
            }
        }
    }
}

fn describe(e: reqwest::Error) -> PlatformError {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    PlatformError::Transport(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempts: 5,
        };
        for a in 0..20 {
            let d = b.delay(a);
            let cap =
                (Duration::from_millis(100) * (1u32 << a.min(16))).min(Duration::from_secs(2));
            assert!(d >= cap / 2 && d <= cap, "attempt {a}: {d:?} vs {cap:?}");
        }
    }

    #[test]
    fn transient_errors() {
        assert!(PlatformError::RateLimited.is_transient());
        assert!(PlatformError::Transport("reset".into()).is_transient());
        assert!(PlatformError::Status {
            status: 503,
            body: String::new()
        }
        .is_transient());
        assert!(PlatformError::Status {
            status: 408,
            body: String::new()
        }
        .is_transient());
        assert!(!PlatformError::Status {
            status: 400,
            body: String::new()
        }
        .is_transient());
        assert!(!PlatformError::Status {
            status: 404,
            body: String::new()
        }
        .is_transient());
    }
}
