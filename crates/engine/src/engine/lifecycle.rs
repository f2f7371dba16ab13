//! How requests move between preparing, waiting and running, and the one place they end.

use super::*;

impl Engine<'_> {
    /// The audio worker failed request `id` (and told its client): release it.
    pub(super) fn drop_failed_by_audio(&mut self, id: u64) {
        // A request that already finished here was counted as finished; the client got the error.
        if let Some(i) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.swap_remove(i);
            self.end(Ending::Running(Box::new(a)), Outcome::FailedByAudio);
        }
    }

    pub(super) fn cancel(&mut self, id: u64) {
        if let Some(p) = self.preparing.remove(&id) {
            self.end(Ending::Queued(Box::new(p)), Outcome::Cancelled);
        }
        if let Some(i) = self.waiting.iter().position(|q| q.p.id == id) {
            if let Some(q) = self.waiting.remove(i) {
                self.end(Ending::Queued(Box::new(q.p)), Outcome::Cancelled);
            }
        }
        if let Some(i) = self.active.iter().position(|a| a.id == id) {
            let a = self.active.swap_remove(i);
            self.end(Ending::Running(Box::new(a)), Outcome::Cancelled);
        }
    }

    /// Hands a submitted request to the preparation pool.
    pub(super) fn prepare(&mut self, mut p: Pending) {
        // Without a text head the model can only speak: every prompt ends in
        // `<|audio_out_bos|>`, as `force_audio` asks (the model logged this once at load).
        if !self.parts.model.has_text_head() {
            p.req.force_audio = true;
        }
        let prompting = std::mem::replace(
            &mut p.req.prompting,
            Prompting::Messages {
                messages: Vec::new(),
                clips: Vec::new(),
            },
        );
        let job = PrepJob {
            id: p.id,
            prompting,
            fit: FitLimits {
                max_seq_len: self.cfg.max_seq_len,
                max_new_tokens: p.req.params.max_new_tokens,
                suffix: prompt_suffix(p.req.force_audio),
            },
            span: p.span.clone(),
        };
        if self.prep.send(job).is_err() {
            let e = GenerationError::Internal("the preparation pool is gone".into());
            self.end(Ending::Queued(Box::new(p)), Outcome::Failed(e));
            return;
        }
        self.preparing.insert(p.id, p);
    }

    /// A request came back from preparation: it waits for a slot, or fails.
    pub(super) fn prepared(&mut self, id: u64, result: Result<Box<Prepared>, GenerationError>) {
        // Absent: it was cancelled or timed out meanwhile (already counted).
        let Some(p) = self.preparing.remove(&id) else {
            return;
        };
        match result {
            Ok(prepared) => self.waiting.push_back(Queued {
                p,
                prepared: *prepared,
            }),
            Err(e) => self.end(Ending::Queued(Box::new(p)), Outcome::Failed(e)),
        }
    }

    /// Drops requests whose client went away or whose deadline passed.
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
        let gone = |p: &Pending| {
            if let Some(t) = p.req.timeout.filter(|&t| now >= p.submitted + t) {
                Some(Outcome::TimedOut(t))
            } else {
                p.events.is_closed().then_some(Outcome::Cancelled)
            }
        };
        let ids: Vec<(u64, Outcome)> = self
            .preparing
            .values()
            .filter_map(|p| gone(p).map(|o| (p.id, o)))
            .collect();
        for (id, o) in ids {
            if let Some(p) = self.preparing.remove(&id) {
                self.end(Ending::Queued(Box::new(p)), o);
            }
        }
        let mut i = 0;
        while i < self.waiting.len() {
            match gone(&self.waiting[i].p) {
                Some(o) => {
                    if let Some(q) = self.waiting.remove(i) {
                        self.end(Ending::Queued(Box::new(q.p)), o);
                    }
                }
                None => i += 1,
            }
        }
        let mut i = 0;
        while i < self.active.len() {
            let a = &self.active[i];
            let outcome = match (a.deadline, a.req.timeout) {
                (Some(d), Some(t)) if now >= d => Some(Outcome::TimedOut(t)),
                _ => a.events.is_closed().then_some(Outcome::Cancelled),
            };
            match outcome {
                Some(o) => {
                    let a = self.active.swap_remove(i);
                    self.end(Ending::Running(Box::new(a)), o);
                }
                None => i += 1,
            }
        }
    }

    pub(super) fn fail_many(&mut self, idx: &[usize], e: GenerationError) {
        let mut idx = idx.to_vec();
        idx.sort_unstable();
        idx.dedup();
        for &i in idx.iter().rev() {
            if i < self.active.len() {
                let a = self.active.swap_remove(i);
                self.end_failed(a, e.clone());
            }
        }
    }

    pub(super) fn end_failed(&mut self, a: Active, e: GenerationError) {
        self.end(Ending::Running(Box::new(a)), Outcome::Failed(e));
    }

    /// The one place a request ends: the client is told (behind the events already queued for
    /// it, so its stream ends in order), the outcome is logged in the request's span and counted
    /// (`EngineStats` and `higgs_requests_total{outcome}`), and its slot or queue place is freed.
    /// Internal errors are logged at `error` (bugs or device faults), the rest at `debug`.
    pub(super) fn end(&mut self, r: Ending, o: Outcome) {
        let span = match &r {
            Ending::Queued(p) => p.span.clone(),
            Ending::Running(a) => a.span.clone(),
        };
        let _g = span.enter();
        let label = match &o {
            Outcome::Finished => {
                self.stats.requests_finished += 1;
                "finished"
            }
            Outcome::Cancelled => {
                self.stats.requests_cancelled += 1;
                "cancelled"
            }
            Outcome::TimedOut(_) => {
                self.stats.requests_failed += 1;
                "timeout"
            }
            Outcome::Failed(_) | Outcome::FailedByAudio => {
                self.stats.requests_failed += 1;
                "failed"
            }
        };
        match &o {
            Outcome::Failed(e @ GenerationError::Internal(_)) => {
                tracing::error!("request failed: {e}")
            }
            Outcome::Failed(e) => tracing::debug!("request failed: {e}"),
            Outcome::FailedByAudio => tracing::debug!("request failed in the codec"),
            Outcome::TimedOut(t) => tracing::debug!("request timed out after {t:?}"),
            Outcome::Cancelled => tracing::debug!("request cancelled"),
            Outcome::Finished => tracing::debug!("request finished"),
        }
        metrics::counter!("higgs_requests_total", "outcome" => label, "engine" => self.shared.label.clone()).increment(1);
        let finished = matches!(o, Outcome::Finished);
        let to_client = match o {
            Outcome::Failed(e) => Some(Event::Failed(e)),
            Outcome::TimedOut(t) => Some(Event::Failed(GenerationError::Timeout(t))),
            // Cancelled: nobody listens; FailedByAudio: the audio worker told the client.
            Outcome::Cancelled | Outcome::FailedByAudio | Outcome::Finished => None,
        };
        // Its admission place (counted from submission to here) is free again.
        self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ending::Queued(p) => {
                if let Some(ev) = to_client {
                    let _ = p.events.send(ev);
                }
            }
            Ending::Running(a) => {
                if let Some(ev) = to_client {
                    self.audio.event(a.id, &a.events, ev);
                } else if finished {
                    // Finished: `Finished` goes behind the request's last audio.
                    let reason = if a.reasons.contains(&StopReason::Length) {
                        StopReason::Length
                    } else {
                        StopReason::Stop
                    };
                    metrics::counter!("higgs_audio_frames_total", "engine" => self.shared.label.clone())
                        .increment(a.usage.audio_frames as u64);
                    self.audio.send(AudioMsg::Finish {
                        id: a.id,
                        to: a.events.clone(),
                        reason,
                        usage: a.usage,
                        queue: a.started - a.submitted,
                        submitted: a.submitted,
                    });
                }
                self.cache.reset(a.slot);
                self.free_slots.push(a.slot);
                self.audio.send(AudioMsg::Forget(a.id));
            }
        }
    }
}

/// A request being ended: still without a slot, or running.
pub(super) enum Ending {
    Queued(Box<Pending>),
    Running(Box<Active>),
}

/// How a request ended.
pub(super) enum Outcome {
    /// Every chunk generated and all audio queued.
    Finished,
    /// Failed with this error (told to the client).
    Failed(GenerationError),
    /// The audio worker failed it and already told the client.
    FailedByAudio,
    /// Its deadline passed.
    TimedOut(Duration),
    /// The client cancelled or went away.
    Cancelled,
}
