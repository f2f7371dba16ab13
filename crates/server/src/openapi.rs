//! `GET /openapi.json`, generated from the handlers and wire types.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "higgs-serve",
        description = "Rust-native serving for Higgs Audio v2: OpenAI-compatible speech and chat, native /generate, voices."
    ),
    paths(
        crate::routes::speech::speech,
        crate::routes::chat::chat,
        crate::routes::generate::generate,
        crate::routes::voices::list,
        crate::routes::voices::details,
        crate::routes::voices::create,
        crate::routes::voices::remove,
        crate::routes::health::health,
        crate::routes::health::ping,
        crate::routes::health::models,
        crate::routes::health::metrics,
    ),
    components(schemas(
        higgs_api::speech::SpeechRequest,
        higgs_api::speech::VoiceParam,
        higgs_api::chat::ChatRequest,
        higgs_api::chat::ChatAudioParam,
        higgs_api::chat::StreamOptions,
        higgs_api::generate::GenerateRequestWire,
        higgs_api::generate::GenerateResponse,
        higgs_api::ErrorBody,
        crate::routes::voices::VoiceList,
        crate::routes::voices::CreateVoice,
        crate::routes::voices::VoiceDetailsBody,
        higgs_api::health::Health,
        higgs_api::generate::GenerateBody,
        crate::routes::generate::GenerateAnswer,
    ))
)]
pub struct ApiDoc;

pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
