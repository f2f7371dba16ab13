//! The health report both doors answer (`GET /health`, a `/generate` or RunPod health check):
//! built once here so the shapes cannot drift apart.

use higgs_api::health::{
    EngineHealth, Health, MemoryInfo, ModelInfo, QueueInfo, VoiceSuggestion, DEGRADED, HEALTHY,
};
use higgs_engine::EngineStats;

use crate::{Readiness, Service};

/// Characters of a transcript shown as a voice's description.
const DESCRIPTION_CHARS: usize = 120;

/// `text` cut to at most `max` characters (on a char boundary), with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", text[..i].trim_end()),
    }
}

/// Resident memory of the process in MiB (`None` where `/proc` is unavailable).
pub fn rss_mb() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
}

impl Readiness {
    /// The health report's `status`: `healthy`, `degraded`, `loading`, `unhealthy` or
    /// `stopping`.
    pub fn health_status(self) -> &'static str {
        match self {
            Self::Ready => HEALTHY,
            Self::Degraded => DEGRADED,
            Self::Loading => "loading",
            Self::Failed => "unhealthy",
            Self::Stopping => "stopping",
        }
    }
}

fn queue_info(s: &EngineStats) -> QueueInfo {
    QueueInfo {
        waiting: s.queued,
        running: s.running,
        slots: s.slots,
        kv_positions_used: s.kv_positions_used,
        kv_positions_total: s.slots * s.max_seq_len,
        requests_finished: s.requests_finished,
        requests_failed: s.requests_failed,
        requests_cancelled: s.requests_cancelled,
    }
}

impl Service {
    /// The health report (the seed handler's fields first, then queue and memory) and the
    /// readiness it was made from.
    pub fn health(&self) -> (Readiness, Health) {
        let statuses = self.engine.statuses();
        let readiness = self.readiness();
        let mut total = EngineStats::default();
        let mut kv_total = 0;
        let engines = statuses
            .iter()
            .map(|e| {
                total.add(&e.stats);
                kv_total += e.stats.slots * e.stats.max_seq_len;
                EngineHealth {
                    engine: e.index,
                    device: e.device.clone(),
                    status: e.state.as_str().into(),
                    error: e.error.clone(),
                    queue: queue_info(&e.stats),
                    step_failures: e.stats.step_failures,
                }
            })
            .collect();
        let voices = self.list_voices();
        let names: Vec<String> = voices.iter().map(|v| v.name.clone()).collect();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let model_path = if self.config.model_path.is_empty() {
            self.config.model_name.clone()
        } else {
            self.config.model_path.clone()
        };
        let h = Health {
            status: readiness.health_status().into(),
            timestamp,
            model_info: ModelInfo {
                model_path,
                device: self.device.clone(),
                models_loaded: readiness.is_ready(),
                voice_prompts_available: names.len(),
                description: self.engine.model_info().to_string(),
            },
            voice_suggestions: voices
                .iter()
                .take(Health::MAX_VOICE_SUGGESTIONS)
                .map(|v| VoiceSuggestion {
                    name: v.name.clone(),
                    description: shorten(&v.transcript, DESCRIPTION_CHARS),
                })
                .collect(),
            model: self.config.model_name.clone(),
            device: self.device.clone(),
            sample_rate: self.engine.sample_rate(),
            voices_available: names,
            queue: QueueInfo {
                // Engines may differ in sequence length: their positions, not slots × the longest.
                kv_positions_total: kv_total,
                ..queue_info(&total)
            },
            memory: MemoryInfo {
                rss_mb: rss_mb().unwrap_or(0.0),
            },
            engines,
        };
        (readiness, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_on_a_char_boundary() {
        assert_eq!(shorten("  short  ", 10), "short");
        assert_eq!(shorten("ééééé", 3), "ééé…");
        assert_eq!(shorten("one two three", 8), "one two…");
    }

    #[test]
    fn health_status_words() {
        assert_eq!(Readiness::Ready.health_status(), "healthy");
        assert_eq!(Readiness::Loading.health_status(), "loading");
        assert_eq!(Readiness::Stopping.health_status(), "stopping");
        assert_eq!(Readiness::Degraded.health_status(), "degraded");
        assert_eq!(Readiness::Failed.health_status(), "unhealthy");
    }
}
