//! JSON message formats mapped onto [`Message`]: the serve-engine / `boson_multimodal.data_types`
//! form (`content` is a string, one `{"type": "text"|"audio", ...}` item or a list of them) and
//! OpenAI chat messages (`text` and `input_audio` parts, plus vLLM's `audio_url` part).
//!
//! Audio parts are handed to a caller-supplied resolver that stores or decodes them and returns
//! an [`AudioRef`]; this crate never touches audio bytes.

use crate::chatml::{AudioRef, Content, Message, Role};
use crate::error::{Result, TextError};
use serde::Deserialize;

/// One message as it arrives in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WireMessage {
    pub role: String,
    /// `null` / missing content is an empty message.
    #[serde(default)]
    pub content: Option<WireContent>,
    #[serde(default)]
    pub recipient: Option<String>,
}

/// `content`: a plain string, a single item, or a list of items (strings allowed in lists, as in
/// `prepare_chatml_sample`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    Part(WirePart),
    Parts(Vec<WireItem>),
}

/// A list element: a bare string or a typed part.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WireItem {
    Text(String),
    Part(WirePart),
}

/// A typed content part.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WirePart {
    /// `{"type": "text", "text": ...}` (both formats).
    Text { text: String },
    /// `{"type": "audio", "audio_url": ..., "raw_audio": base64?}` (boson `AudioContent`).
    Audio {
        #[serde(default)]
        audio_url: Option<String>,
        #[serde(default)]
        raw_audio: Option<String>,
    },
    /// `{"type": "input_audio", "input_audio": {"data": base64, "format": "wav"}}` (OpenAI).
    InputAudio { input_audio: InputAudio },
    /// `{"type": "audio_url", "audio_url": {"url": ...}}` (vLLM).
    AudioUrl { audio_url: UrlRef },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputAudio {
    pub data: String,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UrlRef {
    pub url: String,
}

/// Where an audio part's bytes are, as given by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioSource<'a> {
    /// A URL or path (may be empty: the reference uses `audio_url=""` for clips whose codes are
    /// supplied separately, e.g. voices in the system message).
    Url(&'a str),
    /// Base64 bytes with an optional container format.
    Base64 {
        data: &'a str,
        format: Option<&'a str>,
    },
}

/// Where an audio item appears, so a resolver can tell references from inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSite {
    /// Index of the message in the list.
    pub message: usize,
    pub role: Role,
}

impl WireMessage {
    /// Converts to a [`Message`]; `resolve` turns each audio part into a handle, in document order.
    pub fn to_message(
        &self,
        index: usize,
        resolve: &mut dyn FnMut(AudioSite, AudioSource<'_>) -> Result<AudioRef>,
    ) -> Result<Message> {
        let role: Role = self.role.parse()?;
        let site = AudioSite {
            message: index,
            role,
        };
        let mut content = Vec::new();
        let mut push_part = |part: &WirePart, content: &mut Vec<Content>| -> Result<()> {
            let source = match part {
                WirePart::Text { text } => {
                    content.push(Content::Text(text.clone()));
                    return Ok(());
                }
                WirePart::Audio {
                    raw_audio: Some(data),
                    ..
                } => AudioSource::Base64 { data, format: None },
                WirePart::Audio { audio_url, .. } => {
                    AudioSource::Url(audio_url.as_deref().unwrap_or(""))
                }
                WirePart::InputAudio { input_audio } => AudioSource::Base64 {
                    data: &input_audio.data,
                    format: input_audio.format.as_deref(),
                },
                WirePart::AudioUrl { audio_url } => AudioSource::Url(&audio_url.url),
            };
            content.push(Content::Audio(resolve(site, source)?));
            Ok(())
        };
        match &self.content {
            None => {}
            Some(WireContent::Text(text)) => content.push(Content::Text(text.clone())),
            Some(WireContent::Part(part)) => push_part(part, &mut content)?,
            Some(WireContent::Parts(items)) => {
                for item in items {
                    match item {
                        WireItem::Text(text) => content.push(Content::Text(text.clone())),
                        WireItem::Part(part) => push_part(part, &mut content)?,
                    }
                }
            }
        }
        Ok(Message {
            role,
            content,
            recipient: self.recipient.clone(),
        })
    }
}

/// Converts a list of wire messages; audio parts are resolved in document order.
pub fn messages_from_wire(
    messages: &[WireMessage],
    mut resolve: impl FnMut(AudioSite, AudioSource<'_>) -> Result<AudioRef>,
) -> Result<Vec<Message>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| m.to_message(i, &mut resolve))
        .collect()
}

/// Parses a JSON array of messages (either format) and converts it.
pub fn messages_from_json(
    json: &str,
    resolve: impl FnMut(AudioSite, AudioSource<'_>) -> Result<AudioRef>,
) -> Result<Vec<Message>> {
    let wire: Vec<WireMessage> = serde_json::from_str(json)
        .map_err(|e| TextError::InvalidMessage(format!("bad message JSON: {e}")))?;
    messages_from_wire(&wire, resolve)
}
