//! The voice library: a directory of `NAME.wav` + `NAME.txt` (+ an optional `profile.yaml`), laid
//! out like `examples/voice_prompts/` of the reference and the RunPod network volume.
//!
//! Reference codes are computed once per recording and cached beside it (`NAME.codes` in the
//! codec's codes-file format, plus `NAME.codes.json` holding the SHA-256 of the audio file and a
//! fingerprint of the codec); a changed recording or another codec invalidates the cache. A
//! read-only volume just skips the cache write. Names are restricted to letters, digits, `_` and
//! `-` so a name can never escape the directory.

use higgs_audio_io::DecodeLimits;
use higgs_codec::{Codec, CodesFile};
use higgs_text::{ReferenceVoice, TextError, VoiceLookup, VoiceProfiles};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::delay::Codes;

/// Audio extensions a voice recording may have, in lookup order.
const AUDIO_EXTS: [&str; 4] = ["wav", "flac", "mp3", "ogg"];
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("invalid voice name {name:?}: use 1-{MAX_NAME_LEN} letters, digits, '_' or '-'")]
    InvalidName { name: String },
    #[error("unknown voice {name:?}; available voices: {}", if available.is_empty() { "(none)".to_string() } else { available.join(", ") })]
    Unknown {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "voice {name:?} has no transcript file {path} (each voice needs NAME.wav and NAME.txt)"
    )]
    NoTranscript { name: String, path: PathBuf },
    #[error(
        "voice {name:?}: the transcript is empty; give the exact words spoken in the recording"
    )]
    EmptyTranscript { name: String },
    #[error("voice {name:?} already exists; delete it first or pick another name")]
    Exists { name: String },
    #[error("voice {name:?} is being created by another upload right now; pick another name or retry after it finished")]
    Busy { name: String },
    #[error("voice directory {path}: {reason}")]
    Dir { path: PathBuf, reason: String },
    #[error("voice {name:?}: cannot read its audio: {source}")]
    Audio {
        name: String,
        #[source]
        source: higgs_audio_io::AudioError,
    },
    #[error("voice {name:?}: cannot encode its audio: {source}")]
    Codec {
        name: String,
        #[source]
        source: higgs_codec::CodecError,
    },
    #[error("voice {name:?}: {reason}")]
    Io { name: String, reason: String },
}

/// One entry of the library listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceInfo {
    pub name: String,
    /// Transcript of the recording (what the reference speaker says).
    pub transcript: String,
    pub audio_file: PathBuf,
}

/// What the library knows about one voice ([`VoiceLibrary::details`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceDetails {
    pub name: String,
    /// Transcript of the recording.
    pub transcript: String,
    /// The recording's container (`wave`, `flac`, `ogg`, `mp3`, ...).
    pub format: String,
    /// Length of the recording in seconds.
    pub duration_seconds: f64,
    /// Sample rate of the recording as stored (the codec resamples it).
    pub sample_rate: u32,
    pub channels: usize,
    /// Size of the recording file in bytes.
    pub bytes: u64,
    /// Whether reference codes of this very recording are cached (`NAME.codes` with a key for the
    /// recording's current SHA-256, or in memory): a request with this voice skips the encode.
    pub cached_codes: bool,
}

/// Validates a voice name (no path separators, dots, or anything outside `[A-Za-z0-9_-]`).
pub fn validate_voice_name(name: &str) -> Result<(), VoiceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(VoiceError::InvalidName {
            name: name.to_string(),
        })
    }
}

pub struct VoiceLibrary {
    dir: PathBuf,
    limits: DecodeLimits,
    /// In-memory cache: name -> (audio sha256, codes).
    memo: Mutex<HashMap<String, (String, Codes)>>,
    /// Names an upload is being written under right now (one upload per name at a time).
    creating: Mutex<std::collections::HashSet<String>>,
}

