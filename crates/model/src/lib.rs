//! Higgs Audio v2 generation model (Llama-3.2 backbone + DualFFN audio adapter) on candle.
