//! The conversation context that the reference CLI builds before the chunk loop:
//! `prepare_generation_context` of examples/generation.py (system message, scene description,
//! reference voices as user+assistant turns or inside the system message, `profile:` voices,
//! the multi-speaker default system message).
//!
//! Voice data comes from the caller: a [`VoiceLookup`] returns a reference voice's transcript
//! and an opaque [`AudioRef`] for its audio; [`VoiceProfiles`] holds the text-only profiles.

use crate::chatml::{AudioRef, Content, Message, Role};
use crate::error::{Result, TextError};
use crate::normalize::py_strip;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Base instruction of every non-multi-speaker system message.
pub const BASE_SYSTEM_MESSAGE: &str = "Generate audio following instruction.";

/// `MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE` of examples/generation.py.
pub const MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE: &str = "You are an AI assistant designed to convert text into speech.\n\
If the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech for the following text, using the specified voice.\n\
If no speaker tag is present, select a suitable voice on your own.";

/// Contents of the reference's default scene prompt file, `examples/scene_prompts/quiet_indoor.txt`
/// (after `.strip()`).
pub const DEFAULT_SCENE_PROMPT: &str = "Audio is recorded from a quiet room.";

/// The `--scene_prompt` value that disables the scene description.
pub const SCENE_PROMPT_EMPTY: &str = "empty";

/// Resolves a `--scene_prompt` argument as the reference `main()` does: no argument → the
/// default quiet-room scene; `empty` → none; otherwise the path of a file whose stripped contents
/// are the scene (an empty file gives none).
///
/// Deviation: a path that does not exist is an error here; the reference silently drops the scene.
pub fn resolve_scene_prompt_arg(arg: Option<&str>) -> Result<Option<String>> {
    let path = match arg {
        None => return Ok(Some(DEFAULT_SCENE_PROMPT.to_string())),
        Some(SCENE_PROMPT_EMPTY) => return Ok(None),
        Some(path) => Path::new(path),
    };
    if !path.exists() {
        return Err(TextError::ScenePromptNotFound(path.to_path_buf()));
    }
    let text = read_to_string(path)?;
    let text = py_strip(&text);
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// Resolves a `--transcript` argument as the reference: an existing file is read and stripped,
/// anything else is the literal transcript.
pub fn resolve_transcript_arg(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if path.is_file() {
        Ok(py_strip(&read_to_string(path)?).to_string())
    } else {
        Ok(arg.to_string())
    }
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| TextError::ReadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// One entry of `--ref_audio`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceSpec {
    /// A reference voice by name (audio + transcript from the voice library).
    Reference(String),
    /// `profile:NAME`: a text-only description from the profile file.
    Profile(String),
}

impl VoiceSpec {
    /// Parses a `--ref_audio` value exactly as the reference: `split(",")` without trimming;
    /// entries starting with `profile:` are profiles, whose name is the rest, stripped.
    pub fn parse_list(ref_audio: &str) -> Vec<VoiceSpec> {
        ref_audio
            .split(',')
            .map(|entry| match entry.strip_prefix("profile:") {
                Some(name) => VoiceSpec::Profile(py_strip(name).to_string()),
                None => VoiceSpec::Reference(entry.to_string()),
            })
            .collect()
    }
}

/// A reference voice as the CLI uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceVoice {
    /// Transcript of the reference recording (stripped before use, as the reference).
    pub transcript: String,
    /// Handle of the recording's audio codes.
    pub audio: AudioRef,
}

/// The caller's voice library.
pub trait VoiceLookup {
    /// The reference voice `name`, or [`TextError::UnknownVoice`].
    fn reference_voice(&self, name: &str) -> Result<ReferenceVoice>;
}

impl VoiceLookup for HashMap<String, ReferenceVoice> {
    fn reference_voice(&self, name: &str) -> Result<ReferenceVoice> {
        self.get(name)
            .cloned()
            .ok_or_else(|| unknown_voice(name, self.keys()))
    }
}

