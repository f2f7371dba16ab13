//! The platform's URL templates (`RUNPOD_WEBHOOK_*`) and how the SDK fills them in
//! (runpod-python 1.12 `rp_job.py`, `rp_http.py`, `rp_ping.py`):
//!
//! - job-take: `$ID` → worker id, then `job_in_progress=0|1`; a batch take swaps `/job-take/` for
//!   `/job-take-batch/` and adds `batch_size=N`;
//! - job-stop: the job-take URL with `/job-take/` → `/job-stop/`, query kept;
//! - job-done and job-stream: `$RUNPOD_POD_ID` → worker id, `$ID` → job id, then `isStream=…`;
//! - ping: `$RUNPOD_POD_ID` → worker id, then `job_id=a,b,c` (when any) and `runpod_version`.
//!
//! Both placeholders are substituted everywhere (templates seen in the wild use either), and query
//! parameters are appended with `?` or `&` depending on whether the template has a query already
//! (the SDK blindly appends `&`, which only works because real templates carry `?gpu=…`).

/// Version reported to the platform in pings (the SDK sends its own version there).
pub const WORKER_VERSION: &str = concat!("higgs-serve/", env!("CARGO_PKG_VERSION"));

/// The four templates plus this worker's id.
#[derive(Debug, Clone)]
pub struct PlatformUrls {
    pub worker_id: String,
    pub job_take: String,
    pub job_done: String,
    /// Without it streamed partials are not sent (only the final result).
    pub job_stream: Option<String>,
    /// Without it no heartbeat is sent.
    pub ping: Option<String>,
}

/// Ids go into path segments: percent-encode everything but RFC 3986 unreserved characters so an
/// odd id can neither add segments nor start a query.
fn segment(id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(id, KEEP).to_string()
}

/// Appends `key=value` pairs (form-encoded) to `url`, starting the query if there is none.
pub fn append_query(url: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return url.to_string();
    }
    let mut enc = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        enc.append_pair(k, v);
    }
    let q = enc.finish();
    let sep = if !url.contains('?') {
        "?"
    } else if url.ends_with('?') || url.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{url}{sep}{q}")
}

impl PlatformUrls {
    fn fill(&self, template: &str, job_id: Option<&str>) -> String {
        let worker = segment(&self.worker_id);
        let s = template.replace("$RUNPOD_POD_ID", &worker);
        match job_id {
            Some(j) => s.replace("$ID", &segment(j)),
            None => s.replace("$ID", &worker),
        }
    }

    /// GET URL asking for up to `batch` jobs (`batch > 1` uses the batch route).
    pub fn job_take(&self, jobs_in_progress: bool, batch: usize) -> String {
        let mut base = self.fill(&self.job_take, None);
        let flag = if jobs_in_progress { "1" } else { "0" };
        if batch > 1 {
            base = base.replacen("/job-take/", "/job-take-batch/", 1);
            let n = batch.to_string();
            append_query(&base, &[("job_in_progress", flag), ("batch_size", &n)])
        } else {
            append_query(&base, &[("job_in_progress", flag)])
        }
    }

    /// GET URL of the per-job stop channel, when the job-take URL has the `/job-take/` segment.
    pub fn job_stop(&self) -> Option<String> {
        let base = self.fill(&self.job_take, None);
        base.contains("/job-take/")
            .then(|| base.replacen("/job-take/", "/job-stop/", 1))
    }

    /// POST URL of a job's final result (`is_stream` = the job streamed partials).
    pub fn job_done(&self, job_id: &str, is_stream: bool) -> String {
        let flag = if is_stream { "true" } else { "false" };
        append_query(
            &self.fill(&self.job_done, Some(job_id)),
            &[("isStream", flag)],
        )
    }

    /// POST URL of one streamed partial.
    pub fn job_stream(&self, job_id: &str) -> Option<String> {
        self.job_stream
            .as_deref()
            .map(|t| append_query(&self.fill(t, Some(job_id)), &[("isStream", "false")]))
    }

    /// GET URL of a heartbeat carrying the ids of the jobs in progress.
    pub fn ping(&self, jobs_in_progress: &[String]) -> Option<String> {
        let t = self.ping.as_deref()?;
        let ids = jobs_in_progress.join(",");
        let mut pairs = Vec::new();
        if !ids.is_empty() {
            pairs.push(("job_id", ids.as_str()));
        }
        pairs.push(("runpod_version", WORKER_VERSION));
        Some(append_query(&self.fill(t, None), &pairs))
    }

