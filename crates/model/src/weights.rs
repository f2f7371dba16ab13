//! Memory-mapped safetensors checkpoints in both published layouts (reference spec §1.2–1.3),
//! mirroring `merge_weights_from_checkpoint` of `modeling_higgs_audio.py` and the tensor renames
//! of transformers' `convert_higgs_audio_v2_to_hf.py`.
//!
//! The model asks for tensors by their *legacy* name (`layers.0.mlp.up_proj.weight`); this module
//! finds them under whatever name the checkpoint uses (legacy, `model.`-prefixed, transformers
//! names, or split frozen/trainable halves) and checks the shape, so every load error names the
//! tensor, the file, and the expected and actual shape.

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::LoadError;

struct WeightFile {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + JSON header).
    data_start: usize,
    metadata: Metadata,
}

/// All safetensors files of one checkpoint directory, memory-mapped.
pub struct WeightFiles {
    dir: PathBuf,
    files: Vec<WeightFile>,
    /// tensor name -> index into `files`
    index: HashMap<String, usize>,
}

impl WeightFiles {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`, or every
    /// `*.safetensors` in `dir` (the reference globs them).
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let paths: Vec<PathBuf> = if index_path.exists() {
            shard_paths_from_index(&index_path, dir)?
        } else if single.exists() {
            vec![single]
        } else {
            let rd = std::fs::read_dir(dir).map_err(|e| LoadError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            v.sort();
            v
        };
        if paths.is_empty() {
            return Err(LoadError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.into_iter().enumerate() {
            let f = std::fs::File::open(&path).map_err(|e| LoadError::Io {
                path: path.clone(),
                source: e,
            })?;
            // SAFETY: the file is opened read-only; like every mmap-based loader (candle,
            // safetensors) we rely on checkpoint files not being truncated while in use.
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| LoadError::Io {
                path: path.clone(),
                source: e,
            })?;
            let (n, metadata) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
                LoadError::CorruptWeights {
                    path: path.clone(),
                    message: format!("{e:?}"),
                }
            })?;
            for name in metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
            files.push(WeightFile {
                path,
                mmap,
                data_start: 8 + n,
                metadata,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every tensor name in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    fn info(&self, name: &str) -> Option<(&WeightFile, &TensorInfo)> {
        let f = &self.files[*self.index.get(name)?];
        Some((f, f.metadata.info(name)?))
    }

    /// The stored name under which `canonical` (a legacy name) is found, if any.
    fn resolve(&self, canonical: &str) -> Option<String> {
        candidate_names(canonical)
            .into_iter()
            .find(|n| self.index.contains_key(n))
    }

    /// Whether the checkpoint stores `canonical` (a legacy name) under any of its names, or at
    /// least one half of its frozen/trainable split (a lone half is then a load error, not an
    /// absent tensor).
    pub fn contains(&self, canonical: &str) -> bool {
        self.resolve(canonical).is_some()
            || split_names(canonical)
                .is_some_and(|(f, t)| self.resolve(&f).is_some() || self.resolve(&t).is_some())
    }

    /// Loads the tensor with legacy name `canonical`, checks its shape against `expected`, and
    /// converts it to `dtype` on `device`. Split frozen/trainable tensors are concatenated along
    /// dim 0, frozen part first.
    pub fn load(
        &self,
        canonical: &str,
        expected: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, LoadError> {
        if let Some(name) = self.resolve(canonical) {
            return self.load_exact(&name, Some(expected), dtype, device);
        }
        if let Some((frozen, trainable)) = split_names(canonical) {
            if let (Some(f), Some(t)) = (self.resolve(&frozen), self.resolve(&trainable)) {
                let a = self.load_exact(&f, None, dtype, device)?;
                let b = self.load_exact(&t, None, dtype, device)?;
                let file = self
                    .info(&f)
                    .map(|(w, _)| w.path.clone())
                    .unwrap_or_default();
                let joined = Tensor::cat(&[&a, &b], 0).map_err(|e| LoadError::Tensor {
                    name: format!("{f} + {t}"),
                    file: file.clone(),
                    source: e,
                })?;
                if joined.dims() != expected {
                    return Err(LoadError::ShapeMismatch {
                        name: format!("{f} + {t} (concatenated)"),
                        file,
                        expected: expected.to_vec(),
                        actual: joined.dims().to_vec(),
                    });
                }
                return Ok(joined);
            }
        }
        let mut tried = candidate_names(canonical);
        if let Some((f, t)) = split_names(canonical) {
            tried.push(f);
            tried.push(t);
        }
        Err(LoadError::MissingTensor {
            name: canonical.to_string(),
            dir: self.dir.clone(),
            tried: tried.join(", "),
        })
    }

    fn load_exact(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor, LoadError> {
        let Some((file, info)) = self.info(name) else {
            return Err(LoadError::MissingTensor {
                name: name.to_string(),
                dir: self.dir.clone(),
                tried: name.to_string(),
            });
        };
        if let Some(exp) = expected {
            if info.shape != exp {
                return Err(LoadError::ShapeMismatch {
                    name: name.to_string(),
                    file: file.path.clone(),
                    expected: exp.to_vec(),
                    actual: info.shape.clone(),
                });
            }
        }
        let src_dtype = match info.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            other => {
                return Err(LoadError::BadDtype {
                    name: name.to_string(),
                    file: file.path.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (s, e) = info.data_offsets;
        // `read_metadata` validated the offsets against the file length.
        let bytes = &file.mmap[file.data_start + s..file.data_start + e];
        let wrap = |source| LoadError::Tensor {
            name: name.to_string(),
            file: file.path.clone(),
            source,
        };
        let t = Tensor::from_raw_buffer(bytes, src_dtype, &info.shape, device).map_err(wrap)?;
        if src_dtype == dtype {
            Ok(t)
        } else {
            t.to_dtype(dtype).map_err(wrap)
        }
    }
}

fn shard_paths_from_index(index_path: &Path, dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let bad = |message: String| LoadError::BadIndex {
        path: index_path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index_path).map_err(|e| LoadError::Io {
        path: index_path.to_path_buf(),
        source: e,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut shards: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a file name")))?;
        // Shard names come from a downloaded file: never let them escape the model directory.
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(bad(format!("shard name {file:?} is not a plain file name")));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    shards.sort();
    let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
    for p in &paths {
        if !p.exists() {
            return Err(bad(format!(
                "shard {} listed in the index does not exist (incomplete download?)",
                p.display()
            )));
        }
    }
    Ok(paths)
}

/// Names under which a legacy tensor name may be stored.
fn candidate_names(canonical: &str) -> Vec<String> {
    let mut v = vec![canonical.to_string(), format!("model.{canonical}")];
    // transformers-native renames (convert_higgs_audio_v2_to_hf.py).
    if let Some(rest) = canonical.strip_prefix("audio_codebook_embeddings.") {
        v.push(format!(
            "model.embed_audio_tokens.embed_audio_tokens.{rest}"
        ));
        v.push(format!("embed_audio_tokens.embed_audio_tokens.{rest}"));
    }
    if let Some(rest) = canonical.strip_prefix("audio_decoder_proj.") {
        v.push(rest.to_string());
        v.push(format!("model.{rest}"));
    }
    v
}

/// The frozen/trainable halves of a partially frozen tensor (§1.2).
fn split_names(canonical: &str) -> Option<(String, String)> {
    if let Some(rest) = canonical.strip_prefix("embed_tokens.") {
        return Some((
            format!("embed_tokens.embedding_frozen.{rest}"),
            format!("embed_tokens.embedding_trainable.{rest}"),
        ));
    }
    for head in ["text_lm_head", "audio_lm_head"] {
        let base = format!("audio_decoder_proj.{head}.");
        if let Some(rest) = canonical.strip_prefix(&base) {
            return Some((
                format!("{base}linear_frozen.{rest}"),
                format!("{base}linear_trainable.{rest}"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_are_candidates() {
        let c = candidate_names("audio_codebook_embeddings.weight");
        assert!(c.contains(&"model.embed_audio_tokens.embed_audio_tokens.weight".to_string()));
        let c = candidate_names("audio_decoder_proj.text_lm_head.weight");
        assert!(c.contains(&"text_lm_head.weight".to_string()));
        let c = candidate_names("layers.3.mlp.up_proj.weight");
        assert!(c.contains(&"model.layers.3.mlp.up_proj.weight".to_string()));
    }

    #[test]
    fn split_names_cover_embeddings_and_heads() {
        assert!(split_names("embed_tokens.weight").is_some());
        assert!(split_names("audio_decoder_proj.audio_lm_head.weight").is_some());
        assert!(split_names("norm.weight").is_none());
    }
}

/// The checkpoint as one module sees it (candle's `VarBuilder`, reduced to what the model needs):
/// the weight files, a name prefix (`layers.3.self_attn`), and the dtype and device to load into.
#[derive(Clone)]
pub(crate) struct Loader<'a> {
    files: &'a WeightFiles,
    prefix: String,
    dtype: DType,
    device: &'a Device,
}

impl<'a> Loader<'a> {
    pub fn new(files: &'a WeightFiles, dtype: DType, device: &'a Device) -> Self {
        Self {
            files,
            prefix: String::new(),
            dtype,
            device,
        }
    }

    /// The loader of a sub-module: names below `prefix.sub`.
    pub fn pp(&self, sub: &str) -> Self {
        Self {
            prefix: self.name(sub),
            ..self.clone()
        }
    }

    /// The full (legacy) name of `name`.
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Tensor `name` of shape `shape`, in the loader's dtype and on its device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, LoadError> {
        self.files
            .load(&self.name(name), shape, self.dtype, self.device)
    }

    /// Whether tensor `name` is in the checkpoint (for optional tensors).
    pub fn has(&self, name: &str) -> bool {
        self.files.contains(&self.name(name))
    }

    /// A candle error met while building from tensor(s) `name`.
    pub fn err(&self, name: &str, source: candle_core::Error) -> LoadError {
        LoadError::Tensor {
            name: self.name(name),
            file: self.files.dir().to_path_buf(),
            source,
        }
    }
}
