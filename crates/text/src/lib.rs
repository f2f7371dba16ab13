//! Text side of Higgs Audio: tokenizer, special tokens, ChatML prompt building, normalisation, chunking.
