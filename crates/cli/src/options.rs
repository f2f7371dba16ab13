//! The model's and the codec's code-path switches, read from the environment once per load (the
//! variables are documented in `docs/model.md` and `docs/codec.md`; all default to the fast path).

use candle_core::DType;
use higgs_codec::CodecOptions;
use higgs_model::ModelOptions;

/// `NAME=0` turns a switch off; unset or anything else keeps it on.
fn on_unless_zero(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v != "0")
}

/// `NAME=generic` (any case) selects the generic path.
fn generic(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("generic"))
}

/// `HIGGS_FUSED_SWIGLU`, `HIGGS_BATCHED_KV_WRITE`, `HIGGS_PREFILL_GROUP`, `HIGGS_CUDA_GRAPHS`,
/// `HIGGS_FUSED_DECODE`, `HIGGS_FUSED_ADD_NORM`: `0` turns that path off.
pub fn model_options() -> ModelOptions {
    ModelOptions {
        fused_swiglu: on_unless_zero("HIGGS_FUSED_SWIGLU"),
        batched_kv_write: on_unless_zero("HIGGS_BATCHED_KV_WRITE"),
        prefill_group: on_unless_zero("HIGGS_PREFILL_GROUP"),
        cuda_graphs: on_unless_zero("HIGGS_CUDA_GRAPHS"),
        fused_decode: on_unless_zero("HIGGS_FUSED_DECODE"),
        fused_add_norm: on_unless_zero("HIGGS_FUSED_ADD_NORM"),
    }
}

/// `HIGGS_CODEC_CONVT=generic`, `HIGGS_CODEC_SNAKE=generic`: the generic transposed convolution
/// / Snake on CUDA too. `HIGGS_CODEC_POINTWISE=matmul|generic`: pointwise convs as one matmul
/// (the default since GPU suite run 7) or candle's conv1d (`generic`).
/// `HIGGS_CODEC_CONV=fused|generic`: the other stride-1 convs through the column kernel + one
/// GEMM, or candle's conv1d (the default). `HIGGS_CODEC_DTYPE=bf16`: the acoustic decoder in
/// bf16 (default f32, as the reference); any other value than `f32`/`bf16` is refused.
fn either(var: &str, on: &str, default: bool) -> anyhow::Result<bool> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(v) if v.eq_ignore_ascii_case(on) => Ok(true),
        Ok(v) if v.eq_ignore_ascii_case("generic") => Ok(false),
        Ok(v) => anyhow::bail!("{var}={v:?}: use {on} or generic"),
    }
}

pub fn codec_options() -> anyhow::Result<CodecOptions> {
    let decoder_dtype = match std::env::var("HIGGS_CODEC_DTYPE") {
        Err(_) => DType::F32,
        Ok(v) if v.eq_ignore_ascii_case("f32") => DType::F32,
        Ok(v) if v.eq_ignore_ascii_case("bf16") => DType::BF16,
        Ok(v) => anyhow::bail!("HIGGS_CODEC_DTYPE={v:?}: use f32 (the default) or bf16"),
    };
    Ok(CodecOptions {
        native_conv_transpose: !generic("HIGGS_CODEC_CONVT"),
        fused_snake: !generic("HIGGS_CODEC_SNAKE"),
        direct_pointwise: either(
            "HIGGS_CODEC_POINTWISE",
            "matmul",
            CodecOptions::default().direct_pointwise,
        )?,
        fused_conv: either(
            "HIGGS_CODEC_CONV",
            "fused",
            CodecOptions::default().fused_conv,
        )?,
        decoder_dtype,
    })
}