impl VoiceLookup for BTreeMap<String, ReferenceVoice> {
    fn reference_voice(&self, name: &str) -> Result<ReferenceVoice> {
        self.get(name)
            .cloned()
            .ok_or_else(|| unknown_voice(name, self.keys()))
    }
}

fn unknown_voice<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> TextError {
    let mut known: Vec<&str> = known.map(String::as_str).collect();
    known.sort_unstable();
    TextError::UnknownVoice {
        name: name.to_string(),
        reason: format!("known voices: {}", known.join(", ")),
    }
}

/// Text-only voice profiles (`profile.yaml`: `profiles: {NAME: description}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VoiceProfiles {
    profiles: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ProfileFile {
    profiles: BTreeMap<String, ProfileValue>,
}

/// YAML scalars of any kind; the reference formats them with `str()` in an f-string.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ProfileValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl VoiceProfiles {
    /// The four profiles of the official `examples/voice_prompts/profile.yaml` (Apache-2.0).
    pub fn official() -> Self {
        // The embedded file is checked by this crate's tests, so a parse error here is a build
        // defect; fall back to no profiles rather than panic.
        Self::from_yaml_str(
            include_str!("../data/profile.yaml"),
            "built-in profile.yaml",
        )
        .unwrap_or_default()
    }

    /// Parses profile YAML; `origin` names it in errors.
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<Self> {
        let file: ProfileFile = serde_yaml::from_str(yaml).map_err(|e| TextError::ProfileFile {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let profiles = file
            .profiles
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    ProfileValue::Text(s) => s,
                    ProfileValue::Int(i) => i.to_string(),
                    ProfileValue::Float(f) => f.to_string(),
                    ProfileValue::Bool(b) => if b { "True" } else { "False" }.to_string(),
                };
                (name, text)
            })
            .collect();
        Ok(Self { profiles })
    }

    /// Reads a profile YAML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_yaml_str(&read_to_string(path)?, &path.display().to_string())
    }

    /// The description of profile `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.profiles.get(name).map(String::as_str)
    }

    /// Profile names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    fn describe(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| TextError::UnknownProfile {
            name: name.to_string(),
            known: self.names().collect::<Vec<_>>().join(", "),
        })
    }
}

/// Inputs of `prepare_generation_context`.
#[derive(Debug, Clone, Copy)]
pub struct ContextOptions<'a> {
    /// The resolved scene text (see [`resolve_scene_prompt_arg`]); `None` or empty: no scene.
    pub scene_prompt: Option<&'a str>,
    /// `--ref_audio` entries (empty: no reference voice).
    pub voices: &'a [VoiceSpec],
    /// `--ref_audio_in_system_message` (forced on when any voice is a profile).
    pub ref_audio_in_system_message: bool,
    /// [`crate::normalize::speaker_tags`] of the raw transcript.
    pub speaker_tags: &'a [String],
}

/// Output of `prepare_generation_context`: the base messages, and the reference audio handles in
/// the order the reference appends them to `audio_ids` (which is also their placeholder order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenerationContext {
    pub messages: Vec<Message>,
    pub reference_audio: Vec<AudioRef>,
}

