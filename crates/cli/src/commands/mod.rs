pub mod bench;
pub mod codec;
pub mod common;
pub mod dev;
pub mod download;
pub mod runpod;
pub mod serve;
pub mod synth;
