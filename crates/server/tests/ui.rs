//! The playground page: `GET /` and its assets answer without the API key (which still guards the
//! API), with the right content types and a same-origin-only policy; every element the script
//! looks up exists in the page. The browser test (`tests/e2e_web`, run by `scripts/e2e.sh`) drives
//! the page itself in headless Chromium.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use candle_core::{DType, Device};
use higgs_engine::{start, EngineConfig, EngineParts};
use higgs_server::{app, AppState, ServerConfig};
use higgs_service::{Service, ServiceConfig};
use higgs_testkit::fixture;
use tower::ServiceExt;

fn state(api_key: Option<&str>) -> AppState {
    let parts = EngineParts {
        model: higgs_model::HiggsAudioModel::load(&fixture("llm"), DType::F32, &Device::Cpu)
            .unwrap(),
        codec: higgs_codec::Codec::load(&fixture("codec"), &Device::Cpu).unwrap(),
        tokenizer: higgs_text::TextTokenizer::from_model_dir(fixture("text-tokenizer")).unwrap(),
        voices: None,
    };
    let cfg = EngineConfig {
        max_running: 1,
        max_seq_len: 256,
        ..Default::default()
    };
    let (engine, _) = start(cfg, parts).unwrap();
    AppState {
        service: Service {
            engine: higgs_engine::EnginePool::single(engine, "cpu"),
            voices: None,
            config: Arc::new(ServiceConfig::default()),
            device: "cpu".into(),
            uploader: None,
        },
        config: Arc::new(ServerConfig {
            api_key: api_key.map(String::from),
            ..Default::default()
        }),
        metrics: None,
    }
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn header<'a>(h: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_key() {
    let s = state(Some("secret"));

    let (status, h, html) = get(&s, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    assert!(html.starts_with("<!doctype html>"), "{}", &html[..80]);
    assert!(html.contains("<title>higgs-serve"));
    let csp = header(&h, "content-security-policy");
    assert!(csp.contains("default-src 'self'") && csp.contains("media-src 'self' blob:"));
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(
        h.contains_key("x-request-id"),
        "the page is a request like any other"
    );

    let (status, h, js) = get(&s, "/ui/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
    assert!(js.contains("/v1/audio/speech"));
    let (status, h, css) = get(&s, "/ui/app.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "text/css; charset=utf-8");
    assert!(css.contains(":root"));

    // No CDN, no other origin: every src/href is same-origin (or a data: icon / in-page anchor).
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            assert!(
                url.starts_with('/') || url.starts_with('#') || url == "data:,",
                "the page loads {url} from another origin"
            );
        }
    }
    assert!(!js.contains("http://") && !js.contains("https://"));

    // Every element the script looks up by id is in the page.
    for part in js.split("$(\"").skip(1) {
        let id = &part[..part.find('"').unwrap()];
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "app.js uses #{id}, which index.html lacks"
        );
    }

    // The API behind the page still wants the key; unknown assets are the JSON 404.
    let (status, _, _) = get(&s, "/v1/audio/voices").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, h, _) = get(&s, "/ui/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(header(&h, "content-type").starts_with("application/json"));
    s.service.engine.shutdown();
}
