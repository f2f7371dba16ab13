//! Audio file I/O for higgs-serve: decode common containers, downmix, resample to 24 kHz, encode wav/pcm/flac/mp3/opus.