/// A name reserved for one upload; released on drop.
struct Reservation<'a> {
    set: &'a Mutex<std::collections::HashSet<String>>,
    name: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl VoiceLibrary {
    pub fn open(dir: &Path) -> Result<Self, VoiceError> {
        if !dir.is_dir() {
            return Err(VoiceError::Dir {
                path: dir.to_path_buf(),
                reason: "does not exist or is not a directory".into(),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            limits: DecodeLimits::default(),
            memo: Mutex::new(HashMap::new()),
            creating: Mutex::new(std::collections::HashSet::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    fn audio_path(&self, name: &str) -> Option<PathBuf> {
        AUDIO_EXTS
            .iter()
            .map(|e| self.dir.join(format!("{name}.{e}")))
            .find(|p| p.is_file())
    }

    /// Names of every voice (recording + transcript), sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let ext = p.extension()?.to_str()?;
                if !AUDIO_EXTS.contains(&ext) {
                    return None;
                }
                let name = p.file_stem()?.to_str()?.to_string();
                (validate_voice_name(&name).is_ok()
                    && self.dir.join(format!("{name}.txt")).is_file())
                .then_some(name)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn list(&self) -> Vec<VoiceInfo> {
        self.names()
            .into_iter()
            .filter_map(|n| {
                Some(VoiceInfo {
                    transcript: self.transcript(&n).ok()?,
                    audio_file: self.audio_path(&n)?,
                    name: n,
                })
            })
            .collect()
    }

    fn check(&self, name: &str) -> Result<PathBuf, VoiceError> {
        validate_voice_name(name)?;
        self.audio_path(name).ok_or_else(|| VoiceError::Unknown {
            name: name.to_string(),
            available: self.names(),
        })
    }

    /// Transcript, length, rate and code-cache state of a voice (reads the recording's header;
    /// decodes it only when the header declares no length).
    pub fn details(&self, name: &str) -> Result<VoiceDetails, VoiceError> {
        let transcript = self.transcript(name)?;
        let audio = self.check(name)?;
        let io = |e: std::io::Error| VoiceError::Io {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let bytes = std::fs::read(&audio).map_err(io)?;
        let audio_err = |e| VoiceError::Audio {
            name: name.to_string(),
            source: e,
        };
        let header = higgs_audio_io::probe_bytes(&bytes, &self.limits).map_err(audio_err)?;
        let (duration_seconds, sample_rate, channels) =
            match (header.declared_seconds, header.sample_rate, header.channels) {
                (Some(d), Some(r), Some(c)) => (d, r, c),
                _ => {
                    let a =
                        higgs_audio_io::decode_bytes(&bytes, &self.limits).map_err(audio_err)?;
                    (a.duration_seconds(), a.sample_rate, a.source_channels)
                }
            };
        let sha = hex(&Sha256::digest(&bytes));
        let in_memory = self
            .memo
            .lock()
            .map(|m| m.get(name).is_some_and(|(s, _)| *s == sha))
            .unwrap_or(false);
        let on_disk = self.dir.join(format!("{name}.codes")).is_file()
            && std::fs::read_to_string(self.dir.join(format!("{name}.codes.json")))
                .ok()
                .and_then(|k| serde_json::from_str::<serde_json::Value>(&k).ok())
                .is_some_and(|k| k["audio_sha256"] == sha.as_str());
        Ok(VoiceDetails {
            name: name.to_string(),
            transcript,
            format: header.container.to_string(),
            duration_seconds,
            sample_rate,
            channels,
            bytes: bytes.len() as u64,
            cached_codes: in_memory || on_disk,
        })
    }

    /// The stripped transcript of a voice.
    pub fn transcript(&self, name: &str) -> Result<String, VoiceError> {
        self.check(name)?;
        let p = self.dir.join(format!("{name}.txt"));
        let t = std::fs::read_to_string(&p).map_err(|_| VoiceError::NoTranscript {
            name: name.to_string(),
            path: p.clone(),
        })?;
        Ok(t.trim().to_string())
    }

    /// Text-only voice profiles from `profile.yaml` (or `profiles.yaml`), if present.
    pub fn profiles(&self) -> Result<Option<VoiceProfiles>, VoiceError> {
        for f in ["profile.yaml", "profiles.yaml"] {
            let p = self.dir.join(f);
            if p.is_file() {
                return VoiceProfiles::from_file(&p)
                    .map(Some)
                    .map_err(|e| VoiceError::Dir {
                        path: p,
                        reason: e.to_string(),
                    });
            }
        }
        Ok(None)
    }

    /// Reference codes of a voice, from the cache when it is still valid, else encoded with
    /// `codec` (and cached).
    pub fn reference_codes(&self, name: &str, codec: &Codec) -> Result<Codes, VoiceError> {
        self.reference_codes_with(name, codec, |s| codec.encode(s))
    }

    /// [`Self::reference_codes`] with the encode done by `encode` (the engine passes one that
    /// takes its codec lock, so only a cache miss's encode waits for the codec).
    pub fn reference_codes_with(
        &self,
        name: &str,
        codec: &Codec,
        encode: impl FnOnce(&[f32]) -> Result<candle_core::Tensor, higgs_codec::CodecError>,
    ) -> Result<Codes, VoiceError> {
        let audio = self.check(name)?;
        let io = |e: std::io::Error| VoiceError::Io {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let bytes = std::fs::read(&audio).map_err(io)?;
        let sha = hex(&Sha256::digest(&bytes));
        let fp = codec_fingerprint(codec);
        if let Ok(m) = self.memo.lock() {
            if let Some((s, c)) = m.get(name) {
                if *s == sha {
                    return Ok(c.clone());
                }
            }
        }
        let cache = self.dir.join(format!("{name}.codes"));
        let key_path = self.dir.join(format!("{name}.codes.json"));
        let key = serde_json::json!({"audio_sha256": sha, "codec": fp}).to_string();
        let cached = std::fs::read_to_string(&key_path)
            .ok()
            .filter(|k| *k == key)
            .and_then(|_| higgs_codec::read_codes(&cache).ok())
            .filter(|f| f.n_codebooks == codec.num_codebooks());
        let codes = match cached {
            Some(f) => Codes::new(
                f.n_codebooks,
                f.codes.iter().map(|&c| u32::from(c)).collect(),
            ),
            None => None,
        };
        let codes = match codes {
            Some(c) => c,
            None => {
                let samples =
                    higgs_audio_io::load_bytes(&bytes, codec.sample_rate() as u32, &self.limits)
                        .map_err(|e| VoiceError::Audio {
                            name: name.to_string(),
                            source: e,
                        })?;
                let t = encode(&samples).map_err(|e| VoiceError::Codec {
                    name: name.to_string(),
                    source: e,
                })?;
                let file = CodesFile::from_tensor(
                    &t,
                    codec.sample_rate() as u32,
                    codec.hop_length() as u32,
                    codec.codebook_size() as u32,
                )
                .map_err(|e| VoiceError::Codec {
                    name: name.to_string(),
                    source: e,
                })?;
                // A read-only volume is fine: the codes stay in memory for this process.
                if higgs_codec::write_codes(&cache, &file).is_ok() {
                    let _ = std::fs::write(&key_path, &key);
                } else {
                    tracing::warn!(
                        voice = name,
                        "cannot write the reference-code cache; continuing without it"
                    );
                }
                Codes::new(
                    file.n_codebooks,
                    file.codes.iter().map(|&c| u32::from(c)).collect(),
                )
                .ok_or_else(|| VoiceError::Io {
                    name: name.to_string(),
                    reason: "encoder returned no codebooks".into(),
                })?
            }
        };
        if let Ok(mut m) = self.memo.lock() {
            m.insert(name.to_string(), (sha, codes.clone()));
        }
        Ok(codes)
    }

    /// Adds a voice from an uploaded recording and its transcript. The audio is validated (it must
    /// decode within the limits) and stored as 16-bit WAV at the codec rate.
    ///
    /// Exactly one of concurrent uploads of a name wins: the name is reserved for one upload at a
    /// time (the others get [`VoiceError::Busy`]), and the files are written to temporary files and
    /// moved into place without replacing anything (a name taken meanwhile, also by another
    /// process, is [`VoiceError::Exists`] and leaves the winner's files alone).
    pub fn add(
        &self,
        name: &str,
        audio: &[u8],
        transcript: &str,
        sample_rate: u32,
    ) -> Result<(), VoiceError> {
        validate_voice_name(name)?;
        if transcript.trim().is_empty() {
            return Err(VoiceError::EmptyTranscript {
                name: name.to_string(),
            });
        }
        let _reserved = self.reserve(name)?;
        if self.audio_path(name).is_some() {
            return Err(VoiceError::Exists {
                name: name.to_string(),
            });
        }
        let samples =
            higgs_audio_io::load_bytes(audio, sample_rate, &self.limits).map_err(|e| {
                VoiceError::Audio {
                    name: name.to_string(),
                    source: e,
                }
            })?;
        let wav = higgs_audio_io::encode(higgs_audio_io::AudioFormat::Wav, &samples, sample_rate)
            .map_err(|e| VoiceError::Audio {
            name: name.to_string(),
            source: e,
        })?;
        let io = |e: std::io::Error| VoiceError::Io {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let staged = |bytes: &[u8]| -> Result<tempfile::NamedTempFile, VoiceError> {
            use std::io::Write;
            let mut f = tempfile::Builder::new()
                .prefix(".upload-")
                .tempfile_in(&self.dir)
                .map_err(io)?;
            f.write_all(bytes).map_err(io)?;
            f.as_file().sync_all().map_err(io)?;
            Ok(f)
        };
        let txt = staged(transcript.trim().as_bytes())?;
        let wav = staged(&wav)?;
        let exists = |e: tempfile::PersistError| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                VoiceError::Exists {
                    name: name.to_string(),
                }
            } else {
                io(e.error)
            }
        };
        // The transcript first, the recording last: a voice is listed once both are there, and
        // whoever placed the transcript owns the name.
        let txt_path = self.dir.join(format!("{name}.txt"));
        txt.persist_noclobber(&txt_path).map_err(exists)?;
        if let Err(e) = wav.persist_noclobber(self.dir.join(format!("{name}.wav"))) {
            let _ = std::fs::remove_file(&txt_path);
            return Err(exists(e));
        }
        Ok(())
    }

    /// Reserves `name` for one upload of this process.
    fn reserve(&self, name: &str) -> Result<Reservation<'_>, VoiceError> {
        let mut set = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(name.to_string()) {
            return Err(VoiceError::Busy {
                name: name.to_string(),
            });
        }
        Ok(Reservation {
            set: &self.creating,
            name: name.to_string(),
        })
    }

    /// Deletes a voice (recording, transcript and cached codes).
    pub fn delete(&self, name: &str) -> Result<(), VoiceError> {
        let audio = self.check(name)?;
        let io = |e: std::io::Error| VoiceError::Io {
            name: name.to_string(),
            reason: e.to_string(),
        };
        std::fs::remove_file(audio).map_err(io)?;
        for f in [
            format!("{name}.txt"),
            format!("{name}.codes"),
            format!("{name}.codes.json"),
        ] {
            let p = self.dir.join(f);
            if p.exists() {
                std::fs::remove_file(p).map_err(io)?;
            }
        }
        if let Ok(mut m) = self.memo.lock() {
            m.remove(name);
        }
        Ok(())
    }
}

/// A stable description of the codec whose codes are cached.
fn codec_fingerprint(codec: &Codec) -> String {
    hex(&Sha256::digest(format!("{:?}", codec.config()).as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Voices resolved for one request: name -> (transcript, handle), with the codes per handle.
#[derive(Debug, Default, Clone)]
pub struct ResolvedVoices {
    pub voices: BTreeMap<String, ReferenceVoice>,
    pub clips: Vec<Codes>,
}

impl ResolvedVoices {
    /// Adds a voice with its codes; returns its handle.
    pub fn insert(&mut self, name: &str, transcript: String, codes: Codes) -> higgs_text::AudioRef {
        let handle = higgs_text::AudioRef(self.clips.len());
        self.clips.push(codes);
        self.voices.insert(
            name.to_string(),
            ReferenceVoice {
                transcript,
                audio: handle,
            },
        );
        handle
    }
}

impl VoiceLookup for ResolvedVoices {
    fn reference_voice(&self, name: &str) -> higgs_text::Result<ReferenceVoice> {
        self.voices
            .get(name)
            .cloned()
            .ok_or_else(|| TextError::UnknownVoice {
                name: name.to_string(),
                reason: format!(
                    "known voices: {}",
                    self.voices.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One second of a 440 Hz tone as a 24 kHz WAV file.
    fn tone_wav(amplitude: f32) -> Vec<u8> {
        let s: Vec<f32> = (0..24_000)
            .map(|i| amplitude * (i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin())
            .collect();
        higgs_audio_io::encode(higgs_audio_io::AudioFormat::Wav, &s, 24_000).unwrap()
    }

    #[test]
    fn exactly_one_of_concurrent_uploads_of_a_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        let lib = std::sync::Arc::new(VoiceLibrary::open(dir.path()).unwrap());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let lib = lib.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let audio = tone_wav(0.1 + 0.1 * i as f32);
                    barrier.wait();
                    (i, lib.add("same", &audio, &format!("upload {i}"), 24_000))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, VoiceError::Busy { .. } | VoiceError::Exists { .. }),
                    "{e}"
                );
            }
        }
        // The stored files are the winner's, both of them.
        let w = winners[0];
        assert_eq!(lib.transcript("same").unwrap(), format!("upload {w}"));
        let stored =
            higgs_audio_io::load_file(&dir.path().join("same.wav"), 24_000, &Default::default())
                .unwrap();
        let want = higgs_audio_io::load_bytes(
            &tone_wav(0.1 + 0.1 * w as f32),
            24_000,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(stored.len(), want.len());
        assert!(stored.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3));
        // No temporary file is left behind, and the name is free for nobody else now.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(matches!(
            lib.add("same", &tone_wav(0.5), "again", 24_000),
            Err(VoiceError::Exists { .. })
        ));
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for bad in [
            "../../etc/passwd",
            "a/b",
            "",
            ".hidden",
            "x y",
            "a.wav",
            "é",
            &"a".repeat(65),
        ] {
            assert!(validate_voice_name(bad).is_err(), "{bad:?}");
        }
        for good in ["belinda", "en_man", "zh-1", "A9"] {
            assert!(validate_voice_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn unknown_voice_lists_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.wav"), b"x").unwrap();
        std::fs::write(dir.path().join("alice.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("orphan.wav"), b"x").unwrap();
        let lib = VoiceLibrary::open(dir.path()).unwrap();
        assert_eq!(lib.names(), vec!["alice".to_string()]);
        let e = lib.transcript("bob").unwrap_err().to_string();
        assert!(e.contains("bob") && e.contains("alice"), "{e}");
        assert!(matches!(
            lib.transcript("../alice"),
            Err(VoiceError::InvalidName { .. })
        ));
        assert_eq!(lib.transcript("alice").unwrap(), "hello");
    }
}