/// `prepare_generation_context(scene_prompt, ref_audio, ref_audio_in_system_message, ...)`.
///
/// * No voices, ≥ 2 speaker tags: the multi-speaker default system message with
///   `SPEAKERi: feminine|masculine` (alternating by index in the sorted tag list).
/// * No voices otherwise: `Generate audio following instruction.` (+ the scene block).
/// * Voices in the system message (flag, or any `profile:` voice): one system message with
///   `SPEAKERi: <audio>` (audio-IN placeholder) or `SPEAKERi: {profile}` lines.
/// * Voices as turns: a system message only if there is a scene; per reference voice a user turn
///   with its transcript (`[SPEAKERi] ` prefix only with ≥ 2 voices) and an assistant audio turn.
///
/// `profiles` is needed only for `profile:` voices.
pub fn prepare_generation_context(
    options: &ContextOptions<'_>,
    voices: &dyn VoiceLookup,
    profiles: Option<&VoiceProfiles>,
) -> Result<GenerationContext> {
    // `if scene_prompt:` — an empty scene is no scene.
    let scene = options.scene_prompt.filter(|s| !s.is_empty());
    let mut messages = Vec::new();
    let mut reference_audio = Vec::new();
    let mut system: Option<Message> = None;

    if !options.voices.is_empty() {
        let num_speakers = options.voices.len();
        let in_system = options.ref_audio_in_system_message
            || options
                .voices
                .iter()
                .any(|v| matches!(v, VoiceSpec::Profile(_)));
        // Voice lookups happen in voice order, as the reference's second loop; the audio handles
        // are the reference's `audio_ids`.
        let mut resolved: Vec<Option<ReferenceVoice>> = Vec::with_capacity(num_speakers);
        for spec in options.voices {
            resolved.push(match spec {
                VoiceSpec::Reference(name) => Some(voices.reference_voice(name)?),
                VoiceSpec::Profile(_) => None,
            });
        }

        if in_system {
            // The reference writes an `<|__AUDIO_PLACEHOLDER__|>` string and splits on it; here
            // the content list is built directly: [text, audio, text, ..., text].
            let mut content = Vec::new();
            let mut text =
                String::from("Generate audio following instruction.\n\n<|scene_desc_start|>\n");
            if let Some(scene) = scene {
                text.push_str(scene);
                text.push_str("\n\n");
            }
            for (i, (spec, voice)) in options.voices.iter().zip(&resolved).enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                text.push_str(&format!("SPEAKER{i}: "));
                match (spec, voice) {
                    (VoiceSpec::Profile(name), _) => {
                        let profiles =
                            profiles.ok_or_else(|| TextError::NoProfiles(name.clone()))?;
                        text.push_str(profiles.describe(name)?);
                    }
                    (VoiceSpec::Reference(_), Some(voice)) => {
                        content.push(Content::Text(std::mem::take(&mut text)));
                        content.push(Content::Audio(voice.audio));
                    }
                    (VoiceSpec::Reference(name), None) => {
                        return Err(TextError::UnknownVoice {
                            name: name.clone(),
                            reason: "not resolved".to_string(),
                        })
                    }
                }
            }
            text.push_str("\n<|scene_desc_end|>");
            content.push(Content::Text(text));
            system = Some(Message::new(Role::System, content));
        } else if let Some(scene) = scene {
            system = Some(Message::text(
                Role::System,
                format!(
                    "{BASE_SYSTEM_MESSAGE}\n\n<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>"
                ),
            ));
        }

        for (i, voice) in resolved.iter().enumerate() {
            let Some(voice) = voice else { continue };
            reference_audio.push(voice.audio);
            if !in_system {
                let transcript = py_strip(&voice.transcript);
                let text = if num_speakers > 1 {
                    format!("[SPEAKER{i}] {transcript}")
                } else {
                    transcript.to_string()
                };
                messages.push(Message::text(Role::User, text));
                messages.push(Message::audio(Role::Assistant, voice.audio));
            }
        }
    } else if options.speaker_tags.len() > 1 {
        let speaker_desc = options
            .speaker_tags
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                let desc = if i % 2 == 0 { "feminine" } else { "masculine" };
                format!("{tag}: {desc}")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let scene_desc = match scene {
            Some(scene) => format!("{scene}\n\n{speaker_desc}"),
            None => speaker_desc,
        };
        system = Some(Message::text(
            Role::System,
            format!("{MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE}\n\n<|scene_desc_start|>\n{scene_desc}\n<|scene_desc_end|>"),
        ));
    } else {
        let text = match scene {
            Some(scene) => format!(
                "{BASE_SYSTEM_MESSAGE}\n\n<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>"
            ),
            None => BASE_SYSTEM_MESSAGE.to_string(),
        };
        system = Some(Message::text(Role::System, text));
    }

    if let Some(system) = system {
        messages.insert(0, system);
    }
    Ok(GenerationContext {
        messages,
        reference_audio,
    })
}
