pub mod bench;
pub mod codec;
pub mod common;
pub mod dev;
pub mod serve;
pub mod synth;
