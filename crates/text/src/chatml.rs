//! ChatML messages and their token ids, token for token as the reference
//! `prepare_chatml_sample` (boson_multimodal/dataset/chatml_dataset.py) plus the generation
//! suffix of `HiggsAudioServeEngine._prepare_inputs` / `HiggsAudioModelClient.generate`.
//!
//! Every piece is encoded on its own and the ids are concatenated; encoding the joined string
//! would give different ids at piece boundaries.

use crate::error::{Result, TextError};
use crate::tokenizer::TextTokenizer;

/// Opaque handle of one audio clip. The caller decides what it means (an index into its list of
/// reference clips, a generated-chunk id, ...) and maps it to audio codes; this crate only keeps
/// it in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AudioRef(pub usize);

/// Message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role word written into the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Role::System => 0,
            Role::User => 1,
            Role::Assistant => 2,
        }
    }

    /// How an audio item of a message with this role is rendered: user and system audio is model
    /// input (`<|AUDIO|>`), assistant audio is audio output / a voice reference (`<|AUDIO_OUT|>`).
    pub fn audio_kind(self) -> AudioKind {
        match self {
            Role::System | Role::User => AudioKind::In,
            Role::Assistant => AudioKind::Out,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(TextError::UnknownRole(other.to_string())),
        }
    }
}

/// One content item of a message (`TextContent` / `AudioContent` of boson_multimodal/data_types.py).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text, encoded as is (not stripped).
    Text(String),
    /// An audio clip; rendered as a 3-token placeholder group.
    Audio(AudioRef),
}

/// One ChatML message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Content>,
    /// Tool-call recipient (`{recipient}<|recipient|>` after the header); assistant only. Not
    /// used for TTS.
    pub recipient: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: Vec<Content>) -> Self {
        Self {
            role,
            content,
            recipient: None,
        }
    }

    /// A message holding one text item (the reference's `Message(role, content=str)`).
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self::new(role, vec![Content::Text(text.into())])
    }

    /// A message holding one audio item.
    pub fn audio(role: Role, audio: AudioRef) -> Self {
        Self::new(role, vec![Content::Audio(audio)])
    }

    /// The audio handles of this message, in order.
    pub fn audio_refs(&self) -> impl Iterator<Item = AudioRef> + '_ {
        self.content.iter().filter_map(|c| match c {
            Content::Audio(a) => Some(*a),
            Content::Text(_) => None,
        })
    }
}

/// Whether an audio clip is model input (`<|AUDIO|>`, codes enter as audio-in tokens, or are
/// dropped by the serve engine) or audio output / reference (`<|AUDIO_OUT|>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioKind {
    In,
    Out,
}

/// One audio placeholder of a rendered prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSlot {
    /// The caller's handle; its codes go to this placeholder.
    pub audio: AudioRef,
    pub kind: AudioKind,
    /// Index in [`ChatPrompt::ids`] of the `<|AUDIO|>` / `<|AUDIO_OUT|>` placeholder token.
    pub position: usize,
}

/// Token ids of a rendered conversation and its audio placeholders in document order (the
/// order of the reference's `audio_contents`, which is the order in which the collator assigns
/// `audio_ids_concat` clips to placeholders, input and output alike).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    pub audio: Vec<AudioSlot>,
}

impl ChatPrompt {
    /// The audio handles in placeholder order.
    pub fn audio_refs(&self) -> Vec<AudioRef> {
        self.audio.iter().map(|s| s.audio).collect()
    }
}

/// What follows the rendered messages in a generation prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationSuffix {
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`: the model decides itself to start
    /// audio (examples/generation.py, serve engine with `force_audio_gen=False`).
    Assistant,
    /// The same plus `<|audio_out_bos|>` (serve engine with `force_audio_gen=True`).
    AssistantAudio,
}

impl GenerationSuffix {
    /// The serve engine's `force_audio_gen` flag.
    pub fn from_force_audio_gen(force_audio_gen: bool) -> Self {
        if force_audio_gen {
            Self::AssistantAudio
        } else {
            Self::Assistant
        }
    }
}

/// `prepare_chatml_sample`: the ids of `messages`, without a generation suffix.
///
/// Per message: the role prefix (`<|begin_of_text|>` only on the first message), the recipient
/// if any, every content item (text encoded separately; audio as
/// `<|audio_bos|><|AUDIO|><|audio_eos|>` in user/system messages and
/// `<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>` in assistant messages), then `<|eom_id|>` when
/// an assistant message is directly followed by another assistant message, else `<|eot_id|>`.
///
/// Deviation: text that itself contains `<|AUDIO|>` / `<|AUDIO_OUT|>` is rejected (the reference
/// would build a placeholder without audio and misalign every later clip).
pub fn prepare_chatml_sample(
    tokenizer: &TextTokenizer,
    messages: &[Message],
) -> Result<ChatPrompt> {
    let special = tokenizer.special();
    let pieces = &tokenizer.pieces;
    let mut out = ChatPrompt::default();
    for (turn, message) in messages.iter().enumerate() {
        let role = message.role;
        let prefix = if turn == 0 {
            &pieces.first_prefix[role.index()]
        } else {
            &pieces.prefix[role.index()]
        };
        out.ids.extend_from_slice(prefix);

        // `if recipient:` in the reference: an empty recipient counts as none.
        if let Some(recipient) = message.recipient.as_deref().filter(|r| !r.is_empty()) {
            if role != Role::Assistant {
                return Err(TextError::RecipientOnNonAssistant {
                    role: role.as_str(),
                });
            }
            let ids = tokenizer.encode(&format!("{recipient}<|recipient|>"))?;
            out.ids.extend(ids);
        }

        for item in &message.content {
            match item {
                Content::Text(text) => {
                    let ids = tokenizer.encode(text)?;
                    if let Some(&bad) = ids
                        .iter()
                        .find(|&&id| id == special.audio || id == special.audio_out)
                    {
                        return Err(TextError::PlaceholderInText {
                            role: role.as_str(),
                            token: tokenizer.decode(&[bad])?,
                        });
                    }
                    out.ids.extend(ids);
                }
                Content::Audio(audio) => {
                    let kind = role.audio_kind();
                    let (piece, offset) = match kind {
                        AudioKind::In => (&pieces.audio_in, pieces.audio_in_placeholder),
                        AudioKind::Out => (&pieces.audio_out, pieces.audio_out_placeholder),
                    };
                    out.audio.push(AudioSlot {
                        audio: *audio,
                        kind,
                        position: out.ids.len() + offset,
                    });
                    out.ids.extend_from_slice(piece);
                }
            }
        }

        let next_is_assistant = messages
            .get(turn + 1)
            .is_some_and(|next| next.role == Role::Assistant);
        out.ids
            .push(if role == Role::Assistant && next_is_assistant {
                special.eom
            } else {
                special.eot
            });
    }
    Ok(out)
}

/// A generation prompt: [`prepare_chatml_sample`] of `messages` plus the assistant header (and
/// `<|audio_out_bos|>` for [`GenerationSuffix::AssistantAudio`]).
pub fn generation_prompt(
    tokenizer: &TextTokenizer,
    messages: &[Message],
    suffix: GenerationSuffix,
) -> Result<ChatPrompt> {
    let mut prompt = prepare_chatml_sample(tokenizer, messages)?;
    prompt
        .ids
        .extend_from_slice(&tokenizer.pieces.generation_suffix);
    if suffix == GenerationSuffix::AssistantAudio {
        prompt.ids.push(tokenizer.special().audio_out_bos);
    }
    Ok(prompt)
}
