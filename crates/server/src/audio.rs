//! A request's audio events as a chunked HTTP body, and the encoder the speech route streams
//! through (time stretch for `speed`, then the format's streaming encoder).

use axum::body::{Body, Bytes};
use futures_util::stream;
use higgs_api::{ApiError, ErrorKind};
use higgs_audio_io::{AudioError, AudioFormat, StreamEncoder, TimeStretch};
use higgs_engine::{Event, RequestStream};

/// Generated audio → `speed` time stretch (none at 1) → `format` bytes, as it arrives. The audio
/// it sends (stretched) is counted on the access note.
pub struct SpeechEncoder {
    stretch: TimeStretch,
    enc: StreamEncoder,
    rate: u32,
    note: crate::AccessNote,
}

impl SpeechEncoder {
    /// A format that cannot stream is the caller's error (422).
    pub fn new(
        format: AudioFormat,
        rate: u32,
        speed: f32,
        note: crate::AccessNote,
    ) -> Result<Self, ApiError> {
        let enc = higgs_service::run::stream_encoder(format, rate)?;
        // The speed was validated with the request: a failure here is ours.
        let stretch = TimeStretch::new(speed, rate)
            .map_err(|e| ApiError::new(ErrorKind::Internal, format!("time stretch: {e}")))?;
        Ok(Self {
            stretch,
            enc,
            rate,
            note,
        })
    }

    fn count(note: &crate::AccessNote, rate: u32, samples: &[f32]) {
        note.add_audio_seconds(samples.len() as f64 / f64::from(rate.max(1)));
    }

    /// The bytes ready to send after these generated samples (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        if self.stretch.is_identity() {
            Self::count(&self.note, self.rate, samples);
            return self.enc.push(samples);
        }
        let out = self.stretch.push(samples);
        if out.is_empty() {
            // Still buffering: nothing to encode yet (an empty push may emit an empty page).
            return Ok(Vec::new());
        }
        Self::count(&self.note, self.rate, &out);
        self.enc.push(&out)
    }

    /// The rest: the stretch's tail, then the encoder's.
    pub fn finish(self) -> Result<Vec<u8>, AudioError> {
        let Self {
            stretch,
            mut enc,
            rate,
            note,
        } = self;
        let tail = stretch.finish();
        Self::count(&note, rate, &tail);
        // Only a real tail is pushed: an empty push may still emit (e.g. close an Ogg page).
        let mut b = if tail.is_empty() {
            Vec::new()
        } else {
            enc.push(&tail)?
        };
        b.extend(enc.finish()?);
        Ok(b)
    }
}

/// A chunked body of `format` bytes at `speed` (1 = as generated), encoded as the audio arrives.
/// Dropping the body (client gone) drops the request stream, which cancels the generation.
/// Errors end the body (hyper then closes the connection without the terminating chunk); their
/// detail is logged with `request_id`, never sent.
pub fn streaming_body(
    s: RequestStream,
    format: AudioFormat,
    sample_rate: u32,
    speed: f32,
    request_id: Option<String>,
    note: crate::AccessNote,
) -> Result<Body, ApiError> {
    use higgs_service::errors::internal_mid_stream;
    let enc = SpeechEncoder::new(format, sample_rate, speed, note)?;
    let st = stream::unfold((s, Some(enc)), move |(mut s, mut enc)| {
        let rid = request_id.clone();
        async move {
            let rid = rid.as_deref();
            loop {
                let e = enc.as_mut()?;
                let ev = s.next().await;
                match ev {
                    Some(Event::Audio { samples, .. }) => match e.push(&samples) {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => {
                            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(b)), (s, enc)))
                        }
                        Err(err) => {
                            let m =
                                internal_mid_stream(rid, &format_args!("encoding {format}: {err}"));
                            return Some((Err(std::io::Error::other(m)), (s, None)));
                        }
                    },
                    Some(Event::Finished { .. }) => {
                        let e = enc.take()?;
                        return match e.finish() {
                            Ok(b) => Some((Ok(Bytes::from(b)), (s, None))),
                            Err(err) => {
                                let m = internal_mid_stream(
                                    rid,
                                    &format_args!("encoding {format}: {err}"),
                                );
                                Some((Err(std::io::Error::other(m)), (s, None)))
                            }
                        };
                    }
                    // A failure ends the chunked body with an error: hyper then closes the connection
                    // without the terminating chunk, so a client cannot take a cut stream for a whole one.
                    Some(Event::Failed(err)) => {
                        tracing::warn!(
                            request_id = rid.unwrap_or(""),
                            request = s.id,
                            "generation failed mid-stream: {err}"
                        );
                        return Some((Err(std::io::Error::other(err.client_message())), (s, None)));
                    }
                    Some(_) => continue,
                    None => {
                        tracing::error!(
                            request_id = rid.unwrap_or(""),
                            request = s.id,
                            "the engine stopped mid-stream"
                        );
                        let err = std::io::Error::other("the engine stopped mid-stream");
                        return Some((Err(err), (s, None)));
                    }
                }
            }
        }
    });
    Ok(Body::from_stream(st))
}