    /// GET URL of the one-shot "unhealthy" report sent before exiting on a failed start-up check.
    pub fn unhealthy(&self, check: &str, reason: &str) -> Option<String> {
        let t = self.ping.as_deref()?;
        let reason: String = reason.chars().take(256).collect();
        Some(append_query(
            &self.fill(t, None),
            &[
                ("status", "unhealthy"),
                ("check", check),
                ("reason", &reason),
                ("runpod_version", WORKER_VERSION),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn urls() -> PlatformUrls {
        PlatformUrls {
            worker_id: "w1".into(),
            job_take: "https://api.runpod.ai/v2/ep/job-take/$ID?gpu=NVIDIA+H100".into(),
            job_done: "https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+H100"
                .into(),
            job_stream: Some("https://api.runpod.ai/v2/ep/job-stream/$RUNPOD_POD_ID/$ID".into()),
            ping: Some("https://api.runpod.ai/v2/ep/ping/$RUNPOD_POD_ID".into()),
        }
    }

    #[test]
    fn templates_are_filled_like_the_sdk() {
        let u = urls();
        assert_eq!(
            u.job_take(false, 1),
            "https://api.runpod.ai/v2/ep/job-take/w1?gpu=NVIDIA+H100&job_in_progress=0"
        );
        assert_eq!(
            u.job_take(true, 8),
            "https://api.runpod.ai/v2/ep/job-take-batch/w1?gpu=NVIDIA+H100&job_in_progress=1&batch_size=8"
        );
        assert_eq!(
            u.job_stop().as_deref(),
            Some("https://api.runpod.ai/v2/ep/job-stop/w1?gpu=NVIDIA+H100")
        );
        assert_eq!(
            u.job_done("j-9", true),
            "https://api.runpod.ai/v2/ep/job-done/w1/j-9?gpu=NVIDIA+H100&isStream=true"
        );
        assert_eq!(
            u.job_stream("j-9").as_deref(),
            Some("https://api.runpod.ai/v2/ep/job-stream/w1/j-9?isStream=false")
        );
        let p = u.ping(&["a".into(), "b".into()]).unwrap_or_default();
        assert!(
            p.starts_with(
                "https://api.runpod.ai/v2/ep/ping/w1?job_id=a%2Cb&runpod_version=higgs-serve%2F"
            ),
            "{p}"
        );
        let p = u.ping(&[]).unwrap_or_default();
        assert!(!p.contains("job_id"), "{p}");
        let bad = u
            .unhealthy("model_files", &"x".repeat(1000))
            .unwrap_or_default();
        assert!(bad.contains("status=unhealthy&check=model_files&reason=xxx"));
        assert!(bad.len() < 500);
    }

    #[test]
    fn no_stop_channel_without_the_take_segment() {
        let mut u = urls();
        u.job_take = "http://h/other/$ID".into();
        assert_eq!(u.job_stop(), None);
        assert_eq!(
            u.job_take(false, 4),
            "http://h/other/w1?job_in_progress=0&batch_size=4"
        );
    }

    proptest! {
        // Whatever the ids and templates, the query is well formed and the ids cannot inject
        // parameters or path segments.
        #[test]
        fn ids_never_break_the_url(worker in "\\PC{0,20}", job in "\\PC{0,20}", q in proptest::option::of("[a-z=&+]{0,10}")) {
            let base = match q { Some(q) => format!("http://h/job-done/$RUNPOD_POD_ID/$ID?{q}"), None => "http://h/job-done/$RUNPOD_POD_ID/$ID".into() };
            let u = PlatformUrls { worker_id: worker.clone(), job_take: "http://h/job-take/$ID".into(), job_done: base, job_stream: None, ping: Some("http://h/ping/$RUNPOD_POD_ID".into()) };
            let done = u.job_done(&job, false);
            prop_assert_eq!(done.matches('?').count(), 1);
            prop_assert_eq!(done.matches('/').count(), 5);
            prop_assert!(done.ends_with("isStream=false"));
            let ping = u.ping(std::slice::from_ref(&job)).unwrap_or_default();
            let query = ping.rsplit_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
            let parsed: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            if !job.is_empty() {
                prop_assert_eq!(&parsed[0], &("job_id".to_string(), job.clone()));
            }
            prop_assert_eq!(&parsed.last().map(|p| p.0.clone()), &Some("runpod_version".to_string()));
        }
    }
}
