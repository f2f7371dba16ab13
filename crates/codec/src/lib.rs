//! Higgs audio tokenizer (xcodec: DAC + HuBERT semantic branch + RVQ): codes <-> 24 kHz audio on
//! candle.
//!
//! A native port of `boson_multimodal/audio_processing/higgs_audio_tokenizer.py` (boson-ai/higgs-audio
//! `f04f5df`). Modules mirror the reference files:
//!
//! | module | reference |
//! | --- | --- |
//! | [`higgs_audio_tokenizer`] | `higgs_audio_tokenizer.py` (`HiggsAudioTokenizer`) |
//! | [`dac`] | `descriptaudiocodec/dac/model/dac.py` |
//! | `layers` | `descriptaudiocodec/dac/nn/layers.py` (Snake, weight-norm convs; CUDA kernels from `higgs-kernels`) |
//! | [`hubert`] | transformers `modeling_hubert.py` (`HubertModel`) |
//! | [`semantic_module`] | `semantic_module.py` |
//! | [`quantizer`] | `quantization/vq.py`, `core_vq_lsx_version.py` |
//! | [`resample`] | `torchaudio.functional.resample` |
//! | [`checkpoint`], [`config`] | `load_higgs_audio_tokenizer` + transformers' converter |
//! | [`streaming`] | chunked decode (vLLM fork `xcodec_decode_chunk_by_chunk`, generalised) |
//! | [`codes`] | the code matrix type (`Codes`) |
//! | [`codes_file`] | this crate's codes file format |
//! | [`options`] | [`CodecOptions`]: the CUDA fast paths, fixed at load time |
//! | [`random_checkpoint`], `pth_writer` | random checkpoints for tests / `dev make-checkpoint` |
//!
//! Everything runs in float32 on any candle device; shapes and widths come from the checkpoint
//! tensors, never from constants. See `docs/codec.md` for the API, file format and streaming
//! tolerance.

pub mod checkpoint;
pub mod codes;
pub mod codes_file;
pub mod config;
pub mod dac;
pub mod error;
pub mod higgs_audio_tokenizer;
pub mod hubert;
mod layers;
pub mod options;
pub mod pth_writer;
pub mod quantizer;
pub mod random_checkpoint;
pub mod resample;
pub mod semantic_module;
pub mod streaming;

pub use codes::Codes;
pub use codes_file::{read_codes, write_codes, CodesFile};
pub use config::{CheckpointLayout, CodecConfig, HubertConfig};
pub use dac::{DecoderOp, DecoderState, StepSpan};
pub use error::{CodecError, Result};
pub use higgs_audio_tokenizer::{Codec, DecodeTrace, EncodeTrace};
pub use options::CodecOptions;
pub use random_checkpoint::{write_random_checkpoint, Preset};
pub use streaming::{Step, StepAudio, StreamingDecoder, Window, WindowPlanner};
