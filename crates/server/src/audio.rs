//! A request's audio events as a chunked HTTP body.

use axum::body::{Body, Bytes};
use futures_util::stream;
use higgs_api::ApiError;
use higgs_audio_io::AudioFormat;
use higgs_engine::{Event, RequestStream};

/// A chunked body of `format` bytes, encoded as the audio arrives. Dropping the body (client gone)
/// drops the request stream, which cancels the generation.
/// Errors end the body (hyper then closes the connection without the terminating chunk); their
/// detail is logged with `request_id`, never sent.
pub fn streaming_body(
    s: RequestStream,
    format: AudioFormat,
    sample_rate: u32,
    request_id: Option<String>,
    note: crate::AccessNote,
) -> Result<Body, ApiError> {
    use higgs_service::errors::internal_mid_stream;
    let enc = higgs_service::run::stream_encoder(format, sample_rate)?;
    let st = stream::unfold((s, Some(enc)), move |(mut s, mut enc)| {
        let rid = request_id.clone();
        let note = note.clone();
        async move {
            let rid = rid.as_deref();
            loop {
                let e = enc.as_mut()?;
                let ev = s.next().await;
                if let Some(ev) = &ev {
                    note.observe(ev, sample_rate);
                }
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
