//! Higgs audio tokenizer (xcodec: DAC + HuBERT semantic branch + RVQ): codes <-> 24 kHz audio on candle.
