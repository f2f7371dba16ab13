//! Validation and parsing never panic, and what they accept keeps the invariants.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use higgs_storage::{
    parse_endpoint_url, BucketName, KeyPrefix, ObjectKey, RequestS3Config, S3Config,
    MAX_PRESIGN_EXPIRY,
};
use proptest::prelude::*;

fn pathish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("\\".to_owned()),
            "[a-z0-9.-]{0,8}",
            any::<String>(),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn keys_never_panic_and_accepted_keys_are_safe(key in pathish()) {
        if let Ok(k) = ObjectKey::parse(&key) {
            let s = k.as_str();
            prop_assert!(!s.is_empty() && s.len() <= 1024 && !s.starts_with('/'));
            prop_assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
            prop_assert!(!s.contains('\\') && !s.chars().any(char::is_control));
        }
        if let Ok(Some(p)) = KeyPrefix::parse(&key) {
            let generated = ObjectKey::generate(Some(&p), "wav");
            prop_assert!(ObjectKey::parse(generated.as_str()).is_ok(), "{}", generated);
        }
    }

    #[test]
    fn buckets_never_panic_and_accepted_names_are_dns_safe(name in prop_oneof!["[a-z0-9.-]{0,70}", any::<String>()]) {
        if let Ok(b) = BucketName::parse(&name) {
            let s = b.as_str();
            prop_assert!((3..=63).contains(&s.len()) && !s.contains(".."));
            prop_assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'));
        }
    }

    #[test]
    fn endpoints_never_panic(
        scheme in prop_oneof![Just("https://"), Just("http://"), Just("")],
        host in prop_oneof!["[a-z0-9.-]{0,60}", any::<String>()],
        path in pathish(),
    ) {
        let _ = parse_endpoint_url(&format!("{scheme}{host}/{path}"));
        let _ = parse_endpoint_url(&host);
    }

    #[test]
    fn configs_never_panic(
        endpoint in prop_oneof!["https://[a-z0-9.-]{0,40}(/[a-z0-9./-]{0,20})?", any::<String>()],
        bucket in any::<String>(),
        prefix in pathish(),
        expiry in any::<String>(),
        id in any::<String>(),
    ) {
        let env: HashMap<String, String> = [
            ("BUCKET_ENDPOINT_URL", endpoint.clone()),
            ("BUCKET_ACCESS_KEY_ID", id.clone()),
            ("BUCKET_SECRET_ACCESS_KEY", "s".to_owned()),
            ("BUCKET_NAME", bucket.clone()),
            ("S3_KEY_PREFIX", prefix),
            ("S3_PRESIGN_EXPIRY_SECS", expiry),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let base = S3Config::from_env_map(&env);
        if let Ok(Some(config)) = &base {
            prop_assert!(config.validate().is_ok());
            prop_assert!(config.presign_expiry <= MAX_PRESIGN_EXPIRY);
        }
        let request = RequestS3Config {
            access_id: Some(id),
            access_secret: Some("x".into()),
            bucket_name: Some(bucket),
            endpoint_url: Some(endpoint),
        };
        let _ = S3Config::from_request(&request, base.ok().flatten().as_ref());
    }
}
