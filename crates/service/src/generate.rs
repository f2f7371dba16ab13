//! The native `/generate` job, independent of its transport: the HTTP route and the RunPod worker
//! both run it, so they accept the same fields and answer the same response.

use std::sync::Arc;

use base64::Engine;
use higgs_api::generate::{
    GenerateMetadata, GenerateRequestWire, GenerateResponse, GenerationParameters,
};
use higgs_api::{ApiError, ErrorKind};
use higgs_audio_io::AudioFormat;
use higgs_engine::{Event, Prompting};
use higgs_storage::Uploader;
use tokio::sync::mpsc;

use crate::run::{encode, stream_encoder, Collected};
use crate::Service;

/// How one `/generate` job is run beyond its request fields.
#[derive(Default)]
pub struct GenerateOptions {
    /// Upload target for this job (e.g. built from a RunPod request's `s3Config`); `None` = the
    /// service's own uploader, if any.
    pub uploader: Option<Arc<Uploader>>,
    /// Receives the output file's bytes as they are encoded (in `output_format`); the pieces
    /// concatenate to the whole file. The final response then carries no inline audio unless
    /// `inline_when_streamed` is set (the client already has it).
    pub stream: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pub inline_when_streamed: bool,
    /// The caller's request id (HTTP `x-request-id`, RunPod job id), carried into the engine.
    pub request_id: Option<String>,
}

/// Runs a `/generate` request to completion. Dropping the future cancels the generation.
pub async fn run_generate(
    service: &Service,
    req: &GenerateRequestWire,
    opts: GenerateOptions,
) -> Result<GenerateResponse, ApiError> {
    let t0 = std::time::Instant::now();
    let rate = service.sample_rate();
    let mut job = req.validate(&service.config.limits)?;
    check_s3_names(job.s3_bucket.as_deref(), job.s3_key.as_deref())?;
    let decoded = service.decode_audio(std::mem::take(&mut job.audio)).await?;
    job.attach_audio(decoded);
    job.request.request_id = opts.request_id.clone();
    let params = job.request.params.clone();
    let requested = match &job.request.prompting {
        Prompting::Script { chunking, .. } => {
            let method = format!("{:?}", chunking.method).to_lowercase();
            let words = (method == "word").then_some(chunking.max_word_num);
            (method, words)
        }
        Prompting::Messages { .. } => ("none".into(), None),
    };
    let (s, early) = service.start(job.request).await?;
    let c = match &opts.stream {
        None => service.collect(s, early).await?,
        Some(tx) => collect_streaming(service, s, early, job.format, rate, tx).await?,
    };
    // Encoded once more even when streamed: a streamed WAV header has no length, the stored or
    // inline file should.
    let bytes = encode(job.format, &c.samples, rate)?;
    let uploader = opts.uploader.clone().or_else(|| service.uploader.clone());
    let wants_upload = opts.uploader.is_some()
        || service.uploader.is_some()
        || job.s3_bucket.is_some()
        || job.s3_key.is_some();
    let (mut audio_url, mut s3_uri, mut upload_error) = (None, None, None);
    if wants_upload {
        match &uploader {
            None => {
                upload_error = Some(
                    "S3 is not configured on this server (set BUCKET_ENDPOINT_URL/BUCKET_ACCESS_KEY_ID/BUCKET_SECRET_ACCESS_KEY or AWS_*, or send s3Config); the audio is inline".to_string(),
                )
            }
            Some(up) => match up
                .put(
                    job.s3_bucket.as_deref(),
                    job.s3_key.as_deref(),
                    bytes.clone(),
                    job.format.content_type(),
                )
                .await
            {
                Ok(u) => {
                    audio_url = Some(u.url);
                    s3_uri = Some(u.s3_uri);
                }
                Err(e) => {
                    tracing::warn!("S3 upload failed: {e}");
                    upload_error = Some(format!(
                        "S3 upload failed ({e}); the audio is returned inline"
                    ));
                }
            },
        }
    }
    let inline = audio_url.is_none() && (opts.stream.is_none() || opts.inline_when_streamed);
    Ok(GenerateResponse {
        success: true,
        audio_url,
        s3_uri,
        upload_error,
        audio_base64: inline.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
        output_format: Some(job.format.to_string()),
        duration_seconds: Some(c.samples.len() as f64 / rate as f64),
        sample_rate: Some(rate),
        text_output: Some(c.text.clone()),
        metadata: Some(GenerateMetadata {
            model_used: service.config.model_name.clone(),
            voice_clone: job.voice_clone,
            generation_parameters: GenerationParameters {
                temperature: params.sampling.temperature,
                top_k: params.sampling.top_k,
                top_p: params.sampling.top_p,
                max_new_tokens: params.max_new_tokens,
                ras_win_len: params.ras.win_len,
                ras_win_max_num_repeat: params.ras.max_repeat,
                seed: params.seed,
                chunk_method: match c.usage.auto_chunk_words {
                    Some(_) => "word".into(),
                    None => requested.0,
                },
                chunk_max_word_num: c.usage.auto_chunk_words.or(requested.1),
                auto_chunked: c.usage.auto_chunk_words.is_some(),
                context_chunks_dropped: c.usage.context_chunks_dropped,
                generation_time: t0.elapsed().as_secs_f64(),
                chunks_processed: c.usage.chunks,
            },
        }),
        ..Default::default()
    })
}

