//! Uploads against a real S3 server (s3s-fs) that verifies SigV4 signatures.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use higgs_storage::{RequestS3Config, S3Config, UploadError, Uploader};

macro_rules! server_or_skip {
    () => {
        match common::start() {
            Some(server) => server,
            None => return,
        }
    };
}

async fn download(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

#[tokio::test]
async fn upload_then_presigned_url_downloads_the_same_bytes() {
    let server = server_or_skip!();
    server.create_bucket("higgs-audio").await;
    let mut config = server.config();
    config.bucket = Some("higgs-audio".into());
    config.key_prefix = Some("tts".into());
    let uploader = Uploader::new(config).unwrap();
    let audio = common::audio(300_000);

    let up = uploader
        .put(None, None, audio.clone(), "audio/wav")
        .await
        .unwrap();

    assert_eq!(up.bucket, "higgs-audio");
    assert_eq!(up.bytes, audio.len() as u64);
    assert_eq!(up.s3_uri, format!("s3://higgs-audio/{}", up.key));
    let parts: Vec<&str> = up.key.split('/').collect();
    assert_eq!(parts.len(), 3, "{}", up.key);
    assert_eq!(parts[0], "tts");
    assert_eq!(
        parts[1],
        jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
    );
    assert!(parts[2].ends_with(".wav") && uuid::Uuid::parse_str(&parts[2][..36]).is_ok());
    assert!(
        up.url
            .starts_with(&format!("{}/higgs-audio/tts/", server.endpoint)),
        "{}",
        up.url
    );
    assert!(up.url.contains("X-Amz-Expires=604800"), "{}", up.url);

    let response = download(&up.url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.bytes().await.unwrap().as_ref(), audio.as_slice());

    // The server really checks signatures: the bare URL and a tampered one are refused.
    let bare = up.url.split('?').next().unwrap();
    assert_eq!(download(bare).await.status(), 403);
    let last = up.url.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &up.url[..up.url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(download(&tampered).await.status(), 403);
}

#[tokio::test]
async fn request_bucket_and_key_override_the_defaults() {
    let server = server_or_skip!();
    server.create_bucket("default-bucket").await;
    server.create_bucket("job-bucket").await;
    let mut config = server.config();
    config.bucket = Some("default-bucket".into());
    let uploader = Uploader::new(config).unwrap();

    let up = uploader
        .put(
            Some("job-bucket"),
            Some("jobs/42/out.mp3"),
            b"ID3 fake mp3".to_vec(),
            "audio/mpeg",
        )
        .await
        .unwrap();
    assert_eq!(up.s3_uri, "s3://job-bucket/jobs/42/out.mp3");
    let response = download(&up.url).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"ID3 fake mp3");

    // An empty object uploads too (Content-Length: 0).
    let empty = uploader
        .put(None, Some("empty.pcm"), Vec::new(), "audio/pcm")
        .await
        .unwrap();
    assert_eq!(empty.bytes, 0);
    assert!(download(&empty.url).await.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn runpod_environment_and_request_s3config_reach_the_server() {
    let server = server_or_skip!();
    server.create_bucket("runpod-bucket").await;
    server.create_bucket("caller-bucket").await;
    let env: HashMap<String, String> = [
        (
            "BUCKET_ENDPOINT_URL",
            format!("{}/runpod-bucket/outputs", server.endpoint),
        ),
        ("BUCKET_ACCESS_KEY_ID", common::ACCESS_KEY.to_owned()),
        ("BUCKET_SECRET_ACCESS_KEY", common::SECRET_KEY.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = S3Config::from_env_map(&env).unwrap().unwrap();
    let uploader = Uploader::new(config.clone()).unwrap();
    let up = uploader
        .put(None, None, b"abc".to_vec(), "audio/flac")
        .await
        .unwrap();
    assert!(up.s3_uri.starts_with("s3://runpod-bucket/outputs/") && up.key.ends_with(".flac"));
    assert_eq!(
        download(&up.url).await.bytes().await.unwrap().as_ref(),
        b"abc"
    );

    let request: RequestS3Config = serde_json::from_value(serde_json::json!({
        "accessId": common::ACCESS_KEY,
        "accessSecret": common::SECRET_KEY,
        "bucketName": "caller-bucket",
        "endpointUrl": server.endpoint,
    }))
    .unwrap();
    let per_request = uploader
        .for_config(S3Config::from_request(&request, Some(&config)).unwrap())
        .unwrap();
    let up = per_request
        .put(None, Some("x.wav"), b"xyz".to_vec(), "audio/wav")
        .await
        .unwrap();
    assert_eq!(up.s3_uri, "s3://caller-bucket/x.wav");
    assert_eq!(
        download(&up.url).await.bytes().await.unwrap().as_ref(),
        b"xyz"
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let server = server_or_skip!();
    server.create_bucket("higgs-audio").await;
    let mut config = server.config();
    config.secret_access_key = "not-the-secret".into();
    let uploader = Uploader::new(config).unwrap();
    let err = uploader
        .put(
            Some("higgs-audio"),
            Some("a.wav"),
            b"x".to_vec(),
            "audio/wav",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, UploadError::Credentials { status: 403, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("S3 refused the credentials: "),
        "{message}"
    );
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_eq!(err.error_type(), "s3_credentials");

    let mut config = server.config();
    config.access_key_id = "UNKNOWNKEY".into();
    let err = Uploader::new(config)
        .unwrap()
        .put(
            Some("higgs-audio"),
            Some("a.wav"),
            b"x".to_vec(),
            "audio/wav",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Credentials { .. }), "{err:?}");
}

// Missing bucket: s3s-fs creates the bucket directory on PutObject instead of answering
// NoSuchBucket, so that case is tested in retry.rs against a server replaying AWS's exact answer.

#[tokio::test]
async fn bad_input_is_refused_before_any_request() {
    // No server: these never reach the network.
    let mut config = S3Config::new("id", "secret");
    config.endpoint_url = Some("http://127.0.0.1:9".into());
    let uploader = Uploader::new(config).unwrap();
    let err = uploader
        .put(None, None, b"x".to_vec(), "audio/wav")
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::NoBucket), "{err:?}");
    let err = uploader
        .put(
            Some("b1b"),
            Some("../../etc/passwd"),
            b"x".to_vec(),
            "audio/wav",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, UploadError::Key(_)) && err.is_invalid_input(),
        "{err:?}"
    );
    let err = uploader
        .put(
            Some("Bad_Bucket"),
            Some("a.wav"),
            b"x".to_vec(),
            "audio/wav",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::Bucket(_)), "{err:?}");
    let err = uploader
        .put(
            Some("b1b"),
            Some("a.wav"),
            b"x".to_vec(),
            "audio/wav\r\nx: y",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::ContentType(_)), "{err:?}");
}