/// A request's `s3_bucket` / `s3_key`, checked with the uploader's own rules whether or not S3 is
/// configured: a key with `..`/`.` segments, a leading `/` or a backslash (path traversal) is a
/// 400 before anything is generated, never an inline answer with an `upload_error`. Empty values
/// mean "not given" (as the seed handler's `if request.s3_key`).
pub fn check_s3_names(bucket: Option<&str>, key: Option<&str>) -> Result<(), ApiError> {
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        higgs_storage::ObjectKey::parse(k)
            .map_err(|e| ApiError::invalid("s3_key", format!("is refused: {e}")))?;
    }
    if let Some(b) = bucket.filter(|b| !b.is_empty()) {
        higgs_storage::BucketName::parse(b)
            .map_err(|e| ApiError::invalid("s3_bucket", format!("is refused: {e}")))?;
    }
    Ok(())
}

/// [`Service::collect`], also encoding the audio as it arrives and sending each encoded piece.
async fn collect_streaming(
    service: &Service,
    s: higgs_engine::RequestStream,
    early: Vec<Event>,
    format: AudioFormat,
    rate: u32,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
) -> Result<Collected, ApiError> {
    let mut enc = stream_encoder(format, rate)?;
    let enc_err = |e: higgs_audio_io::AudioError| {
        ApiError::new(ErrorKind::Internal, format!("encoding {format}: {e}"))
    };
    let send = |piece: Vec<u8>| {
        if !piece.is_empty() {
            // A closed receiver means nobody listens any more; the job still completes.
            let _ = tx.send(piece);
        }
    };
    let c = service
        .collect_with(s, early, |samples| {
            send(enc.push(samples).map_err(enc_err)?);
            Ok(())
        })
        .await?;
    send(enc.finish().map_err(enc_err)?);
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::check_s3_names;
    use higgs_api::ErrorKind;

    #[test]
    fn traversal_keys_and_bad_buckets_are_refused_by_name() {
        for key in [
            "../x.wav",
            "a/../../etc/passwd",
            "/abs/x.wav",
            "a\\..\\b.wav",
            "./x.wav",
            "a//b.wav",
        ] {
            let e = check_s3_names(None, Some(key)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{key}");
            assert_eq!(e.param.as_deref(), Some("s3_key"), "{key}");
        }
        let e = check_s3_names(Some("Bad_Bucket"), Some("ok/x.wav")).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("s3_bucket"));
        assert!(check_s3_names(Some("my-bucket"), Some("tts/2026/x.wav")).is_ok());
        assert!(check_s3_names(Some(""), Some("")).is_ok());
        assert!(check_s3_names(None, None).is_ok());
    }
}
